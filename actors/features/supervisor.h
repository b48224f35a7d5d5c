// Feature supervisor: one per node. Spawns a shard actor for every (stream, entity kind) plan
// and every shard the shard map gives this node, restarts crashed shards one-for-one with
// exponential back-off, and reports a shard that exceeds its restart intensity as failed
// (retrying it after a cool-down) instead of dropping it. Keeps the shard_directory current
// (the gateway sends reads straight to shards) and answers status requests.
// Lifecycle: spawned by the node after storage and NATS are up; stop_atom stops every shard.
#pragma once
#include <map>

#include "messages.h"

namespace tessera {

struct supervisor_state {
  struct entry {
    shard_id id;
    caf::actor actor;
    std::deque<std::chrono::steady_clock::time_point> restarts;
    uint32_t total_restarts = 0;
    std::string failed;
  };
  context_ptr ctx;
  std::map<std::string, entry> shards;  // by shard_id::name()
  std::unordered_map<caf::actor_addr, std::string> by_addr;
  bool stopping = false;
  static inline const char* name = "tsr.features";
};

caf::behavior feature_supervisor(caf::stateful_actor<supervisor_state>* self, context_ptr ctx);

}  // namespace tessera
