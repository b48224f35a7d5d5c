// Training jobs and the model registry on a node.
//
// A job (`tessera train MODEL`) is a record in the KV bucket TSR_JOBS: queued → running (claimed
// by one node with a compare-and-swap) → done | failed. The claiming node builds the model's
// point-in-time dataset from every shard's owner (actors/training/dataset.h), trains it with
// libtorch (trainer.h), and registers the model with its lineage, metrics and reference
// distributions (cluster/registry.h). While it runs, the node writes progress into the record
// about once a second; that is also its proof of life. When a node sees a running job whose
// node is dead (cluster membership), it puts the job back in the queue (attempt + 1; after 3
// attempts the job fails, saying why), and some node starts it again: training is
// deterministic with its seed, so a resumed job gives the same model.
//
// Lifecycle: owned by the node; start() after the cluster agent joined; the destructor stops
// the runner thread and cancels a running job. Registry calls from the gateway run on its
// worker thread (run()).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/result.h"

namespace tessera {

class dataset_service;

struct features_context;
class model_registry;

struct job_info {
  std::string id, model, state, node, phase, error;
  uint32_t attempt = 0, epoch = 0, epochs = 0, version = 0;
  double fraction = 0, loss = 0, test_auc = 0;
  static job_info from_json(const nlohmann::json& j);
};

class training_service {
 public:
  struct options {
    std::string data_dir;  // datasets of running jobs go to <data_dir>/datasets
    int replicas = 1;
    int max_attempts = 3;
    dataset_service* datasets = nullptr;  // builds the jobs' datasets; outlives the service
  };
  static result<std::unique_ptr<training_service>> start(
      std::shared_ptr<const features_context> ctx, const options& o);
  ~training_service();

  model_registry& registry();
  // Queues a training job for a model of the definitions; returns its id.
  result<std::string> submit(const std::string& model);
  result<job_info> job(const std::string& id) const;
  // Jobs as last seen by the runner (for status): every job not older than a day.
  std::vector<job_info> jobs() const;
  // Runs `fn` on the service's worker thread (blocking registry calls, off the kj thread).
  void run(std::function<void()> fn);

 private:
  training_service() = default;
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace tessera
