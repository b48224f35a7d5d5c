#include "quality.h"

#include <algorithm>
#include <cmath>

namespace tessera::monitoring {

namespace {

double auc_standard_error(double a, double pos, double neg) {
  if (pos < 1 || neg < 1) return 0;
  const double q1 = a / (2 - a), q2 = 2 * a * a / (1 + a);
  const double v =
      (a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a)) / (pos * neg);
  return std::sqrt(std::max(0.0, v));
}

double log_loss_standard_error(const live_quality& q) {
  return q.point.n > 1 ? q.log_loss_sd / std::sqrt(static_cast<double>(q.point.n)) : 0;
}

}  // namespace

double normal_tail(double z) {
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

double normal_quantile_upper(double p) {
  double lo = -40, hi = 40;
  for (int i = 0; i < 200; ++i) {
    const double mid = (lo + hi) / 2;
    (normal_tail(mid) > p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

live_quality assess(const std::vector<float>& p, const std::vector<float>& y, double confidence) {
  live_quality q;
  q.point = evaluate(p, y);
  if (p.size() != y.size()) return q;
  for (float v : y) (v > 0.5f ? q.positives : q.negatives) += 1;
  const double n = static_cast<double>(p.size());
  if (p.size() < 2) return q;
  double ss = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double c = std::clamp(static_cast<double>(p[i]), 1e-7, 1 - 1e-7);
    const double loss = y[i] > 0.5f ? -std::log(c) : -std::log(1 - c);
    ss += (loss - q.point.log_loss) * (loss - q.point.log_loss);
  }
  q.log_loss_sd = std::sqrt(ss / (n - 1));
  const double z = normal_quantile_upper((1 - confidence) / 2);
  const double le = log_loss_standard_error(q);
  q.log_loss = {q.point.log_loss - z * le, q.point.log_loss + z * le};
  if (q.positives && q.negatives) {
    const double ae = auc_standard_error(q.point.auc, static_cast<double>(q.positives),
                                         static_cast<double>(q.negatives));
    q.auc = {std::max(0.0, q.point.auc - z * ae), std::min(1.0, q.point.auc + z * ae)};
  }
  // Wilson's interval for the accuracy.
  const double a = q.point.accuracy, z2 = z * z;
  const double centre = (a + z2 / (2 * n)) / (1 + z2 / n);
  const double half = z * std::sqrt(a * (1 - a) / n + z2 / (4 * n * n)) / (1 + z2 / n);
  q.accuracy = {centre - half, centre + half};
  return q;
}

comparison compare(const live_quality& candidate, const live_quality& production, double alpha) {
  comparison c;
  c.log_loss_diff = candidate.point.log_loss - production.point.log_loss;
  const double le =
      std::hypot(log_loss_standard_error(candidate), log_loss_standard_error(production));
  if (le > 0) c.log_loss_p = normal_tail(c.log_loss_diff / le);
  c.auc_diff = candidate.point.auc - production.point.auc;
  const double ae =
      std::hypot(auc_standard_error(candidate.point.auc, static_cast<double>(candidate.positives),
                                    static_cast<double>(candidate.negatives)),
                 auc_standard_error(production.point.auc, static_cast<double>(production.positives),
                                    static_cast<double>(production.negatives)));
  if (ae > 0) c.auc_p = normal_tail(-c.auc_diff / ae);
  // Two tests, each at alpha / 2 (Bonferroni): the chance of calling an equal candidate worse
  // stays within alpha.
  c.worse = c.log_loss_p < alpha / 2 || c.auc_p < alpha / 2;
  return c;
}

}  // namespace tessera::monitoring
