#include "aggregate.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace tessera {

bool insert_record(std::deque<record>& records, record r) {
  if (records.empty() || records.back() < r) {
    records.push_back(std::move(r));
    return true;
  }
  auto it = std::lower_bound(records.begin(), records.end(), r);
  if (it != records.end() && !(r < *it) && !(*it < r)) return false;
  records.insert(it, std::move(r));
  return true;
}

namespace {

template <typename It>
feature_vector compute_in(const view_def& view, It records_begin, It records_end, int64_t t,
                          const std::string& entity) {
  feature_vector out;
  out.view = view.name;
  out.version = view.version;
  out.entity = entity;
  out.as_of = t;
  // Records with time <= t end at `end`.
  auto end = std::upper_bound(records_begin, records_end, t,
                              [](int64_t tt, const record& r) { return tt < r.time; });
  const int64_t max_w = view.max_window_us();
  if (end != records_begin && std::prev(end)->time > t - max_w)
    out.event_time = std::prev(end)->time;
  // Until when this vector stays the same: the next record enters the windows at its time, the
  // oldest record of each window leaves it at its time + W, the status turns stale after ttl
  // (and missing after the longest window), and time_since_last changes all the time.
  int64_t valid_until = end == records_end ? INT64_MAX : end->time;
  if (out.event_time)
    valid_until = std::min({valid_until, out.event_time + view.ttl_us + 1, out.event_time + max_w});

  for (const auto& f : view.features) {
    feature_value fv;
    fv.name = f.name;
    const int64_t lo = t - f.window_us;  // exclusive
    auto begin = std::upper_bound(records_begin, end, lo,
                                  [](int64_t tt, const record& r) { return tt < r.time; });
    if (begin != end) valid_until = std::min(valid_until, begin->time + f.window_us);
    int64_t n = 0;
    double sum = 0, mn = 0, mx = 0;
    int64_t latest = 0;
    const record* last_rec = nullptr;
    for (auto it = begin; it != end; ++it) {
      if (f.filter && !f.filter->test(it->fields)) continue;
      double x = 0;
      if (f.slot >= 0 && f.agg != agg_kind::last && f.agg != agg_kind::last_n_distinct) {
        if (!as_number(it->fields[f.slot], x) || std::isnan(x)) continue;  // nulls do not count
      }
      if (f.agg == agg_kind::last || f.agg == agg_kind::last_n_distinct) {
        if (is_null(it->fields[f.slot])) continue;
      }
      if (n == 0) mn = mx = x;
      ++n;
      sum += x;
      mn = std::min(mn, x);
      mx = std::max(mx, x);
      latest = it->time;
      last_rec = &*it;
    }
    fv.event_time = latest;
    switch (f.agg) {
      case agg_kind::count:
        fv.v = n;
        break;
      case agg_kind::sum:
        fv.v = sum;
        break;
      case agg_kind::mean:
        if (n) fv.v = sum / static_cast<double>(n);
        break;
      case agg_kind::min:
        if (n) fv.v = mn;
        break;
      case agg_kind::max:
        if (n) fv.v = mx;
        break;
      case agg_kind::stddev:
        if (n) {
          // Population standard deviation, two-pass for accuracy.
          double mean = sum / static_cast<double>(n), ss = 0;
          for (auto it = begin; it != end; ++it) {
            if (f.filter && !f.filter->test(it->fields)) continue;
            double x;
            if (!as_number(it->fields[f.slot], x) || std::isnan(x)) continue;
            ss += (x - mean) * (x - mean);
          }
          fv.v = std::sqrt(ss / static_cast<double>(n));
        }
        break;
      case agg_kind::last:
        if (last_rec) fv.v = last_rec->fields[f.slot];
        break;
      case agg_kind::last_n_distinct: {
        if (!n) break;
        std::vector<std::string> vals;
        std::unordered_set<std::string> seen;
        for (auto it = end; it != begin && static_cast<int>(vals.size()) < f.n;) {
          --it;
          if (f.filter && !f.filter->test(it->fields)) continue;
          if (is_null(it->fields[f.slot])) continue;
          std::string s = to_text(it->fields[f.slot]);
          if (seen.insert(s).second) vals.push_back(std::move(s));
        }
        fv.v = std::move(vals);
        break;
      }
      case agg_kind::time_since_last:
        if (n) {
          fv.v = static_cast<double>(t - latest) / 1e6;
          valid_until = std::min(valid_until, t + 1);
        }
        break;
    }
    out.values.push_back(std::move(fv));
  }
  out.status = status_at(out.event_time, t, view.ttl_us);
  out.valid_until = std::max(valid_until, t + 1);
  return out;
}

}  // namespace

feature_vector compute_vector(const view_def& view, const std::deque<record>& records, int64_t t,
                              const std::string& entity) {
  return compute_in(view, records.begin(), records.end(), t, entity);
}

feature_vector compute_vector(const view_def& view, const std::vector<record>& records, int64_t t,
                              const std::string& entity) {
  return compute_in(view, records.begin(), records.end(), t, entity);
}

std::string to_text(const value& v) {
  switch (v.index()) {
    case 0:
      return "";
    case 1:
      return std::to_string(std::get<int64_t>(v));
    case 2: {
      char buf[64];
      snprintf(buf, sizeof buf, "%.17g", std::get<double>(v));
      return buf;
    }
    case 3:
      return std::get<std::string>(v);
    case 4:
      return std::get<bool>(v) ? "true" : "false";
    case 5:
      return std::to_string(std::get<timestamp_value>(v).micros);
    default: {
      std::string s;
      for (auto& x : std::get<std::vector<std::string>>(v)) s += (s.empty() ? "" : ",") + x;
      return s;
    }
  }
}

}  // namespace tessera
