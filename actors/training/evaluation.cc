#include "evaluation.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tessera {

binary_metrics evaluate(const std::vector<float>& p, const std::vector<float>& y) {
  binary_metrics m;
  m.n = p.size();
  if (p.empty() || p.size() != y.size()) return m;
  std::vector<size_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  // AUC = (sum of positive ranks - P(P+1)/2) / (P N), average ranks for ties.
  double rank_sum = 0;
  uint64_t pos = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && p[order[j]] == p[order[i]]) ++j;
    const double avg_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (size_t k = i; k < j; ++k)
      if (y[order[k]] > 0.5f) rank_sum += avg_rank, ++pos;
    i = j;
  }
  const double P = static_cast<double>(pos), N = static_cast<double>(p.size() - pos);
  m.auc = (P > 0 && N > 0) ? (rank_sum - P * (P + 1) / 2) / (P * N) : 0.5;
  m.base_rate = P / static_cast<double>(p.size());
  double ll = 0;
  uint64_t correct = 0;
  m.calibration.assign(10, {});
  for (size_t i = 0; i < p.size(); ++i) {
    const double q = std::clamp(static_cast<double>(p[i]), 1e-7, 1 - 1e-7);
    const bool yi = y[i] > 0.5f;
    ll -= yi ? std::log(q) : std::log(1 - q);
    correct += (q >= 0.5) == yi;
    auto& b = m.calibration[std::min<size_t>(9, static_cast<size_t>(q * 10))];
    b.mean_predicted += q;
    b.observed_rate += yi;
    ++b.count;
  }
  m.log_loss = ll / static_cast<double>(p.size());
  m.accuracy = static_cast<double>(correct) / static_cast<double>(p.size());
  for (auto& b : m.calibration) {
    if (!b.count) continue;
    b.mean_predicted /= static_cast<double>(b.count);
    b.observed_rate /= static_cast<double>(b.count);
    m.ece += std::fabs(b.mean_predicted - b.observed_rate) * static_cast<double>(b.count) /
             static_cast<double>(p.size());
  }
  return m;
}

distribution describe_distribution(const std::string& name, std::vector<float> values) {
  distribution d;
  d.name = name;
  d.n = values.size();
  auto end =
      std::remove_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
  const size_t present = static_cast<size_t>(end - values.begin());
  values.resize(present);
  d.missing = d.n ? 1.0 - static_cast<double>(present) / static_cast<double>(d.n) : 0;
  if (values.empty()) return d;
  double sum = 0;
  for (float v : values) sum += v;
  d.mean = sum / static_cast<double>(present);
  double ss = 0;
  for (float v : values) ss += (v - d.mean) * (v - d.mean);
  d.stddev = std::sqrt(ss / static_cast<double>(present));
  std::sort(values.begin(), values.end());
  for (int q = 0; q <= 10; ++q)
    d.edges.push_back(values[std::min(present - 1, present * static_cast<size_t>(q) / 10)]);
  d.counts.assign(10, 0);
  for (float v : values) {
    // The bin whose [edge_i, edge_i+1) holds v; the last bin includes the maximum.
    size_t b = static_cast<size_t>(std::upper_bound(d.edges.begin() + 1, d.edges.end() - 1, v) -
                                   (d.edges.begin() + 1));
    ++d.counts[std::min<size_t>(b, 9)];
  }
  return d;
}

nlohmann::json to_json(const binary_metrics& m) {
  auto cal = nlohmann::json::array();
  for (auto& b : m.calibration)
    cal.push_back({{"mean_predicted", b.mean_predicted},
                   {"observed_rate", b.observed_rate},
                   {"count", b.count}});
  return {{"n", m.n},
          {"base_rate", m.base_rate},
          {"auc", m.auc},
          {"log_loss", m.log_loss},
          {"accuracy", m.accuracy},
          {"ece", m.ece},
          {"calibration", cal}};
}

nlohmann::json to_json(const distribution& d) {
  return {{"name", d.name},     {"n", d.n},         {"missing", d.missing}, {"mean", d.mean},
          {"stddev", d.stddev}, {"edges", d.edges}, {"counts", d.counts}};
}

}  // namespace tessera
