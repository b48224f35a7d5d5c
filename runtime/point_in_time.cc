#include "point_in_time.h"

#include <algorithm>
#include <cmath>

namespace tessera {

void projected_log::assign(const kind_plan& plan, const log_entry* entries, size_t n) {
  records.resize(n);
  known.resize(n);
  for (size_t i = 0; i < n; ++i) {
    record& r = records[i];
    const record& e = entries[i].r;
    r.time = e.time, r.seq = e.seq, r.idx = e.idx;
    r.fields.clear();
    for (int fi : plan.stored_field_index) r.fields.push_back(e.fields[fi]);
    known[i] = entries[i].known;
  }
}

feature_vector vector_at(const view_def& view, const projected_log& log, int64_t t,
                         const std::string& entity, std::deque<record>& scratch) {
  const int64_t lo = t - view.max_window_us();  // exclusive
  auto by_time = [](int64_t x, const record& r) { return x < r.time; };
  const size_t first = static_cast<size_t>(
      std::upper_bound(log.records.begin(), log.records.end(), lo, by_time) - log.records.begin());
  const size_t end = static_cast<size_t>(
      std::upper_bound(log.records.begin(), log.records.end(), t, by_time) - log.records.begin());
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

window_index::window_index(const view_def& view, const projected_log& log) : window_index(view) {
  if (!supported_) return;
  reserve(log.records.size());
  for (size_t i = 0; i < log.records.size(); ++i)
    add(log.records[i].time, log.known[i], log.records[i].fields);
  finish();
}

window_index::window_index(const view_def& view) : view_(view) {
  for (auto& f : view.features)
    if (f.agg == agg_kind::stddev || f.agg == agg_kind::last || f.agg == agg_kind::last_n_distinct)
      supported_ = false;
  if (!supported_) return;
  for (const feature_def& f : view.features) {
    size_t k = std::find(windows_.begin(), windows_.end(), f.window_us) - windows_.begin();
    if (k == windows_.size()) windows_.push_back(f.window_us);
    window_of_.push_back(k);
  }
  for (const feature_def& f : view.features) {
    size_t k = 0;
    while (k < tracks_.size() &&
           !(tracks_[k].slot == f.slot && tracks_[k].filter_src == f.filter_src))
      ++k;
    if (k == tracks_.size()) {
      tracks_.emplace_back();
      tracks_[k].slot = f.slot;
      tracks_[k].filter_src = f.filter_src;
      tracks_[k].filter = f.filter.get();
    }
    track_of_.push_back(k);
    track& tr = tracks_[k];
    tr.sums = tr.sums || f.agg == agg_kind::sum || f.agg == agg_kind::mean;
    tr.extremes = tr.extremes || f.agg == agg_kind::min || f.agg == agg_kind::max;
  }
  known_upto_.push_back(INT64_MIN);
}

void window_index::reserve(size_t n) {
  times_.reserve(n);
  for (track& tr : tracks_)
    if (tr.sums || tr.extremes) tr.x.reserve(n);
}

void window_index::note_known(size_t i, int64_t k) {
  known_.push_back(k);
  if (i % kBlock == 0) block_known_.push_back(INT64_MIN);
  block_known_.back() = std::max(block_known_.back(), k);
  known_upto_.push_back(std::max(known_upto_.back(), k));
}

void window_index::add(int64_t time, int64_t known, const std::vector<value>& fields) {
  const size_t i = times_.size();
  times_.push_back(time);
  // Known times are kept from the first record known after its event time on; the records
  // before it count as known at their event time (see late_).
  if (known > time && !late_) {
    late_ = true;
    for (size_t j = 0; j < i; ++j) note_known(j, times_[j]);
  }
  if (late_) note_known(i, std::max(known, time));
  for (track& tr : tracks_) {
    // The same tests, in the same order, as compute_vector.
    double x = 0;
    const bool counted = (!tr.filter || tr.filter->test(fields)) &&
                         (tr.slot < 0 || (as_number(fields[tr.slot], x) && !std::isnan(x)));
    if (tr.dense && !counted) {  // from here on, positions are kept
      tr.dense = false;
      tr.before.resize(i);
      tr.pos.resize(i);
      for (size_t j = 0; j < i; ++j) tr.before[j] = tr.pos[j] = static_cast<uint32_t>(j);
    }
    if (!tr.dense) tr.before.push_back(static_cast<uint32_t>(tr.pos.size()));
    if (!counted) continue;
    tr.integers = tr.integers && std::fabs(x) <= 4294967296.0 && x == std::trunc(x);
    if (!tr.dense) tr.pos.push_back(static_cast<uint32_t>(i));
    if (tr.sums || tr.extremes) tr.x.push_back(x);
  }
}

void window_index::add(const kind_plan& plan, const log_entry& e, std::vector<value>& scratch) {
  scratch.clear();
  for (int fi : plan.stored_field_index) scratch.push_back(e.r.fields[fi]);
  add(e.r.time, e.known, scratch);
}

void window_index::finish() {
  for (track& tr : tracks_) {
    if (!tr.dense) tr.before.push_back(static_cast<uint32_t>(tr.pos.size()));
    const std::vector<double>& xs = tr.x;
    tr.exact_sum = tr.sums && tr.integers && xs.size() < (1u << 20);
    if (tr.exact_sum) {
      tr.prefix.resize(xs.size() + 1);
      tr.prefix[0] = 0;
      for (size_t i = 0; i < xs.size(); ++i) tr.prefix[i + 1] = tr.prefix[i] + xs[i];
    }
    if (tr.extremes) {
      std::vector<double> mins, maxs;
      for (size_t b = 0; b < xs.size(); b += kBlock) {
        double mn = xs[b], mx = xs[b];
        for (size_t i = b + 1; i < std::min(xs.size(), b + kBlock); ++i)
          mn = std::min(mn, xs[i]), mx = std::max(mx, xs[i]);
        mins.push_back(mn);
        maxs.push_back(mx);
      }
      // Level k folds 2^k blocks, from level k-1 keeping the left value of equals: the first
      // of equal extremes, as the sequential fold.
      tr.sparse_min.push_back(std::move(mins));
      tr.sparse_max.push_back(std::move(maxs));
      for (size_t w = 1; tr.sparse_max.back().size() > w; w *= 2) {
        const std::vector<double>&pmin = tr.sparse_min.back(), &pmax = tr.sparse_max.back();
        std::vector<double> nmin(pmin.size() - w), nmax(pmax.size() - w);
        for (size_t i = 0; i < nmin.size(); ++i)
          nmin[i] = std::min(pmin[i], pmin[i + w]), nmax[i] = std::max(pmax[i], pmax[i + w]);
        tr.sparse_min.push_back(std::move(nmin));
        tr.sparse_max.push_back(std::move(nmax));
      }
    }
    if (!tr.extremes && !(tr.sums && !tr.exact_sum))
      std::vector<double>().swap(tr.x);  // prefix sums answer alone
  }
}

size_t window_index::after(int64_t x) const {
  return static_cast<size_t>(std::upper_bound(times_.begin(), times_.end(), x) - times_.begin());
}

size_t window_index::after(int64_t x, size_t& hint) const {
  const size_t n = times_.size(), h = std::min(hint, n);
  size_t lo = 0, hi = n;          // the answer is in [lo, hi]
  if (h < n && times_[h] <= x) {  // forwards: the answer is past h
    lo = h + 1;
    for (size_t step = 1;; step *= 2) {
      const size_t probe = h + step;
      if (probe >= n) break;
      if (times_[probe] > x) {
        hi = probe;
        break;
      }
      lo = probe + 1;
    }
  } else {  // backwards: the answer is h or before
    hi = h;
    for (size_t step = 1; step <= h; step *= 2) {
      const size_t probe = h - step;
      if (times_[probe] <= x) {
        lo = probe + 1;
        break;
      }
      hi = probe;
    }
  }
  hint = static_cast<size_t>(std::upper_bound(times_.begin() + static_cast<std::ptrdiff_t>(lo),
                                              times_.begin() + static_cast<std::ptrdiff_t>(hi), x) -
                             times_.begin());
  return hint;
}

size_t window_index::bytes() const {
  size_t b =
      (block_known_.size() + times_.size() + known_.size() + known_upto_.size()) * sizeof(int64_t);
  for (auto& tr : tracks_) {
    b += (tr.before.size() + tr.pos.size()) * 4 + (tr.x.size() + tr.prefix.size()) * 8;
    for (size_t k = 0; k < tr.sparse_max.size(); ++k)
      b += (tr.sparse_min[k].size() + tr.sparse_max[k].size()) * 8;
  }
  return b;
}

bool window_index::all_known(size_t b, size_t e, int64_t t) const {
  if (!late_ || known_upto_[e] <= t)
    return true;  // nothing up to the window's end was known after t
  size_t i = b;
  for (; i < e && i % kBlock; ++i)
    if (known_[i] > t) return false;
  for (; i + kBlock <= e; i += kBlock)
    if (block_known_[i / kBlock] > t) return false;
  for (; i < e; ++i)
    if (known_[i] > t) return false;
  return true;
}

double window_index::sum(const track& tr, size_t b, size_t e) const {
  if (tr.exact_sum) return tr.prefix[e] - tr.prefix[b];
  double s = 0;
  for (size_t i = b; i < e; ++i) s += tr.x[i];
  return s;
}

value number_cell::to_value() const {
  switch (kind) {
    case integer:
      return i;
    case real:
      return d;
    default:
      return std::monostate{};
  }
}

bool window_index::cells(int64_t t, value* out, int64_t* times, cursor* cur) const {
  const size_t nf = view_.features.size();
  number_cell nums[16];
  std::vector<number_cell> more(nf > 16 ? nf : 0);
  number_cell* got = nf > 16 ? more.data() : nums;
  if (!cells(t, got, times, cur)) return false;
  for (size_t f = 0; f < nf; ++f) out[f] = got[f].to_value();
  return true;
}

bool window_index::cells(int64_t t, number_cell* out, int64_t* times, cursor* cur) const {
  cursor scratch;
  cursor& c = cur ? *cur : scratch;
  const size_t end = cur ? after(t, c.pos[0]) : after(t);
  size_t starts[8];  // where each distinct window starts (views have few)
  const size_t nw = std::min<size_t>(windows_.size(), 8);
  size_t first = end;  // the earliest start: of the longest window
  for (size_t w = 0; w < nw; ++w)
    first = std::min(
        first, starts[w] = cur ? after(t - windows_[w], c.pos[w + 1]) : after(t - windows_[w]));
  if (nw < windows_.size()) first = after(t - view_.max_window_us());
  if (!all_known(first, end, t)) return false;
  for (size_t fi = 0; fi < view_.features.size(); ++fi) {
    const feature_def& f = view_.features[fi];
    const track& tr = tracks_[track_of_[fi]];
    const size_t w = window_of_[fi];
    const size_t b = tr.before_at(w < nw ? starts[w] : after(t - f.window_us)),
                 e = tr.before_at(end);
    const int64_t n = static_cast<int64_t>(e - b);
    const int64_t last = n ? times_[tr.pos_at(e - 1)] : 0;
    if (times) times[fi] = last;
    number_cell& v = out[fi];
    v = number_cell();
    switch (f.agg) {
      case agg_kind::count:
        v = number_cell::of_int(n);
        break;
      case agg_kind::sum:
        v = number_cell::of_double(sum(tr, b, e));
        break;
      case agg_kind::mean:
        if (n) v = number_cell::of_double(sum(tr, b, e) / static_cast<double>(n));
        break;
      case agg_kind::min:
      case agg_kind::max: {
        if (!n) break;
        // The first of equal extremes, scanning in order: the fold compute_vector does.
        const bool is_max = f.agg == agg_kind::max;
        double m = tr.x[b];
        auto take = [&](double x) { m = is_max ? std::max(m, x) : std::min(m, x); };
        size_t i = b + 1;
        for (; i < e && i % kBlock; ++i) take(tr.x[i]);
        // Whole blocks: two overlapping ranges of 2^k blocks from the sparse table (O(1)).
        if (const size_t nb = (e - i) / kBlock; nb) {
          const size_t k = static_cast<size_t>(63 - __builtin_clzll(nb)), first = i / kBlock;
          const std::vector<double>& level = is_max ? tr.sparse_max[k] : tr.sparse_min[k];
          take(level[first]);
          take(level[first + nb - (size_t{1} << k)]);
          i += nb * kBlock;
        }
        for (; i < e; ++i) take(tr.x[i]);
        v = number_cell::of_double(m);
        break;
      }
      case agg_kind::time_since_last:
        if (n) v = number_cell::of_double(static_cast<double>(t - last) / 1e6);
        break;
      default:
        break;  // not indexed (supported_ is false)
    }
  }
  return true;
}

bool window_index::at(int64_t t, const std::string& entity, feature_vector& out) const {
  const size_t nf = view_.features.size();
  std::vector<value> vals(nf);
  std::vector<int64_t> times(nf);
  if (!cells(t, vals.data(), times.data())) return false;
  out = feature_vector();
  out.view = view_.name;
  out.version = view_.version;
  out.entity = entity;
  out.as_of = t;
  const size_t end = after(t);
  if (end > 0 && times_[end - 1] > t - view_.max_window_us()) out.event_time = times_[end - 1];
  out.values.reserve(nf);
  for (size_t fi = 0; fi < nf; ++fi)
    out.values.push_back(feature_value{view_.features[fi].name, std::move(vals[fi]), times[fi]});
  out.status = status_at(out.event_time, t, view_.ttl_us);
  return true;
}

feature_vector vector_at(const view_def& view, const projected_log& log, const window_index& index,
                         int64_t t, const std::string& entity, std::deque<record>& scratch) {
  feature_vector out;
  if (index.supported() && index.at(t, entity, out)) return out;
  return vector_at(view, log, t, entity, scratch);
}

feature_vector vector_at(const view_def& view, const kind_plan& plan,
                         const std::vector<log_entry>& entries, int64_t t,
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
