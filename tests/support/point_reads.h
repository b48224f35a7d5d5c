// feature_reader::read_points in the integration tests: a mix of (view, entity, as-of) lookups
// over the flights slice, the reader's calls made synchronous, and each answer checked against
// `read` of its lookup alone (bit for bit) and against the brute-force reference
// (test_support.h).
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/features/messages.h"
#include "actors/features/reader.h"
#include "test_support.h"

namespace tessera::test {

constexpr int64_t kPointHour = 3600LL * 1000000;

// `call(answer)` with a callback that may run on any thread; the answer, or nullopt when none
// came within 60 s.
template <typename A, typename Call>
std::optional<A> wait_answer(Call call) {
  auto p = std::make_shared<std::promise<A>>();
  auto f = p->get_future();
  call([p](A a) { p->set_value(std::move(a)); });
  if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) return std::nullopt;
  return f.get();
}

// read_points, waited for; empty (and a test failure) when `done` was not called within 60 s.
inline std::vector<result<feature_vector>> read_points_sync(const feature_reader& reader,
                                                            std::vector<point_lookup> lookups,
                                                            int64_t timeout_ms = 10000) {
  auto got = wait_answer<std::vector<result<feature_vector>>>(
      [&](auto answer) { reader.read_points(std::move(lookups), timeout_ms, answer); });
  if (!got) ADD_FAILURE() << "read_points did not answer within 60 s";
  return got ? std::move(*got) : std::vector<result<feature_vector>>{};
}

// read of one key, waited for.
inline result<std::vector<feature_vector>> read_one(const feature_reader& reader, const view_def* v,
                                                    const std::string& key, int64_t as_of) {
  auto got = wait_answer<result<std::vector<feature_vector>>>(
      [&](auto answer) { reader.read(v, {key}, as_of, /*forward=*/true, answer); });
  if (!got) return make_error("read did not answer within 60 s");
  return std::move(*got);
}

// Where two vectors differ, bit for bit (doubles by their bytes); empty when they are the same.
inline std::string vector_difference(const feature_vector& a, const feature_vector& b) {
  if (a.view != b.view || a.version != b.version || a.entity != b.entity)
    return "names: " + a.view + "/" + a.entity + " vs " + b.view + "/" + b.entity;
  if (a.as_of != b.as_of)
    return "as_of " + std::to_string(a.as_of) + " vs " + std::to_string(b.as_of);
  if (a.event_time != b.event_time || a.status != b.status) return "event_time or status";
  if (a.values.size() != b.values.size()) return "value count";
  for (size_t i = 0; i < a.values.size(); ++i) {
    const auto &x = a.values[i], &y = b.values[i];
    if (x.name != y.name || x.event_time != y.event_time || x.v.index() != y.v.index())
      return "value " + x.name + ": name, event time or type";
    if (auto* d = std::get_if<double>(&x.v)) {
      if (std::memcmp(d, &std::get<double>(y.v), sizeof(double)) != 0)
        return "value " + x.name + ": " + std::to_string(*d) + " vs " +
               std::to_string(std::get<double>(y.v)) + " (bits)";
    } else if (!(x.v == y.v)) {
      return "value " + x.name;
    }
  }
  return {};
}

// The value `name` of `v` as a number (nullopt: null or absent).
inline std::optional<double> number_in(const feature_vector& v, const std::string& name) {
  for (auto& f : v.values) {
    double d = 0;
    if (f.name == name) return as_number(f.v, d) ? std::optional<double>(d) : std::nullopt;
  }
  return std::nullopt;
}

