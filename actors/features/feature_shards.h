// The feature family's side of shard handoff: starts and stops the shard actors of the shards
// the cluster agent gives this node or takes away (cluster/shard_host.h).
// Owned by the node; borrows the actor system, the supervisor and the vector cache, which
// outlive it. Called from the agent's control thread (blocking, bounded waits).
#pragma once
#include <caf/all.hpp>

#include "cluster/shard_host.h"

namespace tessera {

class vector_cache;

class feature_shards final : public shard_host {
 public:
  feature_shards(caf::actor_system& sys, caf::actor supervisor, vector_cache* cache)
      : sys_(sys), supervisor_(std::move(supervisor)), cache_(cache) {}
  // One message for all shards: under a backlog the actor threads are busy, and a message per
  // shard would start the last shards seconds late.
  std::vector<uint32_t> start_shards(const std::vector<uint32_t>& shards) override;
  // Stops every slice of the shards at once (each commits what it applied), waits up to 30 s
  // for each, then drops their cached vectors.
  void stop_shards(const std::vector<uint32_t>& shards) override;

 private:
  caf::actor_system& sys_;
  caf::actor supervisor_;
  vector_cache* cache_;
};

}  // namespace tessera
