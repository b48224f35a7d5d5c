# Tessera's wire contract: events, feature vectors and the RPC gateway.
# Evolution rules (see schemas/README.md): add fields at the end with new ordinals,
# never renumber, retype or remove; new union members go at the end of the union.
@0xc3a1f2e4b5d60718;

$import "/capnp/c++.capnp".namespace("tessera::wire");

# A typed field value. `text` is accepted for any declared type and converted by the
# gateway (so CSV producers need no type knowledge); other mismatches are rejected.
struct Value {
  union {
    null @0 :Void;
    int @1 :Int64;
    float @2 :Float64;
    text @3 :Text;
    bool @4 :Bool;
    timestamp @5 :Int64;     # microseconds since the Unix epoch, UTC
    textList @6 :List(Text); # e.g. last-N distinct values, most recent first
  }
}

struct Field {
  name @0 :Text;
  value @1 :Value;
}

# One event. `eventTime` is microseconds since the epoch (UTC). When 0 the gateway reads the
# stream's declared time field from `fields`. `key` is the entity key of the entity kind the
# message was published for (filled by the gateway; producers that publish to JetStream directly
# must fill it, see schemas/SUBJECTS.md).
struct Event {
  stream @0 :Text;
  key @1 :Text;
  eventTime @2 :Int64;
  fields @3 :List(Field);
  # When the system knew the event (microseconds since the epoch), kept in the offline log so
  # that training sets use only what was known at prediction time. 0: when JetStream stored it.
  # At the gateway, -1 means "at its event time": a replay of history whose events were known
  # as they happened (`tessera ingest --replay`).
  knownTime @4 :Int64;
}

# Events always travel in batches: one JetStream message = one EventBatch for one
# (stream, entity kind, shard) subject.
struct EventBatch {
  events @0 :List(Event);
  ingestTime @1 :Int64;      # microseconds since the epoch, set by the publisher
  # Set by the gateway: the stream's clock when it accepted these events (µs; for a replay
  # stream the latest event time applied or accepted before the call). It already refused
  # outliers (max_jump) against it, and the shard judges late events (older than the online
  # windows) by it, so the verdict does not depend on when the batch is applied. 0 (producers
  # publishing directly): the shard checks max_jump itself and judges lateness by its own
  # watermark.
  clock @2 :Int64;
}

enum Status {
  missing @0;  # no event of the entity in any window of the view at the read time
  fresh @1;
  stale @2;    # the latest event is older than the view's TTL at the read time
}

struct FeatureValue {
  name @0 :Text;
  value @1 :Value;          # null when undefined (e.g. the mean of an empty window)
  eventTime @2 :Int64;      # latest event time that contributed; 0 if none
}

struct FeatureVector {
  view @0 :Text;
  version @1 :UInt32;
  entity @2 :Text;
  asOf @3 :Int64;           # the read time t: windows cover (t - W, t]
  eventTime @4 :Int64;      # latest event time of the entity <= asOf; 0 if none
  status @5 :Status;
  values @6 :List(FeatureValue);
}

struct Rejection {
  index @0 :UInt32;         # position of the event in the request
  field @1 :Text;           # offending field, empty if the event as a whole
  reason @2 :Text;
}

struct ShardStatus {
  stream @0 :Text;
  kind @1 :Text;
  shard @2 :UInt32;
  appliedSeq @3 :UInt64;
  watermark @4 :Int64;
  lag @5 :UInt64;           # messages in JetStream not yet applied
  entitiesActive @6 :UInt32;
  entitiesPassivated @7 :UInt32;
  deadLetters @8 :UInt64;
  restarts @9 :UInt32;
  failed @10 :Text;         # non-empty when the supervisor gave up on the shard
  eventsApplied @11 :UInt64; # persisted with the state: counts each event once, ever
}