// Lookups of both test views (airport_delay, route_delay) over the slice's entities, each at a
// read time of its own inside the view's retained window before `clock` (some at 0, the
// stream's clock), one key twice at the same time; then one lookup per view before its window,
// whose positions go to `outside`.
inline std::vector<point_lookup> mixed_lookups(const definitions& defs, int64_t clock,
                                               std::set<size_t>& outside) {
  const view_def* airport = defs.find_view("airport_delay");
  const view_def* route = defs.find_view("route_delay");
  std::set<std::string> origins, routes;
  for (auto& f : slice()) {
    origins.insert(f.origin);
    routes.insert(f.origin + "-" + f.destination);
  }
  const int64_t airport_ago[] = {0, 17 * 60 * 1000000LL, 5 * kPointHour + 13, 23 * kPointHour,
                                 kPointHour};
  const int64_t route_ago[] = {3 * 24 * kPointHour, 0, kPointHour, 6 * 24 * kPointHour + 7,
                               36 * kPointHour};
  std::vector<point_lookup> out;
  size_t i = 0;
  for (auto& o : origins) {
    const int64_t ago = airport_ago[i++ % 5];
    out.push_back({airport, o, ago == 0 ? 0 : clock - ago});
  }
  out.push_back(out.front());  // the same lookup twice: one group, two answers
  i = 0;
  for (auto& r : routes) {
    if (i >= 400) break;
    const int64_t ago = route_ago[i++ % 5];
    out.push_back({route, r, ago == 0 ? 0 : clock - ago});
  }
  outside.insert(out.size());
  out.push_back({airport, *origins.begin(), clock - 25 * kPointHour});
  outside.insert(out.size());
  out.push_back({route, *routes.begin(), clock - 8 * 24 * kPointHour});
  return out;
}

// Checks each answer of read_points(lookups) against read of its lookup alone through `reader`
// (the same vector bit for bit; for a lookup at 0, read at the answer's as_of, which must be
// `clock`) and against the brute-force reference; the lookups at `outside` must fail alone as
// invalid, with read's message. Returns the number of lookups that did not check out.
inline size_t check_points(const feature_reader& reader, const std::vector<point_lookup>& lookups,
                           const std::vector<result<feature_vector>>& answers,
                           const std::set<size_t>& outside, int64_t clock) {
  if (answers.size() != lookups.size()) {
    ADD_FAILURE() << answers.size() << " answers for " << lookups.size() << " lookups";
    return lookups.size();
  }
  size_t bad = 0;
  for (size_t i = 0; i < lookups.size(); ++i) {
    const point_lookup& l = lookups[i];
    const std::string what = l.view->name + "/" + l.key + " at " + std::to_string(l.as_of);
    const result<feature_vector>& a = answers[i];
    if (outside.count(i)) {
      auto want = read_one(reader, l.view, l.key, l.as_of);
      const bool same_failure =
          !a && !want && a.error_code() == errc::invalid &&
          a.error_message() == want.error_message() &&
          a.error_message().find("is before the retained window of view") != std::string::npos;
      if (!same_failure) {
        ++bad;
        ADD_FAILURE() << what << ": expected read's invalid error, got "
                      << (a ? std::string("a vector") : failure_text(a)) << " and read gave "
                      << (want ? std::string("a vector") : failure_text(want));
      }
      continue;
    }
    if (!a) {
      ++bad;
      ADD_FAILURE() << what << ": " << failure_text(a);
      continue;
    }
    const int64_t t = l.as_of ? l.as_of : clock;
    auto want = read_one(reader, l.view, l.key, t);
    std::string diff;
    if (!want)
      diff = "read failed: " + failure_text(want);
    else if (want->size() != 1)
      diff = "read gave " + std::to_string(want->size()) + " vectors";
    else
      diff = vector_difference(*a, (*want)[0]);
    if (diff.empty() && a->as_of != t) diff = "as_of " + std::to_string(a->as_of);
    if (diff.empty()) {  // and the independent reference
      std::optional<double> got, ref;
      if (l.view->name == "airport_delay") {
        got = number_in(*a, "count_24h");
        ref = static_cast<double>(airport_at(slice(), l.key, t).count_24h);
      } else {
        got = number_in(*a, "count_7d");
        ref = static_cast<double>(route_at(slice(), l.key, t).count_7d);
      }
      if (got != ref)
        diff = "count " + (got ? std::to_string(*got) : "null") + ", reference " +
               std::to_string(*ref);
    }
    if (!diff.empty()) {
      ++bad;
      if (bad <= 20) ADD_FAILURE() << what << ": " << diff;
    }
  }
  return bad;
}

}  // namespace tessera::test
