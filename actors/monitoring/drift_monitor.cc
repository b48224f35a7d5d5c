#include "drift_monitor.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace tessera::monitoring {

result<drift_reference> reference_from_json(const nlohmann::json& j) {
  if (!j.is_object()) return make_error("a reference distribution is not an object", errc::invalid);
  drift_reference r;
  try {
    r.name = j.value("name", "");
    r.n = j.value("n", uint64_t{0});
    r.missing = j.value("missing", 0.0);
    r.mean = j.value("mean", 0.0);
    r.stddev = j.value("stddev", 0.0);
    r.edges = j.at("edges").get<std::vector<double>>();
    r.counts = j.at("counts").get<std::vector<uint64_t>>();
  } catch (const nlohmann::json::exception& e) {
    return make_error("reference " + r.name + ": " + e.what(), errc::invalid);
  }
  if (r.edges.size() != r.counts.size() + 1)
    return make_error("reference " + r.name + ": edges and counts do not match", errc::invalid);
  return r;
}

void drift_monitor::set_reference(uint32_t version, std::vector<drift_reference> inputs,
                                  std::optional<drift_reference> score) {
  tracked t;
  t.has_reference = true;
  const int buckets = static_cast<int>(std::max<int64_t>(1, o_.window_us / o_.step_us));
  // Two buckets of slack: a window is tested a step after its end (advance()), by the first
  // prediction of the step after that, which is already counted in its own bucket then.
  for (auto& r : inputs) t.inputs.emplace_back(std::move(r), o_.window_us, buckets, 2);
  if (score) t.score.emplace(std::move(*score), o_.window_us, buckets, 2);
  t.alarms.assign(t.inputs.size() + (t.score ? 1 : 0), drift_alarm(o_.persist));
  t.last.version = version;
  t.last.has_reference = true;
  versions_[version] = std::move(t);
}

void drift_monitor::set_no_reference(uint32_t version, std::string why) {
  tracked t;
  t.why = std::move(why);
  t.last.version = version;
  t.last.why = t.why;
  versions_[version] = std::move(t);
}

void drift_monitor::add(uint32_t version, int64_t time_us, const std::vector<double>& vector,
                        double score) {
  if (next_boundary_ == 0) {
    next_boundary_ = (time_us / o_.step_us + 1) * o_.step_us;
    first_us_ = time_us;
  }
  auto it = versions_.find(version);
  if (it == versions_.end() || !it->second.has_reference) return;
  tracked& t = it->second;
  if (vector.size() != t.inputs.size()) {
    ++mismatched_;
    return;
  }
  for (size_t i = 0; i < vector.size(); ++i) t.inputs[i].add(time_us, vector[i]);
  if (t.score) t.score->add(time_us, score);
}

bool drift_monitor::advance(int64_t now_us) {
  // A boundary is tested once event time is a step past it: predictions that arrive a little out
  // of order (a follower's lag, shards answering at their own pace) are in its window by then.
  const int64_t settled = now_us - o_.step_us;
  if (next_boundary_ == 0 || settled < next_boundary_) return false;
  // Event time may jump by days: test the last boundary reached (the windows before it are gone).
  const int64_t boundary = settled / o_.step_us * o_.step_us;
  next_boundary_ = boundary + o_.step_us;
  // Only full windows: a window that began before the first prediction would hold part of the
  // period (a few weekdays of a week, the morning of a day) and drift for that alone.
  if (boundary - first_us_ < o_.window_us) return false;
  for (auto& [v, t] : versions_)
    if (t.has_reference) test(v, t, boundary);
  return true;
}

void drift_monitor::test(uint32_t version, tracked& t, int64_t at_us) {
  std::vector<drift_result> results;
  std::vector<std::string> alarming;
  uint64_t n = 0;
  auto one = [&](const sliding_counts& s, drift_alarm& alarm) {
    const window_counts w = s.at(at_us - 1);
    n = std::max(n, w.n());
    drift_result r = test_drift(s.reference(), w, o_.config);
    if (r.tested) alarm.feed(r.drifted);
    if (alarm.firing()) alarming.push_back(s.reference().name);
    results.push_back(std::move(r));
  };
  for (size_t i = 0; i < t.inputs.size(); ++i) one(t.inputs[i], t.alarms[i]);
  if (t.score) one(*t.score, t.alarms.back());
  t.last.version = version;
  t.last.at_us = at_us;
  t.last.n = n;
  ++t.last.tests;
  t.last.values = rank_by_contribution(std::move(results));
  // Alarming values in ranked order.
  t.last.alarming.clear();
  for (auto& r : t.last.values)
    for (auto& a : alarming)
      if (a == r.result.name) t.last.alarming.push_back(a);
}

std::vector<drift_monitor::version_drift> drift_monitor::status() const {
  std::vector<version_drift> out;
  for (auto& [v, t] : versions_) {
    out.push_back(t.last);
    out.back().window_us = o_.window_us;
  }
  return out;
}

}  // namespace tessera::monitoring
