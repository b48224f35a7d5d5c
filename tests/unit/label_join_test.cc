// Delayed labels joined to logged predictions (actors/monitoring/label_join.h): on a simulated
// stream of predictions and labels — late, duplicated, missing, and labels that arrive before
// their prediction — the pairs and every count equal a per-key computation of the documented
// rules, and the live AUC and log loss of the pairs equal a brute-force computation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <tuple>

#include "label_join.h"
#include "quality.h"

namespace tessera::monitoring {
namespace {

constexpr int64_t kHour = 3600LL * 1000000, kDay = 24 * kHour;

struct input {
  int64_t arrives;  // when the monitor sees it
  bool is_label;
  std::string key, model;
  double value;  // score or label
  int64_t time;  // prediction time or label time
};

TEST(LabelJoin, PairsAndCountsFollowTheDocumentedRulesAndQualityEqualsBruteForce) {
  label_join::options o;
  o.max_label_delay_us = 2 * kDay;
  o.label_grace_us = kHour;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<input> in;
  // Expected, per key, by the rules.
  std::map<std::string, std::vector<std::tuple<int64_t, double, double>>> want_pairs;  // model
  uint64_t want_unlabelled = 0, want_late = 0, want_unmatched = 0, want_dup = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string key = "F" + std::to_string(i);
    const int64_t tp = static_cast<int64_t>(u(rng) * 10 * kDay) + 1;
    const double p_true = u(rng);
    const bool has_label = u(rng) < 0.9;
    const int64_t tl = tp + static_cast<int64_t>(u(rng) * 3 * kDay) + 1;  // a third too late
    const double y = u(rng) < p_true ? 1 : 0;
    // 5% of predictions reach the monitor after their label (up to 2 h after: half past grace).
    const bool delayed = has_label && u(rng) < 0.05;
    const int64_t ap = delayed ? tl + static_cast<int64_t>(u(rng) * 2 * kHour) + 1 : tp;
    std::vector<std::string> models{"production"};
    if (u(rng) < 0.7) models.push_back("shadow");
    bool joined_any = false;
    for (auto& m : models) {
      const double score =
          std::clamp(p_true + (m == "shadow" ? 0.2 : 0.05) * (u(rng) - 0.5), 0.001, 0.999);
      in.push_back({ap, false, key, m, score, tp});
      if (!has_label) {
        ++want_unlabelled;
        continue;
      }
      if (!delayed) {  // waits for the label; expires at tp + max delay
        if (tl < tp + o.max_label_delay_us) {
          want_pairs[m].emplace_back(tp, score, y);
          joined_any = true;
        } else {
          ++want_unlabelled;
        }
      } else if (ap < tl + o.label_grace_us && tl - tp <= o.max_label_delay_us) {
        want_pairs[m].emplace_back(tp, score, y);
        joined_any = true;
      } else {
        ++want_late;  // after the grace, or labelled too long after the prediction
      }
    }
    if (has_label) {
      in.push_back({tl, true, key, "", y, tl});
      if (!joined_any) ++want_unmatched;
      if (u(rng) < 0.05) {  // a duplicate label, the other way round, within a day
        const int64_t t2 = tl + static_cast<int64_t>(u(rng) * kDay) + 1;
        in.push_back({t2, true, key, "", 1 - y, t2});
        ++want_dup;
      }
    }
  }
  std::stable_sort(in.begin(), in.end(),
                   [](const input& a, const input& b) { return a.arrives < b.arrives; });
  label_join j(o);
  std::vector<labelled_pair> pairs;
  for (auto& e : in) {
    j.advance(e.arrives);
    if (e.is_label)
      j.label(e.key, e.value, e.time, pairs);
    else
      j.prediction(e.key, e.model, 1, e.model, e.value, e.time, pairs);
  }
  j.advance(INT64_MAX / 2);
  const auto& c = j.figures();
  EXPECT_EQ(c.unlabelled, want_unlabelled);
  EXPECT_EQ(c.late, want_late);
  EXPECT_EQ(c.unmatched, want_unmatched);
  EXPECT_EQ(c.duplicate_labels, want_dup);
  EXPECT_EQ(j.waiting_predictions(), 0u);
  EXPECT_EQ(j.waiting_labels(), 0u);
  uint64_t want_joined = 0;
  for (auto& [m, v] : want_pairs) want_joined += v.size();
  EXPECT_EQ(c.joined, want_joined);
  EXPECT_EQ(pairs.size(), want_joined);
  EXPECT_GT(want_late, 10u);  // every path exercised
  EXPECT_GT(want_unmatched, 10u);
  for (auto& [m, want] : want_pairs) {
    std::vector<std::tuple<int64_t, double, double>> got;
    std::vector<float> p, y;
    for (auto& pr : pairs)
      if (pr.stage == m) {
        got.emplace_back(pr.prediction_time, pr.score, pr.label);
        p.push_back(static_cast<float>(pr.score));
        y.push_back(static_cast<float>(pr.label));
      }
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want) << m;
    // Live AUC and log loss of the joined pairs against a brute force over the expected pairs.
    double wins = 0, np = 0, loss = 0;
    for (auto& [t, s, l] : want) {
      const double cl = std::clamp(static_cast<double>(static_cast<float>(s)), 1e-7, 1 - 1e-7);
      loss += l > 0.5 ? -std::log(cl) : -std::log(1 - cl);
      if (l < 0.5) continue;
      for (auto& [t2, s2, l2] : want) {
        if (l2 > 0.5) continue;
        const float a = static_cast<float>(s), b = static_cast<float>(s2);
        np += 1;
        wins += a > b ? 1 : a == b ? 0.5 : 0;
      }
    }
    const live_quality q = assess(p, y);
    EXPECT_NEAR(q.point.auc, wins / np, 1e-9) << m;
    EXPECT_NEAR(q.point.log_loss, loss / static_cast<double>(want.size()), 1e-9) << m;
  }
}

TEST(LabelJoin, ADuplicatePredictionIsIgnoredAndAFullJoinDropsTheOldestAndCountsThem) {
  label_join::options o;
  o.max_pending = 3;
  label_join j(o);
  std::vector<labelled_pair> pairs;
  j.prediction("a", "m", 1, "production", 0.9, 10, pairs);
  j.prediction("a", "m", 1, "production", 0.1, 11, pairs);  // a retried publish
  EXPECT_EQ(j.figures().duplicate_predictions, 1u);
  j.prediction("b", "m", 1, "production", 0.5, 20, pairs);
  j.prediction("c", "m", 1, "production", 0.5, 30, pairs);
  j.prediction("d", "m", 1, "production", 0.5, 40, pairs);  // 4 > 3: "a" (oldest) dropped
  EXPECT_EQ(j.figures().dropped, 1u);
  EXPECT_EQ(j.waiting_predictions(), 3u);
  j.label("a", 1, 50, pairs);
  EXPECT_TRUE(pairs.empty());
  j.label("b", 1, 50, pairs);
  ASSERT_EQ(pairs.size(), 1u);
  EXPECT_EQ(pairs[0].score, 0.5);
  EXPECT_EQ(pairs[0].label, 1);
}

}  // namespace
}  // namespace tessera::monitoring
