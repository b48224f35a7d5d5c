#include "point_in_time.h"

#include <algorithm>

namespace tessera {

void projected_log::assign(const kind_plan& plan, const std::vector<log_entry>& entries) {
  records.resize(entries.size());
  known.resize(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    record& r = records[i];
    const record& e = entries[i].r;
    r.time = e.time, r.seq = e.seq, r.idx = e.idx;
    r.fields.clear();
    for (int fi : plan.stored_field_index) r.fields.push_back(e.fields[fi]);
    known[i] = entries[i].known;
  }
}

feature_vector vector_at(const view_def& view, const projected_log& log, int64_t t, const std::string& entity,
                         std::deque<record>& scratch) {
  const int64_t lo = t - view.max_window_us();  // exclusive
  auto by_time = [](int64_t x, const record& r) { return x < r.time; };
  const size_t first = static_cast<size_t>(std::upper_bound(log.records.begin(), log.records.end(), lo, by_time) - log.records.begin());
  const size_t end = static_cast<size_t>(std::upper_bound(log.records.begin(), log.records.end(), t, by_time) - log.records.begin());
  bool all_known = true;
  for (size_t i = first; i < end && all_known; ++i) all_known = log.known[i] <= t;
  // Usually everything in the window was known by t: compute in place (compute_vector reads
  // only (t - W, t]). Otherwise drop what was not known yet: using it would leak the future.
  if (all_known) return compute_vector(view, log.records, t, entity);
  scratch.clear();
  for (size_t i = first; i < end; ++i)
    if (log.known[i] <= t) scratch.push_back(log.records[i]);
  return compute_vector(view, scratch, t, entity);
}

feature_vector vector_at(const view_def& view, const kind_plan& plan, const std::vector<log_entry>& entries, int64_t t,
                         const std::string& entity, std::deque<record>& scratch) {
  projected_log log;
  log.assign(plan, entries);
  return vector_at(view, log, t, entity, scratch);
}

int64_t feature_time(const label_def& label, int64_t prediction_time) {
  if (label.snapshot_us <= 0) return prediction_time;
  // The period containing t starts at floor(t / P) * P; a value at that instant is what a batch
  // job run then could see. Floor division, also for times before 1970.
  int64_t q = prediction_time / label.snapshot_us;
  if (prediction_time % label.snapshot_us < 0) --q;
  return q * label.snapshot_us;
}

}  // namespace tessera
