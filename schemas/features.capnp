# The features family's RPC capability (Gateway.features): events in, feature vectors out.
# Implemented by actors/features/features_rpc.cc. The root Gateway's ingest and getFeatures
# (@0, @1) are the same methods, kept for older clients.
@0xb6d4e2f1a3c59e07;

$import "/capnp/c++.capnp".namespace("tessera::wire");

using T = import "tessera.capnp";

interface Features {
  # Validates, routes and publishes the events; returns once JetStream has durably stored every
  # accepted event. Events that fail validation are listed in `rejected`; the others are kept.
  # `batchId` makes the call idempotent: the same id (within the stream's duplicate window) is
  # stored once, so a retried or re-run ingest counts nothing twice.
  # `late`: accepted events older than the online windows at the stream's clock (as the gateway
  # judged it): kept in the offline log for training sets only. Events past the stream's
  # max_future (wall clock) or max_jump (watermark) are rejected with that reason.
  # Errors (see README.md "Errors"): invalid (unknown stream, oversized call, bad batchId),
  # overloaded (too many events awaiting JetStream), retryable (JetStream did not store the
  # batch: repeat it with the same batchId).
  ingest @0 (stream :Text, events :List(T.Event), batchId :Text)
      -> (accepted :UInt32, rejected :List(T.Rejection), duplicates :UInt32, late :UInt32);

  # Feature vectors of `view` for each entity, in request order, all at one read time: asOf, or
  # with asOf = 0 the stream's clock (now for a live stream, the stream's watermark for a replay
  # one), or with asOf < 0 that many µs before the clock. asOf must lie within the view's
  # retained window before the clock (its as_of_horizon).
  # Errors: not found (unknown view), invalid (no entities, bad key, implausible asOf),
  # retryable (a shard moving between nodes for longer than the node waits).
  getFeatures @1 (view :Text, entities :List(Text), asOf :Int64) -> (vectors :List(T.FeatureVector));

  # What this node's ingest saw of the stream's expectations (`expect = { ... }` in its
  # definition, runtime/expectations.h), as JSON: per expectation the events checked and failed,
  # the slices (values of expect_slice) with most failures and their last failing events, and
  # the null-share windows that failed. Counted since the node started, by the node that took
  # the ingest calls. Errors: not found (unknown stream).
  validationReport @2 (stream :Text) -> (json :Text);
}
