// Feature supervisor: one per node. Runs a shard actor for every (stream, entity kind) plan
// of every shard number the cluster agent gives it (own / release), restarts crashed shards
// one-for-one with exponential back-off, and reports a shard that exceeds its restart intensity as
// failed (retrying it after a cool-down) instead of dropping it. Keeps the shard_directory current
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
    bool releasing = false;
  };
  struct release {
    caf::response_promise promise;
    size_t left = 0;
  };
  std::map<uint32_t, release> releases;  // by shard number
  context_ptr ctx;
  std::map<std::string, entry> shards;  // by shard_id::name()
  std::unordered_map<caf::actor_addr, std::string> by_addr;
  bool stopping = false;
  static inline const char* name = "tsr.features";
};

caf::behavior feature_supervisor(caf::stateful_actor<supervisor_state>* self, context_ptr ctx);

}  // namespace tessera
