// Shard actor: owns one shard of one (stream, entity kind). It pulls event batches from its
// durable JetStream consumer, applies them in stream order through its per-entity actors, and
// persists entity records, online vectors and the applied sequence in one RocksDB WriteBatch.
// Lifecycle: spawned and monitored by the feature supervisor; on (re)start it reloads its
// meta and re-creates its consumer at applied sequence + 1, so nothing is lost or applied
// twice. It supervises its entity actors one-for-one (see README in this folder).
// Its work is split by purpose, all of it on this actor (one message at a time, so the state
// below needs no lock): shard_consumer.h (the consumer: opening, pulls, deliveries, watchdog),
// shard_apply.h (a batch: judged, applied to its entities, committed), shard_reads.h
// (reads), entities.h (the live entities). This file composes them and keeps the entities'
// activation and passivation.
#pragma once
#include <chrono>
#include <deque>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "entities.h"
#include "messages.h"

namespace tessera {

struct apply_job;  // shard_apply.h

struct shard_state {
  shard_state();
  ~shard_state();  // beside apply_job (shard_apply.cc)

  // Constant after the actor starts.
  context_ptr ctx;
  shard_id id;
  const kind_plan* plan = nullptr;
  const stream_def* stream = nullptr;
  // Events too old for the online windows of every kind of the stream are counted as the
  // stream's late events, by the shards of its first kind only (so each is counted once).
  bool counts_stream_late = false;
  int64_t stream_retention = 0;  // the longest online retention over the stream's kinds
  // Stream field index -> slot among the plan's stored fields, -1 if not stored (load_window).
  std::vector<int> log_slots;

  // What is committed: loaded when the consumer is (re)opened, replaced by each commit.
  shard_meta meta;

  // Its entities: which have persisted state, which are active (entities.h), and the recent
  // failures of each.
  std::unique_ptr<entity_table> entities;
  std::unordered_map<std::string, std::deque<std::chrono::steady_clock::time_point>> failures;
  std::chrono::steady_clock::time_point last_passivation = std::chrono::steady_clock::now();

  // The consumer (shard_consumer.cc).
  bool ready = false;  // the consumer is open and its inbox subscribed
  struct pull_info {
    int remaining;  // messages not yet delivered of the `asked`
    int asked;
    std::chrono::steady_clock::time_point issued;
  };
  std::unordered_map<uint64_t, pull_info> pulls;
  // A pull ended on its byte limit with nothing delivered: the next message is larger than a
  // pull may ask for, so the next pull fetches that one alone, without a limit.
  bool oversized_next = false;
  // For the watchdog's warning: pulls sent and ends received since the consumer opened, and
  // the last end's status and description.
  uint64_t pulls_sent = 0, pull_ends = 0;
  std::string last_end;
  std::unique_ptr<bus::inbox> inbox;
  // Each re-created consumer gets a fresh inbox; deliveries of an older one (late answers to
  // old pulls, possibly out of order with the new consumer's) are dropped by generation, so
  // an earlier sequence can never arrive after a later one was committed.
  uint64_t inbox_gen = 0;
  // The consumer sequence the next delivery must carry. Deliveries travel as core NATS messages
  // (at most once): those in flight through a NATS server that dies are lost, and with no acks
  // the consumer never sends them again. A gap in the consumer sequence shows it; the shard then
  // re-creates its consumer from the committed sequence (0: not known, no check).
  uint64_t next_cseq = 0;
  uint64_t last_pending = 0;
  // Watchdog: when the shard has received nothing for a while, it asks the server whether its
  // consumer has messages waiting; if so (or the consumer is gone) the consumer is re-created.
  // Covers pulls that vanish silently, e.g. to a replicated consumer without a leader.
  std::chrono::steady_clock::time_point last_delivery = std::chrono::steady_clock::now();
  bool watchdog_asking = false;

  // Deliveries received and not yet applied: the consumer appends, the apply pipeline takes.
  std::vector<delivery> pending;

  // The apply pipeline (shard_apply.cc).
  bool flush_scheduled = false;
  bool applying = false;
  std::unique_ptr<apply_job> job;  // the batch being applied (set while `applying`)
  // The latest time its entities pruned at (apply_job::prune_at: now for a live stream, the
  // shard's watermark for a replay one): a read at or before pruned_to - as_of_horizon may lack
  // records, so it is refused (shard_reads.h).
  int64_t pruned_to = 0;
  // Settled reads waiting for the shard to apply up to their time (shard_reads.h), answered
  // after a commit or a tick once it has, or once their wait runs out.
  std::vector<shard_read> deferred_reads;

  static inline const char* name = "tsr.shard";
};

using shard_self = caf::stateful_actor<shard_state>*;

caf::behavior shard_actor(shard_self self, context_ptr ctx, shard_id id);

// The entity of `key`, activated from its persisted state when not active.
entity_table::entity& activate_entity(shard_self self, const std::string& key);

// A warning rate-limited per (stream, what) over the node.
void shard_warn_limited(shard_self self, const std::string& what, const std::string& detail);

}  // namespace tessera
