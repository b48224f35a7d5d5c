// Per-entity virtual actor: holds the retained records of one entity of one (stream, kind),
// applies event batches the shard sends it, and computes feature vectors at any time.
// Lifecycle: spawned (linked) by its shard on the first event or read, with the records loaded
// from RocksDB; asks its shard to passivate it after `entity_idle` without messages. It never
// writes storage: the shard persists its deltas with the shard's sequence in one batch.
#pragma once
#include "messages.h"

namespace tessera {

struct entity_state {
  std::string key;
  const kind_plan* plan = nullptr;
  std::deque<record> records;
  bool TEST_crash_next = false;
  static inline const char* name = "tsr.entity";
};

caf::behavior entity_actor(caf::stateful_actor<entity_state>* self, std::string key, const kind_plan* plan,
                           std::deque<record> records, caf::actor shard, std::chrono::milliseconds idle);

}  // namespace tessera
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(const tessera::kind_plan*)
