// Live quality (actors/monitoring/quality.h): point metrics equal a brute-force computation over
// the pairs; the intervals cover the true value at about their nominal rate on data whose truth
// is known in closed form; canary-vs-production calls an equally good canary worse at no more
// than its rate, and finds a noisier one.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quality.h"

namespace tessera::monitoring {
namespace {

double logistic(double x) {
  return 1 / (1 + std::exp(-x));
}

// Negatives score N(0, 1), positives N(d, 1), blurred by N(0, noise) when asked; the prediction
// is the true posterior P(y = 1 | score) (calibrated, monotone in the score): the true AUC is
// Phi(d / sqrt(2 (1 + noise^2))).
void binormal(std::mt19937_64& rng, size_t n, double prevalence, double d, std::vector<float>& p,
              std::vector<float>& y, double noise = 0) {
  std::normal_distribution<double> z(0, 1);
  std::bernoulli_distribution pos(prevalence);
  p.clear();
  y.clear();
  for (size_t i = 0; i < n; ++i) {
    const bool yi = pos(rng);
    double s = z(rng) + (yi ? d : 0);
    if (noise > 0) s += noise * z(rng);
    const double var = 1 + noise * noise;
    p.push_back(static_cast<float>(
        logistic(d * s / var - d * d / (2 * var) + std::log(prevalence / (1 - prevalence)))));
    y.push_back(yi ? 1.0f : 0.0f);
  }
}

TEST(Quality, PointMetricsEqualABruteForceComputationWithTies) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<float> p, y;
  for (int i = 0; i < 3000; ++i) {
    const double s = std::round(u(rng) * 20) / 20;  // 21 distinct scores: many ties
    p.push_back(static_cast<float>(s));
    y.push_back(u(rng) < 0.2 + 0.6 * s ? 1.0f : 0.0f);
  }
  double wins = 0, pairs = 0, loss = 0, correct = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double c = std::clamp(static_cast<double>(p[i]), 1e-7, 1 - 1e-7);
    loss += y[i] > 0.5f ? -std::log(c) : -std::log(1 - c);
    correct += (p[i] >= 0.5f) == (y[i] > 0.5f);
    if (y[i] < 0.5f) continue;
    for (size_t j = 0; j < p.size(); ++j) {
      if (y[j] > 0.5f) continue;
      pairs += 1;
      wins += p[i] > p[j] ? 1 : p[i] == p[j] ? 0.5 : 0;
    }
  }
  const live_quality q = assess(p, y);
  EXPECT_NEAR(q.point.auc, wins / pairs, 1e-9);
  EXPECT_NEAR(q.point.log_loss, loss / static_cast<double>(p.size()), 1e-9);
  EXPECT_NEAR(q.point.accuracy, correct / static_cast<double>(p.size()), 1e-12);
  EXPECT_EQ(q.positives + q.negatives, p.size());
  EXPECT_LT(q.auc.low, q.point.auc);
  EXPECT_GT(q.auc.high, q.point.auc);
  EXPECT_LT(q.accuracy.low, q.point.accuracy);
  EXPECT_GT(q.accuracy.high, q.point.accuracy);
}

TEST(Quality, IntervalsCoverTheTrueValueAtAboutTheirNominalRate) {
  std::mt19937_64 rng(11);
  // AUC: binormal, d = 1 (true AUC 0.7602), 400 samples of 600 pairs at 25% positives.
  const double d = 1;
  const double auc_truth = 0.5 * std::erfc(-(d / std::sqrt(2.0)) / std::sqrt(2.0));  // Phi(d/sqrt2)
  int auc_cover = 0, ll_cover = 0, acc_cover = 0;
  const int trials = 400;
  // Log loss and accuracy: a calibrated model, p ~ U(0.05, 0.95), y ~ Bernoulli(p). The true
  // expected log loss is the mean binary entropy over p, and the true accuracy the mean of
  // max(p, 1 - p): both by numeric integration.
  double ll_truth = 0, acc_truth = 0;
  const int steps = 200000;
  for (int k = 0; k < steps; ++k) {
    const double x = 0.05 + 0.9 * (k + 0.5) / steps;
    ll_truth += -(x * std::log(x) + (1 - x) * std::log(1 - x)) / steps;
    acc_truth += std::max(x, 1 - x) / steps;
  }
  std::uniform_real_distribution<double> u(0.05, 0.95), v(0, 1);
  for (int t = 0; t < trials; ++t) {
    std::vector<float> p, y;
    binormal(rng, 600, 0.25, d, p, y);
    auto q = assess(p, y);
    auc_cover += q.auc.low <= auc_truth && auc_truth <= q.auc.high;
    p.clear();
    y.clear();
    for (int i = 0; i < 600; ++i) {
      const double x = u(rng);
      p.push_back(static_cast<float>(x));
      y.push_back(v(rng) < x ? 1.0f : 0.0f);
    }
    q = assess(p, y);
    ll_cover += q.log_loss.low <= ll_truth && ll_truth <= q.log_loss.high;
    acc_cover += q.accuracy.low <= acc_truth && acc_truth <= q.accuracy.high;
  }
  // 95% intervals; with 400 trials the observed rate's standard error is 1.1 points.
  EXPECT_GE(auc_cover, trials * 0.91) << auc_cover;
  EXPECT_GE(ll_cover, trials * 0.91) << ll_cover;
  EXPECT_GE(acc_cover, trials * 0.91) << acc_cover;
  EXPECT_LE(auc_cover, trials * 0.99) << auc_cover;  // not trivially wide either
  EXPECT_LE(ll_cover, trials * 0.99) << ll_cover;
  std::printf(
      "coverage of 95%% intervals over %d samples: AUC %.1f%%, log loss %.1f%%, accuracy "
      "%.1f%%\n",
      trials, 100.0 * auc_cover / trials, 100.0 * ll_cover / trials, 100.0 * acc_cover / trials);
}

TEST(Quality, AnEquallyGoodCanaryIsCalledWorseAtMostAtAlphaAndANoisierOneIsFound) {
  std::mt19937_64 rng(23);
  const int trials = 2000;
  int false_worse = 0;
  std::vector<float> p, y, p2, y2;
  for (int t = 0; t < trials; ++t) {
    binormal(rng, 1000, 0.2, 1.2, p, y);
    binormal(rng, 1000, 0.2, 1.2, p2, y2);
    false_worse += compare(assess(p, y), assess(p2, y2), 0.01).worse;
  }
  // alpha 1%: 20 expected at most; the observed count's standard error is about 4.5.
  EXPECT_LE(false_worse, 35) << false_worse;
  int found = 0, better_called_worse = 0;
  for (int t = 0; t < 100; ++t) {
    binormal(rng, 5000, 0.2, 1.2, p, y, /*noise=*/1.0);  // canary: its scores blurred
    binormal(rng, 5000, 0.2, 1.2, p2, y2);
    found += compare(assess(p, y), assess(p2, y2), 0.01).worse;
    better_called_worse += compare(assess(p2, y2), assess(p, y), 0.01).worse;
  }
  EXPECT_GE(found, 95) << found;
  EXPECT_EQ(better_called_worse, 0);
  std::printf(
      "equal canaries called worse: %d of %d (alpha 1%%); a noisier canary found in %d "
      "of 100 at 5000 pairs each\n",
      false_worse, trials, found);
}

}  // namespace
}  // namespace tessera::monitoring