struct NodeStatus {
  nodeId @0 :Text;
  natsUrl @1 :Text;
  shardCount @2 :UInt32;
  streams @3 :List(Text);
  views @4 :List(Text);
  shards @5 :List(ShardStatus);
  eventsApplied @6 :UInt64;
  deadLetters @7 :UInt64;
  rejectedAtGateway @8 :UInt64;
  entityRestarts @9 :UInt64;
  uptimeSeconds @10 :Float64;
  # Where apply time goes since the node started, measured on the first message of each applied
  # batch: "delivery" (JetStream stored → node received), "queued" (→ apply started),
  # "applying" (→ committed) and "total" (stored → committed).
  applyStages @11 :List(StageLatency);
  # The cluster as this node sees it: members (dead ones too, until their heartbeat expires),
  # the leader, and the shard map (owner of every shard, by shard number).
  members @12 :List(MemberStatus);
  leader @13 :Text;
  mapEpoch @14 :UInt64;
  shardOwners @15 :List(Text);
  # Since start: shard snapshots written, restored, and refused (corrupt, other format,
  # unreadable: never loaded), shards acquired and released, shard-map CAS conflicts.
  snapshotsWritten @16 :UInt64;
  snapshotsRestored @17 :UInt64;
  snapshotsRefused @18 :UInt64;
  shardsAcquired @19 :UInt64;
  shardsReleased @20 :UInt64;
  mapConflicts @21 :UInt64;
  # Events too old for the online windows but within the offline retention: kept in the offline
  # log (training sets), not applied online. Counted in eventsApplied too.
  eventsOfflineOnly @22 :UInt64;
  # Training jobs of the last day, as this node last saw them.
  jobs @23 :List(JobStatus);
  # Every stream's clock as this node sees it (the default read time of its entities).
  clocks @24 :List(StreamClock);
  # Periodic snapshots that were due but not written, the shard being equal to its stored one.
  snapshotsUnchanged @25 :UInt64;
}

struct StreamClock {
  stream @0 :Text;
  mode @1 :Text;            # "live": reads at the wall clock; "replay": at the watermark
  readTime @2 :Int64;       # the default read time now (µs); 0: a replay stream with no event yet
  watermark @3 :Int64;      # latest event time applied on any shard of the stream (any node)
  maxFuture @4 :Int64;      # µs: events further past the wall clock are refused
  maxJump @5 :Int64;        # µs: events further past the watermark are refused
  # Since this node started: events of its shards kept for training sets only (older than the
  # online windows at the clock), and events refused as outliers (at this gateway or its shards).
  late @6 :UInt64;
  refused @7 :UInt64;
}

struct MemberStatus {
  nodeId @0 :Text;
  rpc @1 :Text;
  alive @2 :Bool;
  leaving @3 :Bool;
  shardsServed @4 :UInt32;
  silentSeconds @5 :Float64;
  eventsApplied @6 :UInt64;   # load: events the member applied since it started
}

# Node-to-node (NATS request/reply on tsr.node.<node id>.read): the part of a getFeatures call
# whose shards the receiving node serves.
struct ForwardedRead {
  view @0 :Text;
  entities @1 :List(Text);
  asOf @2 :Int64;
  # asOf is the sending node's reading of the stream's clock (no explicit time was asked for):
  # if this node's shards have moved past it by more than the as-of horizon, the answer is a
  # retryable error, and `clock` in the reply lets the sender read again at a newer time.
  atClock @3 :Bool;
}

struct ForwardedReadReply {
  vectors @0 :List(FeatureVector);
  error @1 :Text;         # empty on success
  retryable @2 :Bool;     # the shard is moving: the caller may retry
  clock @3 :Int64;        # the stream's watermark as the answering node knows it
}

# Node-to-node (NATS request/reply on tsr.node.<node id>.pit): point-in-time vectors from the
# offline log of one shard the receiving node serves, for building training sets. The reply is a
# ForwardedReadReply with one vector per item, in order; a vector with asOf = 0 marks an item
# whose time is outside the shard's offline retention.
struct PitItem {
  entity @0 :Text;
  time @1 :Int64;
}

struct PitRead {
  view @0 :Text;
  shard @1 :UInt32;
  items @2 :List(PitItem);
}

struct StageLatency {
  stage @0 :Text;
  count @1 :UInt64;
  p50Micros @2 :Float64;
  p99Micros @3 :Float64;
  p999Micros @4 :Float64;
}

