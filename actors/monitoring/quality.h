// Live model quality from joined (score, label) pairs, with confidence intervals, and a canary
// compared with production: plain C++, no actors. The point metrics are training's (evaluation.h)
// so that live and offline figures are the same computation.
#pragma once
#include <cstdint>
#include <vector>

#include "evaluation.h"

namespace tessera::monitoring {

struct interval {
  double low = 0, high = 0;
};

struct live_quality {
  binary_metrics point;  // AUC, log loss, accuracy, ECE, calibration bins
  uint64_t positives = 0, negatives = 0;
  double log_loss_sd = 0;            // of the per-example losses
  interval auc, log_loss, accuracy;  // at the confidence asked for
};

// `confidence` e.g. 0.95. AUC: Hanley-McNeil standard error; log loss: the mean of the per-example
// losses with their standard error; accuracy: Wilson's interval. Intervals are empty (0, 0) with
// fewer than 2 pairs, and the AUC's needs both classes.
live_quality assess(const std::vector<float>& p, const std::vector<float>& y,
                    double confidence = 0.95);

// A candidate (canary) against production on their own pairs: one-sided tests that the candidate
// is worse — its mean log loss higher (difference of means, Welch's standard error) or its AUC
// lower (independent Hanley-McNeil errors). `worse` when either p-value is below alpha / 2, so
// that an equally good candidate is called worse at most at rate alpha.
struct comparison {
  double log_loss_diff = 0, log_loss_p = 1;  // candidate - production
  double auc_diff = 0, auc_p = 1;
  bool worse = false;
};
comparison compare(const live_quality& candidate, const live_quality& production,
                   double alpha = 0.01);

// The standard normal's upper quantile: z with P(Z > z) = p.
double normal_quantile_upper(double p);
// P(Z > z).
double normal_tail(double z);

}  // namespace tessera::monitoring
