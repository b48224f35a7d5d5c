// The inference family's facade: what the node starts and stops. It owns the model table (the
// versions this node serves, following the registry), the prediction log, the predictor and
// the service answering predict parts other nodes forward to this one, and a small worker pool
// for blocking calls (loading pinned versions, reading the prediction log, skew).
// Lifecycle (node/node.cc): started once the node has joined the cluster (the registry lives in
// JetStream), after the features family; stop() stops answering forwarded parts, joins the
// registry watcher, writes the queued log records and joins the workers; the destructor frees
// the models once no request holds them.
// Thread safety: every public method from any thread.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "batcher.h"
#include "follower.h"
#include "messages.h"
#include "model_table.h"
#include "prediction_log.h"
#include "tessera/result.h"

namespace tessera {

class bus;
class cluster_view;
class definitions;
class model_registry;
class predictor;
class stream_clocks;
class worker_pool;

class inference_service {
 public:
  struct deps {
    std::shared_ptr<const definitions> defs;
    bus* nats = nullptr;
    const cluster_view* cluster = nullptr;
    const stream_clocks* clocks = nullptr;
    const feature_source* features = nullptr;
    const offline_source* offline = nullptr;  // null: skew unavailable
    std::string node_id;
    uint32_t shard_count = 8;
    int replicas = 1;
  };
  struct options {
    batcher::options batching;
    uint32_t default_deadline_ms = 1000;
    bool log = true;
    prediction_log::options log_options;
    follower::options follow;
  };
  static result<std::unique_ptr<inference_service>> start(deps d, options o);
  ~inference_service();
  void stop();

  using predict_fn = std::function<void(result<std::vector<prediction_out>>)>;
  // An entry call: examples whose label entities other nodes own are forwarded there.
  void predict(const std::string& model, const predict_options& o, std::vector<example_in> examples,
               predict_fn done) const;
  // Runs `job` on the service's workers (blocking work off the kj thread); false when stopping.
  bool run(std::function<void()> job) const;
  // Blocking (call through run()).
  result<prediction_log::page> tail(const std::string& model, size_t limit,
                                    uint64_t after_seq) const;
  result<std::string> skew(const std::string& model, size_t sample) const;

  std::vector<model_table::status_entry> serving() const;
  uint64_t log_drops() const;
  std::vector<follower::status_entry> follows() const;
  model_table& models() const { return *models_; }
  prediction_log* log() const { return log_.get(); }

 private:
  inference_service() = default;
  deps d_;
  options o_;
  std::unique_ptr<model_registry> registry_;
  std::unique_ptr<model_table> models_;
  std::unique_ptr<prediction_log> log_;
  std::unique_ptr<worker_pool> workers_;
  std::unique_ptr<predictor> predictor_;
  std::unique_ptr<follower> follower_;  // models declared with `follow`
  bool stopped_ = false;
};

}  // namespace tessera
