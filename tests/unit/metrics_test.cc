// latency_histogram against exact quantiles of the same samples (sorted, nearest rank).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "metrics.h"

namespace tessera {
namespace {

TEST(LatencyHistogram, QuantilesWithinOneBucketOfExact) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(std::log(2000.0), 1.5);  // µs: ~2 ms median, long tail
  latency_histogram h;
  std::vector<double> xs;
  for (int i = 0; i < 20000; ++i) {
    double x = dist(rng);
    xs.push_back(x);
    h.record_us(x);
  }
  std::sort(xs.begin(), xs.end());
  ASSERT_EQ(h.count(), xs.size());
  const double step = std::exp2(1.0 / latency_histogram::kPerDoubling);  // one bucket's width
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    double exact = xs[static_cast<size_t>(std::ceil(q * xs.size())) - 1];
    double got = h.quantile_us(q);
    // The reported value is the upper edge of the bucket holding the exact sample.
    EXPECT_GE(got, exact * 0.999) << "q=" << q;
    EXPECT_LE(got, exact * step * 1.001) << "q=" << q;
  }
}

TEST(LatencyHistogram, EmptyAndExtremes) {
  latency_histogram h;
  EXPECT_EQ(h.quantile_us(0.5), 0);
  h.record_us(0);      // sub-microsecond lands in the first bucket
  h.record_us(-5);     // clock skew between hosts can make a stage negative: clamped, no crash
  h.record_us(1e300);  // beyond the last bucket: clamped
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.quantile_us(0.5), 1.0);
  EXPECT_GT(h.quantile_us(1.0), 1e9);
}

}  // namespace
}  // namespace tessera
