// A shard's apply pipeline: takes the pending deliveries in stream order (at most 64 messages
// a batch), decodes them, judges every event (invalid, outlier, late, too old) by the stream's
// clock, applies the rest to its entities (entities.h) and commits what they changed with the
// new applied sequence in one RocksDB WriteBatch. What cannot be applied goes to the stream's
// dead-letter subject, published before the commit: after a crash it may repeat, never vanish.
// Runs on the shard actor (shard_actor.h), one batch at a time, from decoding to commit in one
// message (reads and deliveries wait for it: a batch is at most 64 messages).
// Start: a delivery schedules it (flush_atom to self); each commit schedules the next batch.
// Stop: with the actor: a batch not yet committed is lost with its entities' changes and
// applied again by the next incarnation from the committed sequence (exactly once: state and
// sequence are written together). A failed write stops the shard with an error (the supervisor
// restarts it).
// Entities: each is supervised one-for-one here: an entity whose apply fails is dropped,
// reloaded from its persisted state and given its records again; past `entity_max_restarts`
// within `restart_window` its records become dead letters instead.
// Hazards: reads after a batch may be answered from entities that pruned for it, so reads
// before the time they pruned at are refused (shard_state::pruned_to, shard_reads.h).
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shard_actor.h"

namespace tessera {

// One entity's share of an applied batch.
struct group {
  std::string key;
  std::vector<record> recs;
  log_buffer log;  // the same events with every stream field, for the offline log
  bool is_new = false;
  entity_delta delta;
  bool dead_lettered = false;
};

// The batch being applied: decoded, grouped by entity, applied, committed.
struct apply_job {
  std::vector<group> groups;
  std::unordered_map<std::string, size_t> index;
  uint64_t max_seq = 0;
  int64_t watermark = 0;  // the shard's: latest event time applied
  // What the entities of this batch prune at (now for a live stream, else the shard's own
  // watermark: reads on other nodes may lag this node's view of the stream) and the stream's
  // clock they materialise their vectors at (now, or the stream's watermark).
  int64_t prune_at = 0;
  int64_t clock = 0;
  uint64_t events = 0;
  uint64_t refused = 0;  // outliers (max_jump) dead-lettered
  uint64_t late = 0;  // events of the stream kept for training sets only (see counts_stream_late)
  std::string ack_subject;
  std::vector<std::string> dead_letters;                        // JSON records for tsr.dlq.<stream>
  std::vector<std::pair<std::string, log_entry>> offline_only;  // too old for online windows
  size_t messages = 0;
  // The first message's timestamps (ns since the epoch), for node_metrics::stages.
  int64_t stored_ns = 0, received_ns = 0, started_ns = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// Has flush_atom sent to the shard once (shard_apply_pending runs on it) unless already sent.
void shard_schedule_apply(shard_self self);
// Starts applying the next batch of pending deliveries, unless one is being applied or the
// consumer is not ready. Deliveries at or below the committed sequence are skipped.
void shard_apply_pending(shard_self self);

}  // namespace tessera
