// A shard's read path: one view's vectors for a list of keys at one time, answered through
// `shard_read::done` exactly once from the shard's entities (entities.h; an entity never
// applied gets the empty vector without being activated).
// Runs on the shard actor (shard_actor.h), between batches.
// The time read: `as_of` when given, else the stream's clock now (stream_clocks::read_time),
// else the shard's watermark.
// Refusals: a time at or before what the shard's entities pruned for (shard_state::pruned_to
// minus the view's as-of horizon) may lack records, so it is refused: as errc::retryable when
// `at_clock` (the caller's reading of the clock lags this shard, and a fresh reading will do),
// else as errc::invalid (a time before the retained window was asked for).
// Settled reads (`shard_read::settled`, asked by stream-following predictions): on a
// replay-clock stream the shard answers only once it has applied its events up to the read
// time — its own watermark is past it, or has reached it with nothing received left to apply
// and nothing more pending on its consumer — or once features_options::settle_wait has run out
// (counted in node_metrics::settle_timeouts). Another shard of the stream being further on says
// nothing about this one: replayed events reach the shards' consumers in time order, but each
// shard applies at its own pace. A live-clock stream's reads are answered at once.
// Start/stop: none of its own; a read that reaches a stopped actor (or waits in one that stops)
// is never answered here: its `done` is destroyed unanswered (feature_reader turns that into a
// retryable error).
#pragma once
#include "shard_actor.h"

namespace tessera {

void shard_serve_read(shard_self self, shard_read& req);
// Answers the deferred settled reads whose shard has caught up or whose wait ran out; called
// after each commit and on each tick.
void shard_serve_deferred(shard_self self);

}  // namespace tessera
