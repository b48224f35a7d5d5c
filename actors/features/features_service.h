// The features family's facade: what the node starts and stops. It owns the family's actor
// system (CAF), the feature supervisor with its shard and entity actors, the shard host the
// cluster agent hands shards to, and the service answering reads forwarded by other nodes.
// Lifecycle (node/node.cc): start() spawns the actors; the agent then gives shards through
// shards(); stop() stops the supervisor and waits until every actor is gone (shards commit
// what they applied); the destructor, after the agent is gone, frees the shard host and the
// actor system. The RPC capability (features_rpc.h) is made by the gateway on its own thread
// and reaches the actors through supervisor().
// Thread safety: start/stop/destructor from the node's thread; shards() is called from the
// agent's control thread; supervisor() is immutable after start.
#pragma once
#include <caf/all.hpp>

#include <memory>
#include <string>

#include "messages.h"
#include "tessera/result.h"

namespace tessera {

class feature_reader;
class feature_shards;
class shard_host;

class features_service {
 public:
  struct options {
    int threads = 0;  // actor scheduler threads; 0 = hardware concurrency (at least 2)
  };
  // `ctx` is the family's context; it must outlive the service's actors (the node keeps it
  // until after stop()).
  static result<std::unique_ptr<features_service>> start(
      std::shared_ptr<const features_context> ctx, const options& o);
  ~features_service();

  caf::actor supervisor() const { return supervisor_; }
  shard_host* shards() const;
  // Feature reads with cluster routing (reader.h), for the node's other families.
  const feature_reader& reader() const { return *reader_; }
  // Starts answering reads other nodes forward to this one (tsr.node.<id>.read and .points).
  status serve_forwarded_reads();
  // Stops the supervisor and waits for every actor. Idempotent.
  void stop();

  // Tests: makes the entity's actor crash on its next event.
  bool TEST_crash_entity(const std::string& stream, const std::string& kind,
                         const std::string& key);

 private:
  features_service() = default;
  std::shared_ptr<const features_context> ctx_;
  std::unique_ptr<caf::actor_system_config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::actor supervisor_;
  std::unique_ptr<feature_shards> shard_host_;
  std::unique_ptr<feature_reader> reader_;
  bool stopped_ = false;
};

}  // namespace tessera
