# The root RPC interface a Tessera node serves on its RPC port (capnp two-party, TCP): what a
# client bootstraps. It hands out one capability per family (features, training); the methods
# @0-@11 are the families' methods as the first version had them, kept for older clients.
# Errors: a call that fails throws; its description starts with the error's code in brackets
# ("[not_found] unknown view 'x' ..."): see README.md "Errors". The interface's ID is pinned
# to the one it had in tessera.capnp, so older clients keep working.
@0xe85c0f4d2a6b7193;

$import "/capnp/c++.capnp".namespace("tessera::wire");

using T = import "tessera.capnp";

interface Gateway @0xf3163b7f5e20d9df {
  # Validates, routes and publishes the events; returns once JetStream has durably stored every
  # accepted event. Events that fail validation are listed in `rejected`; the others are kept.
  # `batchId` makes the call idempotent: the same id (within the stream's duplicate window) is
  # stored once, so a retried or re-run ingest counts nothing twice.
  # `late`: accepted events older than the online windows at the stream's clock (as the gateway
  # judged it): kept in the offline log for training sets only. Events past the stream's
  # max_future (wall clock) or max_jump (watermark) are rejected with that reason.
  ingest @0 (stream :Text, events :List(T.Event), batchId :Text) -> (accepted :UInt32, rejected :List(T.Rejection), duplicates :UInt32, late :UInt32);

  # Feature vectors of `view` for each entity, in request order, all at one read time: asOf, or
  # with asOf = 0 the stream's clock (now for a live stream, the stream's watermark for a replay
  # one), or with asOf < 0 that many µs before the clock. asOf must lie within the view's
  # retained window before the clock (its as_of_horizon).
  getFeatures @1 (view :Text, entities :List(Text), asOf :Int64) -> (vectors :List(T.FeatureVector));

  status @2 () -> (status :T.NodeStatus);

  # One shard's part of a point-in-time training set (see `tessera dataset build`): every example
  # of `label` in the offline log of that shard of the label's entity kind whose prediction time
  # is in [from, to), joined to the label's feature views as known at that time. The node must
  # serve the shard (ask the owner in status.shardOwners); a moving shard gives OVERLOADED.
  # `csv` holds the rows (no header) in entity-then-time order, so the same log gives the same bytes.
  datasetShard @3 (label :Text, shard :UInt32, from :Int64, to :Int64) -> (part :T.DatasetPart);

  # Training jobs (`tessera train`): queue one for a model of the definitions; some node claims
  # it, builds its dataset, trains and registers the model. Poll `job` for progress.
  train @4 (model :Text) -> (jobId :Text);
  job @5 (jobId :Text) -> (job :T.JobStatus);

  # The model registry (shared by every node). Metadata comes as JSON text: `listModels` gives
  # [{name, production, versions: [{version, stage, created}]}]; `showModel` one version's record
  # (kind, inputs, lineage, metrics, epochs, reference distributions, artifact, stage);
  # version 0 means the production version, or the latest when none is in production.
  listModels @6 () -> (json :Text);
  showModel @7 (name :Text, version :UInt32) -> (json :Text);
  # Atomic (one compare-and-swap of the model's registry head). Stages: candidate, shadow,
  # canary, production, archived; promoting to production archives the previous one.
  promoteModel @8 (name :Text, version :UInt32, stage :Text, share :Float64 = -1) -> ();
  # Production goes back to the previous production version.
  rollbackModel @9 (name :Text) -> (version :UInt32);
  # A TorchScript model (e.g. torch.jit.save from PyTorch) whose forward(x [n, d]) returns
  # probabilities [n], for the feature columns of `label`; registered as a candidate.
  importModel @10 (name :Text, label :Text, artifact :Data) -> (version :UInt32);
  exportModel @11 (name :Text, version :UInt32) -> (artifact :Data, version :UInt32);

  # One capability per family (the methods above delegate to them). A client asks once and keeps
  # the capability; with promise pipelining its first call needs no extra round trip.
  features @12 () -> (features :import "features.capnp".Features);
  training @13 () -> (training :import "training.capnp".Training);
  inference @14 () -> (inference :import "inference.capnp".Inference);
  monitoring @15 () -> (monitoring :import "monitoring.capnp".Monitoring);
}
