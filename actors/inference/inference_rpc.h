// The inference family's RPC capability (schemas/inference.capnp): predict, several models on
// the same examples, the prediction log and skew.
// Owner and thread: made by the gateway on its kj event-loop thread (node/gateway.h); every
// method runs on that thread. Predictions are made off it (feature reads, batchers, forwarded
// parts) and answer through cross-thread fulfillers; blocking calls (the log, skew) run on the
// inference service's workers. Until the node has joined the cluster (no inference service yet)
// calls fail retryable.
#pragma once
#include <kj/async.h>

#include <atomic>

#include "schemas/inference.capnp.h"
#include "schemas/tessera.capnp.h"

namespace tessera {

class inference_service;

class inference_rpc final : public wire::Inference::Server {
 public:
  // Set by the node once it has joined (null before, and again while stopping).
  explicit inference_rpc(const std::atomic<inference_service*>* service) : service_(service) {}

  kj::Promise<void> predict(PredictContext call) override;
  kj::Promise<void> predictModels(PredictModelsContext call) override;
  kj::Promise<void> tailPredictions(TailPredictionsContext call) override;
  kj::Promise<void> skew(SkewContext call) override;

  // The family's fields of the node status: the versions served and their figures.
  void fill_status(wire::NodeStatus::Builder st) const;

 private:
  inference_service* service() const;
  const std::atomic<inference_service*>* service_;
};

}  // namespace tessera
