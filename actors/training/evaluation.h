// Model evaluation and reference distributions: plain C++ (no libtorch), shared by training,
// `tessera models show` and later monitoring.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tessera {

struct calibration_bin {
  double mean_predicted = 0;
  double observed_rate = 0;
  uint64_t count = 0;
};

// Binary classification metrics of predicted probabilities p against labels y (0 or 1).
struct binary_metrics {
  uint64_t n = 0;
  double base_rate = 0;  // mean label
  double auc = 0;        // ROC AUC, ties counted half (Mann-Whitney)
  double log_loss = 0;   // mean negative log-likelihood, p clipped to [1e-7, 1 - 1e-7]
  double accuracy = 0;   // at threshold 0.5
  double ece = 0;        // expected calibration error over 10 equal-width bins
  std::vector<calibration_bin> calibration;
};
binary_metrics evaluate(const std::vector<float>& p, const std::vector<float>& y);

// A feature's (or the predictions') distribution, as monitoring will compare against it:
// mean, standard deviation, share missing, and counts in 10 bins between deciles.
struct distribution {
  std::string name;
  uint64_t n = 0;
  double missing = 0;
  double mean = 0, stddev = 0;
  std::vector<double> edges;     // 11 edges: min, deciles, max
  std::vector<uint64_t> counts;  // 10 bins
};
// `values` may hold NaN for missing.
distribution describe_distribution(const std::string& name, std::vector<float> values);

nlohmann::json to_json(const binary_metrics& m);
nlohmann::json to_json(const distribution& d);

}  // namespace tessera
