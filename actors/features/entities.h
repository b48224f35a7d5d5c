// The entities of one shard: one slot per entity of its (stream, kind) that has persisted state
// or is active. An active entity holds the retained records its windows need: activated on the
// first event or read (loaded from RocksDB), passivated after `entity_idle` without use (its
// records freed; the slot stays, marking the entity as persisted). Virtual entities in Orleans'
// sense, held by the shard actor as plain records rather than one CAF actor each (issue 18:
// the actor cost ≈ 2.2 KB and a message exchange per entity per batch; bench/RESULTS.md).
// Owner: one shard actor (shard_state::entities); used only on that actor, so no lock. The
// shard persists every change with its sequence (shard_apply.h): nothing here writes storage,
// and dropping an entity's records (passivation, or after a failed apply) only frees memory.
// Vectors computed here are published to the node's vector_cache (valid over an interval, see
// feature_vector::valid_until) and withdrawn before the entity's records change.
#pragma once
#include <chrono>
#include <climits>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "messages.h"

namespace tessera {

class entity_table {
 public:
  using clock_type = std::chrono::steady_clock;
  struct entity {
    std::vector<record> records;  // sorted by (time, seq, idx); empty unless active
    clock_type::time_point last_used{};
    clock_type::time_point last_materialized{};
    int64_t log_pruned = INT64_MIN;  // offline-log cutoff last written for it by this shard
    bool persisted = false;          // has state in RocksDB
    bool active = false;             // `records` holds its state
    bool TEST_crash_next = false;
  };

  entity_table(const kind_plan* plan, vector_cache* cache, uint32_t shard_no)
      : plan_(plan), cache_(cache), shard_no_(shard_no) {}

  // Forgets every entity, then knows `persisted` as persisted and passive (the shard's consumer
  // was (re)opened: what is committed is the truth).
  void reset(const std::vector<std::string>& persisted);
  bool persisted(const std::string& key) const;
  bool active(const std::string& key) const;
  size_t active_count() const { return active_; }
  size_t passive_count() const;  // persisted, not active
  // The entity's slot (created, not active, when new).
  entity& slot(const std::string& key) { return map_[key]; }
  // Marks `key`'s slot active with `records` (its persisted state) unless active already.
  entity& activate(const std::string& key, std::vector<record> records);
  // Frees its records (after a failed apply: its persisted state is loaded again next time).
  void deactivate(const std::string& key);

  // Applies `recs` to the active entity: withdraws its published vectors, inserts the records,
  // prunes what no window or as-of read can reach after `prune_at`, and when
  // `materialize_every` has passed computes its vectors at `clock` for the online store.
  // Throws on a test-requested crash (the entity is then half-changed: deactivate it).
  entity_delta apply(const std::string& key, entity& e, const std::vector<record>& recs,
                     int64_t prune_at, int64_t clock, std::chrono::milliseconds materialize_every);
  // The active entity's vector of view index `view` at t (from the vector cache while valid).
  feature_vector vector(const std::string& key, entity& e, uint32_t view, int64_t t);
  // Passivates the entities unused for `idle`; returns how many.
  size_t passivate_idle(std::chrono::milliseconds idle);

 private:
  void withdraw(const std::string& key);
  void free_records(entity& e);
  const kind_plan* plan_;
  vector_cache* cache_;
  uint32_t shard_no_;
  std::unordered_map<std::string, entity> map_;
  size_t active_ = 0;
};

}  // namespace tessera
