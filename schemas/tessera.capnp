# Tessera's wire contract: the data every family and language shares — events, feature
# vectors, statuses, jobs, dataset parts. The RPC interfaces that carry them: gateway.capnp (the
# root), features.capnp, training.capnp; node-to-node messages: node.capnp.
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
  # The fields by position, as the gateway writes them: value i is the field named
  # EventBatch.fieldNames[i] (null: absent). Names once per batch instead of once per field
  # and event: half the bytes JetStream stores and delivers (issue 18, bench/RESULTS.md).
  # Read only inside an EventBatch that has fieldNames; an event may carry `fields` instead.
  values @5 :List(Value);
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
  # The names of the events' positional `values` (see Event.values).
  fieldNames @3 :List(Text);
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
  # The model versions this node serves (inference family), one entry per loaded version.
  models @26 :List(ModelServing);
  # Stream-following models (`model { follow = ... }`): this node's share of the work.
  follows @27 :List(FollowStatus);
  # Live quality of the models declared with `monitor` (actors/monitoring/quality_service.h).
  quality @28 :List(ModelQuality);
  # Settled reads (PredictOptions.settled; stream-following predictions) on this node's shards
  # since start: those that waited for their shard to apply up to their time, and those answered
  # when the wait ran out (their features may lack the latest events).
  settledWaits @29 :UInt64;
  settleTimeouts @30 :UInt64;
}

# A model following a stream: one prediction per event, on tsr.pred.<model>.
struct FollowStatus {
  model @0 :Text;
  stream @1 :Text;
  predicted @2 :UInt64;     # predictions stored by this node (de-duplicated ones not counted)
  skipped @3 :UInt64;       # events its `when` left out
  deadLettered @4 :UInt64;  # events that could not be predicted (tsr.dlq.pred.<model>)
  retried @5 :UInt64;       # event messages delivered again (transient failure, node lost)
  duplicates @6 :UInt64;    # publishes JetStream had stored already
  pending @7 :UInt64;       # event messages no node has taken yet (the consumer's backlog)
  lagP50Ms @8 :Float64;     # event message stored → its predictions stored
  lagP99Ms @9 :Float64;
}

# One model version as a node serves it (figures since the version was loaded on this node).
struct ModelServing {
  model @0 :Text;
  version @1 :UInt32;
  stage @2 :Text;            # production, or "pinned" for a version loaded for pinned calls
  loadedAt @3 :Int64;        # µs since the epoch; 0: the load failed (see loadError)
  requests @4 :UInt64;       # examples scored
  requestsPerSecond @5 :Float64;  # over the last 10 s
  p50Micros @6 :Float64;     # example latency on this node, receipt to score
  p99Micros @7 :Float64;
  meanBatch @8 :Float64;     # rows per forward pass
  errors @9 :UInt64;         # examples that failed here (any code)
  logDrops @10 :UInt64;      # prediction-log records dropped (buffer full), whole node
  loadError @11 :Text;       # why a version the registry puts in use is not serving here
  share @12 :Float64;        # a canary or A/B arm: the share of label entities it serves
  shadowSkipped @13 :UInt64; # a shadow: examples not scored (queue full, late, failed)
  fallbacks @14 :UInt64;     # examples its fallback answered
  arm @15 :Text;             # "canary", "ab" (an A/B arm, production too), else empty
  meanScore @16 :Float64;    # mean of the scores it answered here (a shadow: it logged)
  scores @17 :UInt64;        # how many scores meanScore is over
  rules @18 :Text;           # the model's rules: "3 rules @1a2b3c4d, on error 'unknown'"; empty: none
  ruleFailures @19 :UInt64;  # answers whose rule failed (on_error answered), this version here
}

# One version and stage of a monitored model: its latest joined (score, label) pairs.
struct ArmQuality {
  stage @0 :Text;            # production, canary, ab, shadow, fallback
  version @1 :UInt32;
  pairs @2 :UInt64;          # the figures are over these (the window's latest)
  positives @3 :UInt64;
  auc @4 :Float64;           # with its 95% interval (Hanley-McNeil); 0s when one class is absent
  aucLow @5 :Float64;
  aucHigh @6 :Float64;
  logLoss @7 :Float64;
  logLossLow @8 :Float64;
  logLossHigh @9 :Float64;
  accuracy @10 :Float64;     # at 0.5, with Wilson's interval
  accuracyLow @11 :Float64;
  accuracyHigh @12 :Float64;
  ece @13 :Float64;          # expected calibration error, 10 bins
  labelLagP50Ms @14 :Float64;  # label event time - prediction time
  labelLagP99Ms @15 :Float64;
}

