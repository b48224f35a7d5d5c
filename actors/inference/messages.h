// The inference family's contract in one place: what a prediction request and its answer are
// inside a node, and the two interfaces through which the family reaches features it does not
// own (the node wires the features family's reader and the training family's offline reads
// into them; actors/inference includes neither family).
//
// Files: serving_model.h a loaded model version (inputs, derivation, TorchScript, batcher,
// figures); batcher.h micro-batched forward passes; model_table.h the versions a node serves,
// following the registry; predictor.h one predict call (placement, reads, scoring);
// prediction_log.h the log of predictions; inference_service.h the facade; inference_rpc.h the
// capability (schemas/inference.capnp); inference_wire.h wire conversions.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "aggregate.h"
#include "tessera/result.h"
#include "value.h"

namespace tessera {

struct view_def;

// A prediction request's example: the label stream's fields by name (text is parsed to the
// declared type), an optional prediction time and a request id.
struct example_in {
  std::vector<std::pair<std::string, value>> fields;
  int64_t as_of = 0;  // µs; 0: from the label's prediction_time, else the stream's clock
  std::string request_id;
};

struct predict_options {
  uint32_t version = 0;         // 0: production
  uint32_t deadline_ms = 0;     // 0: the service's default
  int64_t max_feature_age = 0;  // µs; > 0: older feature values fail the example
  bool return_vector = false;
  bool no_batch = false;
  // Features read only once their shards have applied their stream up to the prediction time
  // (bounded): a prediction that follows a replayed stream sees what a point-in-time dataset
  // sees, not a shard still behind (actors/features/shard_reads.h).
  bool settled = false;
};

struct feature_out {
  std::string name;
  double value = 0;  // NaN: missing
  int64_t event_time = 0;
  int64_t age = -1;
  vector_status status = vector_status::missing;
};

struct prediction_out {
  double score = 0;
  uint32_t version = 0;
  std::string stage, path = "model", node, request_id;
  int64_t prediction_time = 0;
  uint32_t latency_us = 0;
  std::vector<feature_out> features;  // with return_vector
  std::string decision, rule;         // the model's rules (rules.h): empty without
  std::string error;                  // non-empty: this example failed
  errc code = errc::internal;
  // Failed in a way the model's fallback may answer for (not bad input): why, in a few words.
  std::string fallback_why;
  void fail(std::string why, errc c, std::string fallback = {}) {
    error = std::move(why);
    code = c;
    fallback_why = std::move(fallback);
  }
};

// Online feature vectors, each lookup at its own read time. Implemented by the node over the
// features family's reader: shards of this node are read in-process, the others from their
// owners in one round trip per node. `done` runs once, on any thread; each answer fails alone.
class feature_source {
 public:
  struct lookup {
    const view_def* view;
    std::string key;
    int64_t as_of;
    bool settled = false;  // read once the owning shard has applied up to as_of (bounded)
  };
  using done_fn = std::function<void(std::vector<result<feature_vector>>)>;
  virtual ~feature_source() = default;
  virtual void read(std::vector<lookup> lookups, int64_t timeout_ms, done_fn done) const = 0;
};

// Point-in-time vectors from the offline log (what a training set would hold), for skew.
// Blocking; implemented by the node over the training family's dataset service.
class offline_source {
 public:
  virtual ~offline_source() = default;
  virtual result<std::vector<feature_vector>> read(
      const view_def& view, const std::vector<std::pair<std::string, int64_t>>& lookups) const = 0;
};

}  // namespace tessera
