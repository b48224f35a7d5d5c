// The Cap'n Proto RPC gateway over TCP: the root interface (schemas/gateway.capnp), which hands
// out one capability per family (actors/features/features_rpc.h, actors/training/training_rpc.h)
// and delegates its older methods to them.
// Lifecycle: start() spawns the kj event-loop thread and returns once it listens; the
// destructor stops the loop and joins the thread. Every call runs on that thread; work done
// elsewhere (JetStream acks, shard actors, worker pools) answers through cross-thread
// fulfillers. Errors reach the caller with their code (runtime/rpc_edge.h).
#pragma once
#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "actors/features/features_rpc.h"
#include "actors/inference/inference_rpc.h"
#include "actors/training/training_rpc.h"
#include "tessera/result.h"

namespace tessera {

struct features_context;
class quality_service;

struct gateway_options {
  std::string listen = "127.0.0.1:7400";
  std::string nats_url;  // for status
  features_rpc_options features;
  training_rpc::deps training;
  const std::atomic<inference_service*>* inference = nullptr;
  const std::atomic<quality_service*>* quality = nullptr;
};

class gateway {
 public:
  static result<std::unique_ptr<gateway>> start(const gateway_options& o,
                                                std::shared_ptr<const features_context> ctx,
                                                caf::actor supervisor);
  ~gateway();
  int port() const { return port_; }

 private:
  gateway() = default;
  void run(const gateway_options& o, std::shared_ptr<const features_context> ctx,
           caf::actor supervisor);

  std::thread thread_;
  std::atomic<int> port_{0};
  std::string start_error_;
  std::atomic<bool> started_{false};
  struct stop_signal;
  std::shared_ptr<stop_signal> stop_;
};

}  // namespace tessera
