// A shard's read path: one view's vectors for a list of keys at one time, answered through
// `shard_read::done` exactly once, before it returns, from the shard's entities (entities.h;
// an entity never applied gets the empty vector without being activated).
// Runs on the shard actor (shard_actor.h), between batches.
// The time read: `as_of` when given, else the stream's clock now (stream_clocks::read_time),
// else the shard's watermark.
// Refusals: a time at or before what the shard's entities pruned for (shard_state::pruned_to
// minus the view's as-of horizon) may lack records, so it is refused: as errc::retryable when
// `at_clock` (the caller's reading of the clock lags this shard, and a fresh reading will do),
// else as errc::invalid (a time before the retained window was asked for).
// Start/stop: none of its own; a read that reaches a stopped actor is never answered here: its
// `done` is destroyed unanswered (feature_reader turns that into a retryable error).
#pragma once
#include "shard_actor.h"

namespace tessera {

void shard_serve_read(shard_self self, shard_read& req);

}  // namespace tessera
