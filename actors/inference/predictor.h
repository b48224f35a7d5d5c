// One predict call, from examples to scores (DESIGN.md, "Actors", Inference):
//   1. the version: production or pinned, one for the whole call (model_table);
//   2. per example, with the model's own label definition (example_deriver, the dataset build's
//      code): its fields typed, its prediction time (the label's prediction_time, else the
//      stream's clock), the label entity's key, each view's key, its on-demand features;
//   3. placement: examples whose label entity this node's shards own are scored here; the
//      others go to their owners, one request per node (tsr.node.<id>.predict, with the version
//      pinned and the caller's deadline), which score them the same way;
//   4. here: the views read as of the feature time (feature_source: in-process when local, else
//      one round trip per owner node), the vector assembled in the model's input order, the
//      stale-feature policy applied, the rows scored in a micro-batch (batcher.h);
//   5. each prediction logged (prediction_log.h, sampled per model) off the request path.
// Every example fails alone (its error and code in its answer). The call as a whole fails only
// when the model cannot serve (unknown, no production version), or when every example failed
// with the same retryable kind (overloaded, retryable, unavailable), so that clients retry it.
// Thread safety: predict() from any thread; `done` runs once, on a libnats, CAF, batcher or
// loader thread. Owned by the inference service; what deps point to outlives it.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "messages.h"

namespace tessera {

class bus;
class cluster_view;
class definitions;
class model_table;
class prediction_log;
class stream_clocks;
class worker_pool;

class predictor {
 public:
  struct deps {
    std::shared_ptr<const definitions> defs;
    const cluster_view* cluster = nullptr;  // null: this node owns every shard
    const stream_clocks* clocks = nullptr;
    const feature_source* features = nullptr;
    prediction_log* log = nullptr;  // null: nothing logged
    bus* nats = nullptr;
    model_table* models = nullptr;
    worker_pool* loader = nullptr;  // loads pinned versions off the caller's thread
    std::string node_id;
    uint32_t shard_count = 8;
    uint32_t default_deadline_ms = 1000;
  };
  explicit predictor(deps d) : d_(std::move(d)) {}

  using done_fn = std::function<void(result<std::vector<prediction_out>>)>;
  // `forward`: an entry call (examples owned elsewhere go to their owners). A forwarded part
  // has forward false, the version pinned and the entry node's deadline (µs since the epoch).
  void predict(const std::string& model, predict_options o, std::vector<example_in> examples,
               bool forward, int64_t deadline_us, done_fn done) const;

  // Answers the parts other nodes forward to this one (tsr.node.<id>.predict). The subscription
  // lives as long as the bus; after drain() it answers "stopping" (retryable).
  status serve() const;
  // Refuses new calls (errc::unavailable) and waits, up to `max`, for calls in flight to answer:
  // what deps point to may go once it returns true.
  bool drain(std::chrono::milliseconds max) const;

 private:
  struct gate {
    std::atomic<bool> stopping{false};
    std::atomic<int> inflight{0};
  };
  std::shared_ptr<gate> gate_ = std::make_shared<gate>();
  struct call;
  void run(std::shared_ptr<call> c) const;
  // Once every part answered: the model's fallback answers for what failed on the model's side
  // (its error, the deadline, features missing, stale or unreachable; never bad input), then the
  // caller's done.
  void finish(call* c) const;
  // Scores rows of this node's shards with the arm's version: first its upstream models (a
  // chained model takes their scores as inputs; an upstream failure fails the row, its fallback
  // may answer), then its features are read and the rows scored in a micro-batch.
  void score_local(std::shared_ptr<call> c, std::vector<size_t> rows, uint8_t arm) const;
  void score_upstream(std::shared_ptr<call> c, std::vector<size_t> rows, uint8_t arm,
                      size_t u) const;
  void read_and_score(std::shared_ptr<call> c, std::vector<size_t> rows, uint8_t arm) const;
  void forward_part(std::shared_ptr<call> c, const std::string& owner, std::vector<size_t> rows,
                    uint8_t arm) const;
  // The production rows just scored, scored again by every shadow version off the answer's
  // path (their scores only logged, path "shadow"); a shadow that is slow or fails is skipped
  // and counted, never waited for.
  void shadow(const std::shared_ptr<call>& c, const std::vector<size_t>& rows,
              const std::vector<float>& x) const;
  deps d_;
};

std::string node_predict_subject(const std::string& node_id);

}  // namespace tessera
