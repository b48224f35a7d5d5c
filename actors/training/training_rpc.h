// The training family's RPC capability (schemas/training.capnp): dataset parts, training jobs
// and the model registry. Registry answers are Cap'n Proto structs decoded from the registry's
// JSON records with capnp's JSON codec; the root Gateway's JSON methods (listModels,
// showModel) return the records as they are.
// Owner and thread: made by the gateway on its kj event-loop thread (node/gateway.h) and held
// by Cap'n Proto's capability table; every method runs on that thread. Blocking work (registry
// and job KV calls) runs on the training service's worker, dataset parts on the dataset
// service's workers; answers come back through cross-thread fulfillers. Until the node has
// joined the cluster (no training service yet) calls fail retryable.
#pragma once
#include <kj/async.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "schemas/gateway.capnp.h"
#include "schemas/training.capnp.h"
#include "tessera/result.h"

namespace tessera {

class dataset_service;
class definitions;
struct job_info;
class training_service;

class training_rpc final : public wire::Training::Server {
 public:
  // What the capability uses of the node; all of it outlives the gateway.
  struct deps {
    std::shared_ptr<const definitions> defs;
    uint32_t shard_count = 0;
    dataset_service* datasets = nullptr;
    // Set by the node once it has joined the cluster (null before, and again while stopping).
    const std::atomic<training_service*>* training = nullptr;
  };
  explicit training_rpc(deps d);
  ~training_rpc();

  kj::Promise<void> datasetShard(DatasetShardContext call) override { return dataset_shard(call); }
  kj::Promise<void> train(TrainContext call) override { return train_call(call); }
  kj::Promise<void> job(JobContext call) override { return job_call(call); }
  kj::Promise<void> listModels(ListModelsContext call) override;
  kj::Promise<void> showModel(ShowModelContext call) override;
  kj::Promise<void> promoteModel(PromoteModelContext call) override { return promote(call); }
  kj::Promise<void> rollbackModel(RollbackModelContext call) override { return rollback(call); }
  kj::Promise<void> importModel(ImportModelContext call) override { return import_call(call); }
  kj::Promise<void> exportModel(ExportModelContext call) override { return export_call(call); }
  kj::Promise<void> setArms(SetArmsContext call) override;
  kj::Promise<void> describeModel(DescribeModelContext call) override;

  // One implementation for this capability and the root Gateway's methods @3-@11 (Call: either
  // interface's call context; instantiated in the .cc for both).
  template <typename Call>
  kj::Promise<void> dataset_shard(Call call);
  template <typename Call>
  kj::Promise<void> train_call(Call call);
  template <typename Call>
  kj::Promise<void> job_call(Call call);
  template <typename Call>
  kj::Promise<void> promote(Call call);
  template <typename Call>
  kj::Promise<void> rollback(Call call);
  template <typename Call>
  kj::Promise<void> import_call(Call call);
  template <typename Call>
  kj::Promise<void> export_call(Call call);
  // The root Gateway's JSON registry methods (kept for older clients).
  kj::Promise<void> list_models_json(
      capnp::CallContext<wire::Gateway::ListModelsParams, wire::Gateway::ListModelsResults> call);
  kj::Promise<void> show_model_json(
      capnp::CallContext<wire::Gateway::ShowModelParams, wire::Gateway::ShowModelResults> call);

  // The family's fields of the node status (training jobs of the last day).
  void fill_status(wire::NodeStatus::Builder st) const;

 private:
  training_service* training() const;
  // Runs `fn` on the training service's worker (blocking NATS calls stay off the kj thread).
  template <typename T>
  kj::Promise<result<T>> off_thread(std::function<result<T>()> fn);
  std::string known_labels() const;

  deps d_;
};

// Writes a job as the wire has it.
void write_job(wire::JobStatus::Builder b, const job_info& j);

}  // namespace tessera
