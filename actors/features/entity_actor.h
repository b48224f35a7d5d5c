// Per-entity virtual actor: holds the retained records of one entity of one (stream, kind),
// applies event batches the shard sends it, and computes feature vectors at any time.
// Lifecycle: spawned (linked) by its shard on the first event or read, with the records loaded
// from RocksDB; asks its shard to passivate it after `entity_idle` without messages. It never
// writes storage: the shard persists its deltas with the shard's sequence in one batch.
#pragma once
#include <optional>

#include "messages.h"

namespace tessera {

struct entity_state {
  std::string key;
  const kind_plan* plan = nullptr;
  std::deque<record> records;
  bool TEST_crash_next = false;
  // Vectors computed since the last apply, per view index: (t, vector). Reads at any time in a
  // vector's validity (feature_vector::valid_until; the common case: the stream's clock, which
  // moves between reads) are answered without recomputing.
  std::vector<std::optional<std::pair<int64_t, feature_vector>>> cache;
  std::chrono::steady_clock::time_point last_materialized{};
  static inline const char* name = "tsr.entity";
};

// `materialize_every`: how often at most the entity hands its vectors to the shard for the
// online store (reads always compute from the live state, so this bounds only the store's lag).
caf::behavior entity_actor(caf::stateful_actor<entity_state>* self, std::string key,
                           const kind_plan* plan, std::deque<record> records, caf::actor shard,
                           std::chrono::milliseconds idle,
                           std::chrono::milliseconds materialize_every, vector_cache* cache,
                           uint32_t shard_no);

}  // namespace tessera
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(const tessera::kind_plan*)
