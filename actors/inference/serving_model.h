// One model version loaded for serving on this node: what its inputs are (each a column of its
// label's dataset: an on-demand feature or a view's feature, at the view versions its registry
// record names), how examples are derived (example_deriver, the dataset build's own code), its
// TorchScript module and batcher, and its figures.
// Lifecycle: made by model_table (load_serving_model) and shared by every request that uses it:
// a request holds it until answered, so a version replaced by a promotion finishes its
// in-flight requests and is destroyed with the last one. Immutable but for the atomic figures.
#pragma once
#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "batcher.h"
#include "definitions.h"
#include "example.h"
#include "metrics.h"

namespace tessera {

class torchscript_model;

struct serving_model {
  std::string name;
  uint32_t version = 0;
  std::shared_ptr<const definitions> defs;  // keeps the label and views alive
  const label_def* label = nullptr;
  const kind_plan* label_plan = nullptr;  // the label's entity kind: placement
  std::unique_ptr<example_deriver> derive;
  struct input {
    std::string name;    // the dataset column
    int on_demand = -1;  // index into the label's on_demand, or
    int view = -1;       // index into derive->views() and the feature's index in it
    int feature = -1;
    int upstream = -1;  // or index into `upstream`: that model's score on the same example
  };
  std::vector<input> inputs;
  // Chained: the models whose scores are inputs ("model:NAME"), each scored first (its production
  // version) on the same example at the same prediction time.
  std::vector<std::string> upstream;
  std::shared_ptr<const std::vector<std::string>> input_names;  // for the prediction log
  std::vector<std::string> view_names;                          // qualified, per view
  double log_sample = 1;                                        // the model definition's, else 1
  double shadow_sample = 1;        // the share of production's examples its shadows score
  int64_t max_feature_age_us = 0;  // the model's bound on feature age (0: none)
  model_def::fallback_def fallback;
  std::shared_ptr<const rule_set> rules;  // the model definition's (rules.h); null: none
  int64_t loaded_at = 0;
  std::unique_ptr<torchscript_model> torch;
  std::unique_ptr<batcher> batch;  // declared after torch: destroyed first

  // Figures since loaded on this node.
  mutable std::atomic<uint64_t> requests{0}, errors{0};
  mutable std::atomic<uint64_t> shadow_skipped{0};  // as a shadow: examples not scored
  mutable std::atomic<uint64_t> fallbacks{0};       // examples its fallback answered
  mutable std::atomic<uint64_t> rule_failures{0};   // answers whose rule failed (on_error)
  mutable std::atomic<uint64_t> scores{0};  // finite scores answered (or, as a shadow, logged)
  mutable std::atomic<int64_t> score_sum_nano{0};  // their sum in units of 1e-9
  mutable latency_histogram latency;
  mutable std::array<std::atomic<int64_t>, 16> second{};  // per-second counts, see record()
  mutable std::array<std::atomic<uint64_t>, 16> per_second{};
  void record(double latency_us, bool ok) const;
  double requests_per_second() const;  // over the last 10 s
  void record_score(double score) const;
  double mean_score() const;  // of the scores recorded (0: none)

  ~serving_model();
};

// Loads a version from its registry record and artifact: resolves the label and the views the
// record names in `defs`, maps its inputs, loads the TorchScript and warms it (a forward pass of
// one row and of a full batch, whose scores must be finite probabilities). The error says what
// is wrong (a view the definitions no longer have, an input that is no column of the label, an
// artifact that does not load or fails its warm-up).
result<std::shared_ptr<serving_model>> load_serving_model(std::shared_ptr<const definitions> defs,
                                                          const nlohmann::json& record,
                                                          const std::string& artifact,
                                                          const batcher::options& batching);

}  // namespace tessera
