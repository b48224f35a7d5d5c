#include "point_in_time.h"

#include <algorithm>

namespace tessera {

feature_vector vector_at(const view_def& view, const kind_plan& plan, const std::vector<log_entry>& entries, int64_t t,
                         const std::string& entity, std::deque<record>& scratch) {
  scratch.clear();
  const int64_t lo = t - view.max_window_us();  // exclusive
  auto first = std::upper_bound(entries.begin(), entries.end(), lo, [](int64_t x, const log_entry& e) { return x < e.r.time; });
  for (auto it = first; it != entries.end() && it->r.time <= t; ++it) {
    if (it->known > t) continue;  // not known yet at t: using it would leak the future
    record r;
    r.time = it->r.time, r.seq = it->r.seq, r.idx = it->r.idx;
    r.fields.reserve(plan.stored_field_index.size());
    for (int fi : plan.stored_field_index) r.fields.push_back(it->r.fields[fi]);
    scratch.push_back(std::move(r));
  }
  return compute_vector(view, scratch, t, entity);
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
