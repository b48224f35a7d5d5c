// The monitor's saved state (actors/monitoring/checkpoint.h): a label join and a drift monitor
// saved halfway through a stream, encoded, decoded and loaded into new ones and fed the rest end
// exactly where ones that never stopped end — every count, every pair, every drift figure and
// alarm; bytes that do not decode are refused, not half read.
#include "actors/monitoring/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "actors/monitoring/drift_monitor.h"
#include "actors/monitoring/label_join.h"

namespace tessera::monitoring {
namespace {

constexpr int64_t kHour = 3600LL * 1000000, kDay = 24 * kHour;

// A round trip through the saved bytes, as the service makes it.
nlohmann::json through_bytes(const nlohmann::json& doc) {
  auto back = decode_state(encode_state(doc));
  EXPECT_TRUE(back) << back.error_message();
  return back ? *back : nlohmann::json();
}

struct step {
  bool is_label;
  std::string key, stage;
  double value;
  int64_t time;
};

// Predictions of two stages and their labels, some late, some duplicated, some missing, some
// labels never predicted, in event-time order with a little disorder.
std::vector<step> join_stream() {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::pair<int64_t, step>> all;
  for (int i = 0; i < 6000; ++i) {
    const std::string key = "k" + std::to_string(i % 4500);  // some keys twice: duplicates
    const int64_t t = i * (kHour / 20);
    if (u(rng) < 0.9) all.push_back({t, {false, key, "production", u(rng), t}});
    if (u(rng) < 0.3) all.push_back({t + 1, {false, key, "canary", u(rng), t}});
    const double r = u(rng);
    const int64_t lag = r < 0.05 ? 3 * kDay : static_cast<int64_t>(u(rng) * 20 * kHour);
    if (r < 0.85) all.push_back({t + lag, {true, key, "", u(rng) < 0.3 ? 1.0 : 0.0, t + lag}});
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<step> out;
  for (auto& [at, s] : all) out.push_back(s);
  return out;
}

void feed(label_join& j, const step& s, int64_t& now, std::vector<labelled_pair>& out) {
  if (s.is_label) {
    j.label(s.key, s.value, s.time, out);
    now = std::max(now, s.time);
    j.advance(now);
  } else {
    j.prediction(s.key, "m", 1, s.stage, s.value, s.time, out);
  }
}

TEST(Checkpoint, ALabelJoinRestoredHalfwayEndsWhereOneThatNeverStoppedEnds) {
  label_join::options o;
  o.max_label_delay_us = 2 * kDay;
  o.label_grace_us = kHour;
  const auto in = join_stream();
  ASSERT_GT(in.size(), 8000u);
  label_join whole(o), first(o);
  std::vector<labelled_pair> whole_pairs, first_pairs, second_pairs;
  int64_t now_whole = 0, now_split = 0;
  const size_t half = in.size() / 2;
  for (size_t i = 0; i < in.size(); ++i) feed(whole, in[i], now_whole, whole_pairs);
  for (size_t i = 0; i < half; ++i) feed(first, in[i], now_split, first_pairs);
  ASSERT_GT(first.waiting_predictions(), 0u);  // something is in flight at the save
  label_join second(o);
  second.restore(through_bytes(first.save()));
  for (size_t i = half; i < in.size(); ++i) feed(second, in[i], now_split, second_pairs);

  const auto& a = whole.figures();
  const auto& b = second.figures();
  EXPECT_EQ(a.predictions, b.predictions);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.joined, b.joined);
  EXPECT_EQ(a.unlabelled, b.unlabelled);
  EXPECT_EQ(a.late, b.late);
  EXPECT_EQ(a.unmatched, b.unmatched);
  EXPECT_EQ(a.duplicate_labels, b.duplicate_labels);
  EXPECT_EQ(a.duplicate_predictions, b.duplicate_predictions);
  EXPECT_EQ(whole.waiting_predictions(), second.waiting_predictions());
  EXPECT_EQ(whole.waiting_labels(), second.waiting_labels());
  EXPECT_GT(a.late + a.unmatched + a.unlabelled + a.duplicate_predictions, 0u);
  // The pairs: the first half's and the second's together are the whole run's, in order.
  first_pairs.insert(first_pairs.end(), second_pairs.begin(), second_pairs.end());
  ASSERT_EQ(first_pairs.size(), whole_pairs.size());
  for (size_t i = 0; i < whole_pairs.size(); ++i) {
    EXPECT_EQ(first_pairs[i].stage, whole_pairs[i].stage);
    EXPECT_EQ(first_pairs[i].score, whole_pairs[i].score);
    EXPECT_EQ(first_pairs[i].label, whole_pairs[i].label);
    EXPECT_EQ(first_pairs[i].prediction_time, whole_pairs[i].prediction_time);
  }
}

drift_reference normal_reference(const std::string& name, double mean) {
  // Deciles of a standard normal shifted by `mean` (table values), 10,000 values.
  const double z[] = {-1.2816, -0.8416, -0.5244, -0.2533, 0, 0.2533, 0.5244, 0.8416, 1.2816};
  drift_reference r;
  r.name = name;
  r.edges.push_back(mean - 4);
  for (double q : z) r.edges.push_back(mean + q);
  r.edges.push_back(mean + 4);
  r.counts.assign(10, 1000);
  r.n = 10000;
  r.mean = mean;
  r.stddev = 1;
  return r;
}

TEST(Checkpoint, ADriftMonitorRestoredHalfwayEndsWhereOneThatNeverStoppedEnds) {
  drift_monitor::options o;
  o.window_us = kDay;
  o.step_us = kHour;
  std::vector<drift_reference> refs;
  for (int f = 0; f < 5; ++f) refs.push_back(normal_reference("f" + std::to_string(f), f));
  drift_monitor whole(o), first(o);
  for (auto* m : {&whole, &first}) {
    m->set_reference(1, refs, normal_reference("score", 0));
    m->set_no_reference(2, "imported");
  }
  std::mt19937_64 rng(5);
  std::normal_distribution<double> noise(0, 1);
  const int64_t t0 = 978307200000000;
  std::vector<std::pair<int64_t, std::vector<double>>> in;
  for (int h = 0; h < 6 * 24; ++h)
    for (int i = 0; i < 100; ++i) {
      std::vector<double> v(5);
      for (int f = 0; f < 5; ++f) v[f] = f + noise(rng) + (f == 3 && h >= 70 ? 0.6 : 0);
      in.push_back({t0 + h * kHour + i * (kHour / 100), v});
    }
  auto run = [&](drift_monitor& m, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      m.add(1, in[i].first, in[i].second, 0.1 * in[i].second[0]);
      if (i % 7 == 0) m.add(1, in[i].first, {1, 2}, 0);  // a vector of the wrong length
      m.advance(in[i].first);
    }
  };
  const size_t half = in.size() / 2 + 37;  // mid-hour
  run(whole, 0, in.size());
  run(first, 0, half);
  drift_monitor second(o);
  ASSERT_TRUE(second.restore(through_bytes(first.save())));
  run(second, half, in.size());

