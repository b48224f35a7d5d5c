// A shard's JetStream consumer: opening it at the committed sequence + 1, pulling from it,
// taking its deliveries in consumer-sequence order into shard_state::pending, and re-creating
// it whenever deliveries may have been lost. It never acknowledges a message: progress is the
// committed sequence in RocksDB alone (cluster/README.md, "NATS failures"), so every re-created
// consumer starts from there and what was already applied is skipped by sequence (shard_apply.h).
// Runs on the shard actor (shard_actor.h), one message at a time; the blocking JetStream calls
// (creating the consumer, asking for its position) run on the bus's threads and answer with a
// message to the actor.
// Start: shard_open_consumer() when the actor starts, then shard_on_tick() every 500 ms for
// the life of the actor. Stop: with the actor; its inbox goes with the state, and the consumer
// itself stays on the server until the cluster agent deletes it on release.
// Hazards: a (re)open waits for a batch being applied to be committed, so the reloaded state is
// the committed one; deliveries of a replaced consumer are recognised by their inbox generation
// and dropped, so an older sequence never arrives after a newer one was committed.
#pragma once
#include <cstdint>
#include <string>

#include "shard_actor.h"

namespace tessera {

// Reloads the committed state (meta, known entities, the records' layout) and has the consumer
// (re)created at applied + 1; the outcome comes back as (init_atom, error, next consumer seq).
// Drops the old inbox, outstanding pulls and pending deliveries. Retried in 50 ms while a batch
// is being applied.
void shard_open_consumer(shard_self self);
// The consumer was created (`error` empty) or not (retried in 200 ms): subscribes a fresh inbox
// if needed, marks the shard ready and pulls.
void shard_consumer_opened(shard_self self, const std::string& error, uint64_t next_cseq);
// Issues a pull when the outstanding credit is low and the pending deliveries are few.
void shard_pull(shard_self self);
// A delivery or the end of a pull. Data in sequence joins `pending` (and schedules an apply); a
// gap in the consumer sequence or a lost consumer (503/404) re-creates the consumer.
void shard_on_delivery(shard_self self, delivery& d);
// Every 500 ms: pulls, and after 10 s without deliveries asks the server for the
// consumer's position (answered as watchdog_atom).
void shard_on_tick(shard_self self);
// The consumer's position: re-creates it when messages wait but none arrive, when it does not
// answer, or when the stream holds a newer message for the shard than the last applied while
// the consumer has nothing pending.
void shard_on_watchdog(shard_self self, int64_t pending, int64_t last, const std::string& error);

}  // namespace tessera
