// Drift of a value's distribution (a model input or the score) against the reference recorded at
// training: plain C++, no actors. The monitoring actors feed it the prediction log.
//
// The statistic is the population stability index (PSI) on the reference's bins plus a bin for
// missing values. Its threshold is not a fixed 0.1 or 0.2: under no change, n·N/(n+N)·PSI is
// asymptotically chi-square with (bins used - 1) degrees of freedom (n the window's count, N the
// reference's), so the window drifts when that tail probability is below the configured false-
// alarm rate, and the PSI is at least a minimum effect (a huge window makes tiny shifts
// significant; they are not worth a page). A small window needs a large PSI; a large one a small.
// The effect size beside it is the mean shift in reference standard deviations.
//
// An alarm raises once when k of the last n windows drifted, stays up while any of them did, and
// after resolving waits a cooldown before it may raise again: a persistent drift is one alert.
#pragma once
#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tessera::monitoring {

// A reference distribution as training records it (actors/training/evaluation.h): 11 edges (min,
// deciles, max), the count in each of the 10 bins between them, and the missing share.
struct drift_reference {
  std::string name;
  std::vector<double> edges;
  std::vector<uint64_t> counts;
  uint64_t n = 0;      // values, present and missing
  double missing = 0;  // share of n that was missing
  double mean = 0, stddev = 0;
};

// The bin of v among the reference's edges: the bin whose [edge_i, edge_i+1) holds v, values
// below the minimum in the first, the maximum and above in the last (training's binning).
size_t bin_of(const std::vector<double>& edges, double v);

// What a window saw of one value: counts per reference bin, missing values, sum and sum of
// squares of the present ones.
struct window_counts {
  std::vector<uint64_t> counts;
  uint64_t missing = 0;
  double sum = 0, sum_squares = 0;
  uint64_t present() const;
  uint64_t n() const { return present() + missing; }
  void add(const drift_reference& ref, double v);  // NaN or infinite: missing
  void merge(const window_counts& o);
};

struct drift_config {
  double false_alarm_rate = 0.01;  // per value and window, under no change
  double min_psi = 0.01;           // a significant PSI below this is not drift
  uint64_t min_samples = 100;      // smaller windows are not tested
};

struct drift_result {
  std::string name;
  uint64_t n = 0;
  bool tested = false;  // n >= min_samples and the reference has values
  double psi = 0;
  double js = 0;             // Jensen-Shannon divergence (natural log) on the same bins
  double p_value = 1;        // of the PSI under no change
  double threshold = 0;      // the PSI this window needed (false-alarm rate, min_psi)
  double mean_shift_sd = 0;  // (window mean - reference mean) / reference standard deviation
  int dof = 0;
  bool drifted = false;
};
drift_result test_drift(const drift_reference& ref, const window_counts& w, const drift_config& c);

// Ranks drifted results first, then by PSI (largest first); `contribution` is each result's share
// of the total PSI of the drifted ones (0 for the rest).
struct ranked {
  drift_result result;
  double contribution = 0;
};
std::vector<ranked> rank_by_contribution(std::vector<drift_result> results);

// P(X > x) for X chi-square with `dof` degrees of freedom.
double chi_square_tail(double x, int dof);
// The x with P(X > x) = p (bisection on chi_square_tail).
double chi_square_quantile_upper(double p, int dof);

struct persistence {
  int k = 3;  // drifted windows among the last n that raise
  int n = 5;
  int cooldown = 6;  // windows after a resolve before the alarm may raise again
};

class drift_alarm {
 public:
  enum class change { none, raised, resolved };
  explicit drift_alarm(persistence p = {}) : p_(p) {}
  change feed(bool drifted);
  bool firing() const { return firing_; }
  nlohmann::json save() const;  // checkpoint.cc
  void restore(const nlohmann::json& j);

 private:
  persistence p_;
  std::deque<bool> recent_;
  bool firing_ = false;
  int since_resolved_ = 1 << 30;
};

// A sliding window of event time over one value: buckets of `window / buckets` each, dropped as
// time moves past them. Events older than the window at their arrival are not counted.
class sliding_counts {
 public:
  // `slack` more buckets are kept than the window spans, so that a window can be read that many
  // buckets after its end while later values already arrive (drift_monitor tests a step late).
  sliding_counts(drift_reference ref, int64_t window_us, int buckets, int slack = 0);
  void add(int64_t time_us, double v);
  // The window (now - window, now].
  window_counts at(int64_t now_us) const;
  const drift_reference& reference() const { return ref_; }
  // The reference and the buckets (checkpoint.cc); the constructor from a saved one.
  nlohmann::json save() const;
  explicit sliding_counts(const nlohmann::json& saved);

 private:
  struct bucket {
    int64_t index = std::numeric_limits<int64_t>::min();  // empty
    window_counts counts;
  };
  drift_reference ref_;
  int64_t width_;
  int64_t span_;  // buckets in a window
  std::vector<bucket> ring_;
};

}  // namespace tessera::monitoring