struct ModelQuality {
  model @0 :Text;
  arms @1 :List(ArmQuality);
  predictions @2 :UInt64;    # logged predictions read (all stages)
  labels @3 :UInt64;         # label events read
  joined @4 :UInt64;
  unlabelled @5 :UInt64;     # predictions whose label never came within max_label_delay
  late @6 :UInt64;           # predictions whose label came too late
  unmatched @7 :UInt64;      # labels with no prediction within label_grace
  duplicateLabels @8 :UInt64;
  duplicatePredictions @9 :UInt64;
  waiting @10 :UInt64;       # predictions waiting for their label now
  # The canary against production on their own pairs: one-sided tests that it is worse (higher
  # log loss, lower AUC), each at the model's alpha / 2 (monitor.alpha, default 0.01).
  # `compared`: both have the model's monitor.min_pairs pairs or more (default 200).
  compared @11 :Bool;
  canaryWorse @12 :Bool;
  canaryLogLossP @13 :Float64;
  canaryAucP @14 :Float64;
  # Verdicts this node made on the model (once a second while it leads the cluster): canary
  # worse, production below its objectives, automatic rollback (actors/monitoring/verdicts.h).
  verdicts @15 :UInt64;
  # Drift of the inputs and score over the prediction log, per version, against the training
  # reference (actors/monitoring/drift_monitor.h).
  drift @16 :List(VersionDrift);
  driftMismatched @17 :UInt64;  # logged vectors whose length is not the reference's
  # Training/serving skew sampled by the leader every monitor.skew_every (tessera skew): when,
  # how many logged vectors were recomputed and compared, how many differed, and the input that
  # differed most often (empty: none).
  skewAt @18 :Int64;            # wall clock (µs); 0: not sampled on this node
  skewCompared @19 :UInt64;
  skewMismatched @20 :UInt64;
  skewWorst @21 :Text;
  # Objectives on what this node serves of the model (monitor.slo_*), with their burn rates.
  slos @22 :List(SloState);
  # The state saved to the node's data dir (actors/monitoring/checkpoint.h): when last (wall µs;
  # 0: never), the predictions it counts, and when this node restored it at start (0: it did not).
  savedAt @23 :Int64;
  savedPredictions @24 :UInt64;
  restoredAt @25 :Int64;
  # The node that computes this model's monitoring (one per model, spread over the live members);
  # the figures above are that node's: on any other node they are empty.
  owner @26 :Text;
  owned @27 :Bool;
}

struct SloState {
  sli @0 :Text;         # "errors", "latency" (over slo_latency_ms), "fallback" or "freshness"
  budget @1 :Float64;   # the share of predictions (freshness: applied batches) allowed to be bad
  burn5m @2 :Float64;   # bad share / budget over the window (0: too few predictions)
  burn30m @3 :Float64;
  burn1h @4 :Float64;
  burn6h @5 :Float64;
  events1h @6 :UInt64;  # predictions (freshness: applied batches) in the last hour
  level @7 :Text;       # "none", "ticket" (6x over 6h and 30m), "page" (14.4x over 1h and 5m)
}

struct VersionDrift {
  version @0 :UInt32;
  reference @1 :Bool;          # false: no reference recorded (e.g. an imported model): `why`
  why @2 :Text;
  at @3 :Int64;                # the window (at - drift_window, at] last tested, event time (µs)
  predictions @4 :UInt64;      # in that window
  tests @5 :UInt64;            # windows tested so far
  values @6 :List(ValueDrift); # drifted first, by contribution, then by PSI
  window @7 :Int64;            # its length (µs): one entry per version and drift_window
}

struct ValueDrift {
  name @0 :Text;               # an input, or "score"
  tested @1 :Bool;             # enough values in the window (drift_config.min_samples)
  psi @2 :Float64;
  threshold @3 :Float64;       # the PSI this window needed (false-alarm rate, counts, min PSI)
  pValue @4 :Float64;
  js @5 :Float64;              # Jensen-Shannon divergence on the same bins
  meanShiftSd @6 :Float64;     # (window mean - reference mean) / reference sd
  drifted @7 :Bool;            # this window
  alarming @8 :Bool;           # k of the last n windows drifted (persistence)
  contribution @9 :Float64;    # share of the drifted values' total PSI
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
  eventWire @7 :UInt32;       # the event encodings its build reads: 1 by name only, 2 also by
                              # position; gateways write by position once every member reads it
}

struct StageLatency {
  stage @0 :Text;
  count @1 :UInt64;
  p50Micros @2 :Float64;
  p99Micros @3 :Float64;
  p999Micros @4 :Float64;
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