interface Gateway {
  # Validates, routes and publishes the events; returns once JetStream has durably stored every
  # accepted event. Events that fail validation are listed in `rejected`; the others are kept.
  # `batchId` makes the call idempotent: the same id (within the stream's duplicate window) is
  # stored once, so a retried or re-run ingest counts nothing twice.
  # `late`: accepted events older than the online windows at the stream's clock (as the gateway
  # judged it): kept in the offline log for training sets only. Events past the stream's
  # max_future (wall clock) or max_jump (watermark) are rejected with that reason.
  ingest @0 (stream :Text, events :List(Event), batchId :Text) -> (accepted :UInt32, rejected :List(Rejection), duplicates :UInt32, late :UInt32);

  # Feature vectors of `view` for each entity, in request order, all at one read time: asOf, or
  # with asOf = 0 the stream's clock (now for a live stream, the stream's watermark for a replay
  # one), or with asOf < 0 that many µs before the clock. asOf must lie within the view's
  # retained window before the clock (its as_of_horizon).
  getFeatures @1 (view :Text, entities :List(Text), asOf :Int64) -> (vectors :List(FeatureVector));

  status @2 () -> (status :NodeStatus);

  # One shard's part of a point-in-time training set (see `tessera dataset build`): every example
  # of `label` in the offline log of that shard of the label's entity kind whose prediction time
  # is in [from, to), joined to the label's feature views as known at that time. The node must
  # serve the shard (ask the owner in status.shardOwners); a moving shard gives OVERLOADED.
  # `csv` holds the rows (no header) in entity-then-time order, so the same log gives the same bytes.
  datasetShard @3 (label :Text, shard :UInt32, from :Int64, to :Int64) -> (part :DatasetPart);

  # Training jobs (`tessera train`): queue one for a model of the definitions; some node claims
  # it, builds its dataset, trains and registers the model. Poll `job` for progress.
  train @4 (model :Text) -> (jobId :Text);
  job @5 (jobId :Text) -> (job :JobStatus);

  # The model registry (shared by every node). Metadata comes as JSON text: `listModels` gives
  # [{name, production, versions: [{version, stage, created}]}]; `showModel` one version's record
  # (kind, inputs, lineage, metrics, epochs, reference distributions, artifact, stage);
  # version 0 means the production version, or the latest when none is in production.
  listModels @6 () -> (json :Text);
  showModel @7 (name :Text, version :UInt32) -> (json :Text);
  # Atomic (one compare-and-swap of the model's registry head). Stages: candidate, shadow,
  # canary, production, archived; promoting to production archives the previous one.
  promoteModel @8 (name :Text, version :UInt32, stage :Text) -> ();
  # Production goes back to the previous production version.
  rollbackModel @9 (name :Text) -> (version :UInt32);
  # A TorchScript model (e.g. torch.jit.save from PyTorch) whose forward(x [n, d]) returns
  # probabilities [n], for the feature columns of `label`; registered as a candidate.
  importModel @10 (name :Text, label :Text, artifact :Data) -> (version :UInt32);
  exportModel @11 (name :Text, version :UInt32) -> (artifact :Data, version :UInt32);
}

struct JobStatus {
  id @0 :Text;
  model @1 :Text;
  state @2 :Text;          # queued, running, done, failed
  node @3 :Text;           # the node running (or that ran) it
  attempt @4 :UInt32;
  phase @5 :Text;          # starting, dataset, training, registering
  epoch @6 :UInt32;
  epochs @7 :UInt32;
  fraction @8 :Float64;    # of the phase
  loss @9 :Float64;        # running training loss
  error @10 :Text;
  version @11 :UInt32;     # the registered version when done
  testAuc @12 :Float64;
}

struct DatasetPart {
  columns @0 :List(Text);      # prediction_time, entity, label, then the label's feature columns
  csv @1 :Data;
  rows @2 :UInt64;
  examples @3 :UInt64;         # log entries of the shard with a prediction time in range
  outsideRetention @4 :UInt64; # dropped: a feature window reaches before the offline retention
  unlabelled @5 :UInt64;       # dropped: the label expression gave null
  nonFinite @6 :UInt64;        # NaN or infinite feature values, written as empty cells
  # Node to node (tsr.node.<id>.part): a part too large for one NATS message is sent in pages
  # of `csv`; the counts and columns come with page 0. `error` is set instead on failure.
  pages @7 :UInt32;
  error @8 :Text;
}
