// The Cap'n Proto RPC gateway (schemas/tessera.capnp, interface Gateway) over TCP.
// Lifecycle: start() spawns the kj event-loop thread and returns once it listens; the
// destructor stops the loop and joins the thread. Calls are validated on the kj thread;
// ingest publishes through the bus and resolves when JetStream acknowledged every message;
// reads and status go to the feature supervisor actor and come back through cross-thread
// fulfillers.
#pragma once
#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "tessera/result.h"

namespace tessera {

struct features_context;

struct gateway_options {
  std::string listen = "127.0.0.1:7400";
  size_t max_events_per_call = 100'000;
  size_t max_entities_per_read = 10'000;
  size_t max_events_in_flight = 1'000'000;  // across calls, awaiting JetStream acks
  std::string nats_url;                     // for status
  // A read that meets a shard moving between nodes is retried for up to this long before the
  // caller gets the retryable error (OVERLOADED, naming the shard).
  std::chrono::milliseconds move_wait{2000};
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
