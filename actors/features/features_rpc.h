// The features family's RPC capability (schemas/features.capnp): ingest validates, routes and
// publishes events; getFeatures reads vectors through the cluster (feature_reader), waiting out
// a shard's move for up to `move_wait`. It also fills the family's part of the node status
// (shards, clocks, apply stages, counters).
// Owner and thread: made by the gateway on its kj event-loop thread (node/gateway.h) and held
// by Cap'n Proto's capability table; every method runs on that thread. Work leaves it for the
// bus (JetStream acks) and the shard actors, and comes back through cross-thread fulfillers, so
// no method blocks the loop. It lives until the gateway's loop ends; answers arriving later
// fulfil a promise nobody waits for.
#pragma once
#include <kj/async.h>
#include <kj/timer.h>
#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "aggregate.h"
#include "reader.h"
#include "schemas/features.capnp.h"
#include "tessera/result.h"

namespace tessera {

struct features_context;
struct view_def;

struct features_rpc_options {
  size_t max_events_per_call = 100'000;
  size_t max_entities_per_read = 10'000;
  size_t max_events_in_flight = 1'000'000;  // across calls, awaiting JetStream acks
  // A read that meets a shard moving between nodes is retried for up to this long before the
  // caller gets the retryable error naming the shard.
  std::chrono::milliseconds move_wait{2000};
};

class features_rpc final : public wire::Features::Server {
 public:
  features_rpc(std::shared_ptr<const features_context> ctx, caf::actor supervisor,
               features_rpc_options opts);
  // The event loop's timer (for waiting out a shard's move); set before the first call.
  void set_timer(kj::Timer& t) { timer_ = &t; }
  ~features_rpc();

  kj::Promise<void> ingest(IngestContext call) override { return ingest_call(call); }
  kj::Promise<void> getFeatures(GetFeaturesContext call) override {
    return get_features_call(call);
  }
  kj::Promise<void> validationReport(ValidationReportContext call) override;
  // One implementation for this capability and the root Gateway's ingest and getFeatures
  // (Call: either interface's call context; instantiated in the .cc for both).
  template <typename Call>
  kj::Promise<void> ingest_call(Call call);
  template <typename Call>
  kj::Promise<void> get_features_call(Call call);

  // Fills the family's fields of `st` (shards from the supervisor, clocks, apply stages,
  // counters). `st` must outlive the promise (it is the status call's results).
  kj::Promise<void> fill_status(wire::NodeStatus::Builder st);

 private:
  // Reads; while a shard is moving (a retryable error), waits and tries again until `deadline`,
  // so that a caller sees a move as a short delay rather than an error when it is quick.
  kj::Promise<result<std::vector<feature_vector>>> read_until(
      const view_def* v, std::vector<std::string> keys, int64_t as_of,
      std::chrono::steady_clock::time_point deadline);
  std::string known_streams() const;
  std::string known_views() const;

  std::shared_ptr<const features_context> ctx_;
  caf::actor sup_;
  features_rpc_options opts_;
  kj::Timer* timer_ = nullptr;
  std::atomic<size_t> in_flight_{0};
  feature_reader reader_;
};

}  // namespace tessera
