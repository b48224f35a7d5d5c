#include "drift.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tessera::monitoring {

namespace {

// Regularized incomplete gamma: the lower P(a, x) by its series (x < a + 1), the upper Q(a, x)
// by its continued fraction (modified Lentz) otherwise.
double gamma_p_series(double a, double x) {
  double term = 1.0 / a, sum = term;
  for (int i = 1; i < 1000; ++i) {
    term *= x / (a + i);
    sum += term;
    if (std::fabs(term) < std::fabs(sum) * 1e-15) break;
  }
  return sum * std::exp(-x + a * std::log(x) - std::lgamma(a));
}

double gamma_q_fraction(double a, double x) {
  constexpr double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1) < 1e-15) break;
  }
  return std::exp(-x + a * std::log(x) - std::lgamma(a)) * h;
}

}  // namespace

double chi_square_tail(double x, int dof) {
  if (dof <= 0) return 1;
  if (!(x > 0)) return 1;
  const double a = dof / 2.0, h = x / 2.0;
  if (h < a + 1) return std::clamp(1 - gamma_p_series(a, h), 0.0, 1.0);
  return std::clamp(gamma_q_fraction(a, h), 0.0, 1.0);
}

double chi_square_quantile_upper(double p, int dof) {
  if (dof <= 0) return 0;
  double lo = 0, hi = std::max(1.0, static_cast<double>(dof));
  while (chi_square_tail(hi, dof) > p) hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = (lo + hi) / 2;
    (chi_square_tail(mid, dof) > p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

size_t bin_of(const std::vector<double>& edges, double v) {
  if (edges.size() < 3) return 0;
  const size_t bins = edges.size() - 1;
  const size_t b = static_cast<size_t>(std::upper_bound(edges.begin() + 1, edges.end() - 1, v) -
                                       (edges.begin() + 1));
  return std::min(b, bins - 1);
}

uint64_t window_counts::present() const {
  uint64_t s = 0;
  for (auto c : counts) s += c;
  return s;
}

void window_counts::add(const drift_reference& ref, double v) {
  if (counts.size() != ref.counts.size()) counts.assign(ref.counts.size(), 0);
  if (!std::isfinite(v) || counts.empty()) {
    ++missing;
    return;
  }
  ++counts[bin_of(ref.edges, v)];
  sum += v;
  sum_squares += v * v;
}

void window_counts::merge(const window_counts& o) {
  if (counts.size() < o.counts.size()) counts.resize(o.counts.size(), 0);
  for (size_t i = 0; i < o.counts.size(); ++i) counts[i] += o.counts[i];
  missing += o.missing;
  sum += o.sum;
  sum_squares += o.sum_squares;
}

drift_result test_drift(const drift_reference& ref, const window_counts& w, const drift_config& c) {
  drift_result r;
  r.name = ref.name;
  r.n = w.n();
  // The reference's categories: its bins, then missing.
  std::vector<double> rc(ref.counts.begin(), ref.counts.end());
  const double ref_present = [&] {
    double s = 0;
    for (double x : rc) s += x;
    return s;
  }();
  const double ref_missing = std::max(0.0, std::round(ref.missing * static_cast<double>(ref.n)));
  rc.push_back(ref_missing);
  std::vector<double> wc(rc.size(), 0);
  for (size_t i = 0; i < w.counts.size() && i + 1 < wc.size(); ++i)
    wc[i] = static_cast<double>(w.counts[i]);
  wc.back() = static_cast<double>(w.missing);
  const double big_n = ref_present + ref_missing, n = static_cast<double>(r.n);
  if (ref_present > 0 && ref.stddev > 0 && w.present() > 0) {
    const double mean = w.sum / static_cast<double>(w.present());
    r.mean_shift_sd = (mean - ref.mean) / ref.stddev;
  }
  if (big_n <= 0 || r.n < c.min_samples || r.n == 0) return r;
  // Categories either side saw; half a count added to each so that an empty one stays finite.
  std::vector<size_t> used;
  for (size_t i = 0; i < rc.size(); ++i)
    if (rc[i] > 0 || wc[i] > 0) used.push_back(i);
  const double k = static_cast<double>(used.size());
  if (used.size() < 2) {
    r.tested = true;
    return r;
  }
  double psi = 0, js = 0;
  for (size_t i : used) {
    const double p = (rc[i] + 0.5) / (big_n + 0.5 * k), q = (wc[i] + 0.5) / (n + 0.5 * k);
    psi += (q - p) * std::log(q / p);
    const double m = (p + q) / 2;
    js += 0.5 * p * std::log(p / m) + 0.5 * q * std::log(q / m);
  }
  r.tested = true;
  r.psi = psi;
  r.js = js;
  r.dof = static_cast<int>(used.size()) - 1;
  const double scale = n * big_n / (n + big_n);
  r.p_value = chi_square_tail(psi * scale, r.dof);
  r.threshold = std::max(c.min_psi, chi_square_quantile_upper(c.false_alarm_rate, r.dof) / scale);
  r.drifted = r.p_value < c.false_alarm_rate && psi >= c.min_psi;
  return r;
}

std::vector<ranked> rank_by_contribution(std::vector<drift_result> results) {
  std::stable_sort(results.begin(), results.end(),
                   [](const drift_result& a, const drift_result& b) {
                     if (a.drifted != b.drifted) return a.drifted;
                     return a.psi > b.psi;
                   });
  double total = 0;
  for (auto& r : results)
    if (r.drifted) total += r.psi;
  std::vector<ranked> out;
  out.reserve(results.size());
  for (auto& r : results) {
    const double share = r.drifted && total > 0 ? r.psi / total : 0;
    out.push_back({std::move(r), share});
  }
  return out;
}

drift_alarm::change drift_alarm::feed(bool drifted) {
  recent_.push_back(drifted);
  while (static_cast<int>(recent_.size()) > p_.n) recent_.pop_front();
  const int hits = static_cast<int>(std::count(recent_.begin(), recent_.end(), true));
  if (firing_) {
    if (hits > 0) return change::none;
    firing_ = false;
    since_resolved_ = 0;
    return change::resolved;
  }
  if (since_resolved_ < p_.cooldown) ++since_resolved_;
  if (hits >= p_.k && since_resolved_ >= p_.cooldown) {
    firing_ = true;
    return change::raised;
  }
  return change::none;
}

sliding_counts::sliding_counts(drift_reference ref, int64_t window_us, int buckets, int slack)
    : ref_(std::move(ref)),
      width_(std::max<int64_t>(1, window_us / std::max(1, buckets))),
      span_(std::max(1, buckets)),
      ring_(static_cast<size_t>(std::max(1, buckets) + std::max(0, slack))) {}

void sliding_counts::add(int64_t time_us, double v) {
  const int64_t index = time_us >= 0 ? time_us / width_ : (time_us - width_ + 1) / width_;
  auto& b = ring_[static_cast<size_t>(
      ((index % static_cast<int64_t>(ring_.size())) + static_cast<int64_t>(ring_.size())) %
      static_cast<int64_t>(ring_.size()))];
  if (b.index > index) return;  // older than the window the ring holds
  if (b.index < index) b = {index, {}};
  b.counts.add(ref_, v);
}

window_counts sliding_counts::at(int64_t now_us) const {
  const int64_t now_index = now_us >= 0 ? now_us / width_ : (now_us - width_ + 1) / width_;
  const int64_t oldest = now_index - span_ + 1;
  window_counts w;
  w.counts.assign(ref_.counts.size(), 0);
  for (auto& b : ring_)
    if (b.index >= oldest && b.index <= now_index) w.merge(b.counts);
  return w;
}

}  // namespace tessera::monitoring