  const auto a = whole.status(), b = second.status();
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(whole.mismatched(), second.mismatched());
  EXPECT_GT(a[0].tests, 48u);
  EXPECT_FALSE(a[0].alarming.empty());  // f3 drifts: the alarm is part of what is restored
  for (size_t v = 0; v < 2; ++v) {
    EXPECT_EQ(a[v].has_reference, b[v].has_reference);
    EXPECT_EQ(a[v].why, b[v].why);
    EXPECT_EQ(a[v].at_us, b[v].at_us);
    EXPECT_EQ(a[v].n, b[v].n);
    EXPECT_EQ(a[v].tests, b[v].tests);
    EXPECT_EQ(a[v].alarming, b[v].alarming);
    ASSERT_EQ(a[v].values.size(), b[v].values.size());
    for (size_t i = 0; i < a[v].values.size(); ++i) {
      EXPECT_EQ(a[v].values[i].result.name, b[v].values[i].result.name);
      EXPECT_EQ(a[v].values[i].result.psi, b[v].values[i].result.psi);
      EXPECT_EQ(a[v].values[i].result.drifted, b[v].values[i].result.drifted);
    }
  }
  // Other windows in the definitions: the saved drift is refused, nothing changed.
  drift_monitor::options other = o;
  other.step_us = 2 * kHour;
  drift_monitor third(other);
  EXPECT_FALSE(third.restore(first.save()));
  EXPECT_TRUE(third.status().empty());
}

TEST(Checkpoint, BytesThatDoNotDecodeAreRefusedAndAMalformedStateChangesNothing) {
  label_join j;
  std::vector<labelled_pair> out;
  j.prediction("a", "m", 1, "production", 0.5, kHour, out);
  const std::string bytes = encode_state(j.save());
  auto torn = decode_state(bytes.substr(0, bytes.size() / 2));  // a torn write
  ASSERT_FALSE(torn);
  EXPECT_EQ(torn.error_code(), errc::invalid);
  EXPECT_FALSE(decode_state("not a state"));
  EXPECT_FALSE(decode_state(""));
  // A document of another shape: restore throws and the join keeps what it had.
  EXPECT_ANY_THROW(j.restore(nlohmann::json{{"counts", {1, 2}}}));
  EXPECT_EQ(j.figures().predictions, 1u);
  EXPECT_EQ(j.waiting_predictions(), 1u);
}

}  // namespace
}  // namespace tessera::monitoring
