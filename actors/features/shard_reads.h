// A shard's read path: one view's vectors for a list of keys at one time, answered through
// `shard_read::done` exactly once, from the entity actors (an entity never applied gets the
// empty vector at once, without an actor).
// Runs on the shard actor (shard_actor.h); the entities answer with messages, so a read may
// complete while a batch is being applied, and the reply may come after later messages.
// The time read: `as_of` when given, else the stream's clock now (stream_clocks::read_time),
// else the shard's watermark (including the batch being applied).
// Refusals: a time at or before what the shard's entities pruned for (shard_state::pruned_to
// minus the view's as-of horizon) may lack records, so it is refused: as errc::retryable when
// `at_clock` (the caller's reading of the clock lags this shard, and a fresh reading will do),
// else as errc::invalid (a time before the retained window was asked for). An entity that fails
// or times out fails the whole read as errc::retryable.
// Start/stop: none of its own; a read outstanding when the actor stops is never answered here:
// its `done` is destroyed unanswered (feature_reader turns that into a retryable error).
#pragma once
#include "shard_actor.h"

namespace tessera {

void shard_serve_read(shard_self self, shard_read& req);

}  // namespace tessera
