// What the node wires between families: the interfaces the inference family declares
// (actors/inference/messages.h), implemented over the features family's reader and the training
// family's dataset service. Owned by the node; they borrow what they wrap, which outlives them.
#pragma once
#include <map>
#include <memory>
#include <mutex>

#include "actors/features/reader.h"
#include "actors/inference/inference_service.h"
#include "actors/inference/messages.h"
#include "actors/monitoring/quality_service.h"
#include "actors/training/dataset.h"

namespace tessera {

// Online reads for predictions: feature_reader::read_points (local shards in-process, one
// request per owner node for the rest).
class reader_feature_source final : public feature_source {
 public:
  explicit reader_feature_source(const feature_reader& r) : r_(r) {}
  void read(std::vector<lookup> lookups, int64_t timeout_ms, done_fn done) const override;

 private:
  const feature_reader& r_;
};

// Offline point-in-time reads for skew: dataset_service::point_in_time.
class dataset_offline_source final : public offline_source {
 public:
  explicit dataset_offline_source(const dataset_service& d) : d_(d) {}
  result<std::vector<feature_vector>> read(
      const view_def& view,
      const std::vector<std::pair<std::string, int64_t>>& lookups) const override {
    return d_.point_in_time(view, lookups);
  }

 private:
  const dataset_service& d_;
};

// What `inf` serves, for the monitoring family's objectives (quality_service::deps::serving):
// per model and version answering (production, canary, A/B arm; not shadows) its counters.
std::vector<quality_service::deps::served_counters> served_counters(const inference_service& inf);

}  // namespace tessera
