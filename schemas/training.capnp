# The training family's RPC capability (Gateway.training): point-in-time datasets, training
# jobs and the model registry. Implemented by actors/training/training_rpc.cc. The root
# Gateway's methods @3-@11 are the same calls, kept for older clients (its registry answers are
# JSON text; here they are the structs below, decoded from the registry's JSON records with
# capnp's JSON codec, so the field names in $Json.name are the records' own).
@0xd27a9c4e81f3b5a6;

$import "/capnp/c++.capnp".namespace("tessera::wire");

using T = import "tessera.capnp";
using Json = import "/capnp/compat/json.capnp";

interface Training {
  # One shard's part of a point-in-time training set (see `tessera dataset build`). The node must
  # serve the shard (ask the owner in status.shardOwners): otherwise not found; a moving shard:
  # retryable.
  datasetShard @0 (label :Text, shard :UInt32, from :Int64, to :Int64) -> (part :T.DatasetPart);

  # Training jobs: queue one for a model of the definitions; some node claims it, builds its
  # dataset, trains and registers the model. Poll `job` for progress.
  train @1 (model :Text) -> (jobId :Text);
  job @2 (jobId :Text) -> (job :T.JobStatus);

  # The registry: every model with its versions' stages.
  listModels @3 () -> (models :List(ModelSummary));
  # One version; version 0 means the production version, or the latest when none is.
  showModel @4 (name :Text, version :UInt32) -> (model :ModelVersion);
  # Atomic (one compare-and-swap of the model's registry head). Stages: candidate, shadow,
  # canary, production, archived; promoting to production archives the previous one. A canary
  # serves `share` of the label entities (in [0, 1]; < 0: 0.1), chosen by a stable hash of the
  # entity key, so an entity keeps its version until the share changes; one canary at a time.
  promoteModel @5 (name :Text, version :UInt32, stage :Text, share :Float64 = -1) -> ();
  # Production goes back to the previous production version.
  rollbackModel @6 (name :Text) -> (version :UInt32);
  # A TorchScript model whose forward(x [n, d]) returns probabilities [n], for the feature
  # columns of `label`; checked, then registered as a candidate.
  importModel @7 (name :Text, label :Text, artifact :Data) -> (version :UInt32);
  exportModel @8 (name :Text, version :UInt32) -> (artifact :Data, version :UInt32);
  # A/B arms: each version answers for `share` of the label entities (a stable hash of the entity
  # key, sticky: a change of shares moves only the entities it must); production answers for the
  # rest. Versions must exist (not found) and be candidate, shadow or production; shares in
  # [0, 1] summing to at most 1; a model has a canary or arms, not both (invalid). An empty list
  # ends the A/B test. Atomic, like promote.
  setArms @9 (name :Text, arms :List(AbArm)) -> ();
  # The model as a whole, JSON text: the registry's stages, shares, A/B arms and production
  # history, and what the node's definitions say of it (label, features, fallback, shadow
  # sample, max feature age, the models it takes scores from). Not found when neither the
  # registry nor the definitions know it.
  describeModel @10 (name :Text) -> (json :Text);
}

struct AbArm {
  version @0 :UInt32;
  share @1 :Float64;
}

struct ModelSummary {
  name @0 :Text;
  production @1 :UInt32;              # 0: no version in production
  versions @2 :List(VersionSummary);  # by version number
  ab @3 :List(AbArm);                 # the A/B arms (empty: none)
}

struct VersionSummary {
  version @0 :UInt32;
  stage @1 :Text;
  created @2 :Text;                   # ISO-8601, UTC
  share @3 :Float64;                  # canary: the share of label entities it serves
}

# A registered model version: what it was trained on, how well it did, what its inputs looked
# like (the reference distributions monitoring compares against), where its artifact is.
struct ModelVersion {
  name @0 :Text;
  version @1 :UInt32;
  stage @2 :Text;
  created @3 :Text;
  kind @4 :Text;                      # logistic, mlp, or the kind an import declared
  inputs @5 :List(Text);              # feature columns, in the order the model reads them
  lineage @6 :Lineage;
  metrics @7 :SplitMetrics;
  rows @8 :SplitRows;
  epochs @9 :List(EpochRecord);
  bestEpoch @10 :UInt32 $Json.name("best_epoch");
  reference @11 :References;
  trainingSeconds @12 :Float64 $Json.name("training_seconds");
  examplesPerSecond @13 :Float64 $Json.name("examples_per_second");
  jobSeconds @14 :Float64 $Json.name("job_seconds");
  artifact @15 :ArtifactRef;
  productionHistory @16 :List(UInt32) $Json.name("production_history");
}

struct Lineage {
  label @0 :Text;
  labelValue @1 :Text $Json.name("label_value");
  predictionTime @2 :Text $Json.name("prediction_time");
  snapshotSeconds @3 :Int64 $Json.name("snapshot_seconds");
  views @4 :List(Text);
  dataset @5 :DatasetRef;
  config @6 :TrainingConfig;
  job @7 :Text;
  node @8 :Text;
  imported @9 :Bool;
}

struct DatasetRef {
  rows @0 :UInt64;
  droppedOutsideRetention @1 :UInt64 $Json.name("dropped_outside_retention");
  fnv1a64 @2 :Text;
  from @3 :Text;
  to @4 :Text;
}

struct TrainingConfig {
  kind @0 :Text;
  hidden @1 :List(UInt32);
  epochs @2 :UInt32;
  batchSize @3 :UInt32 $Json.name("batch_size");
  learningRate @4 :Float64 $Json.name("learning_rate");
  weightDecay @5 :Float64 $Json.name("weight_decay");
  seed @6 :UInt64;
  features @7 :List(Text);
  split @8 :Split;
}

struct Split {
  train @0 :List(Text);               # [from, to) as ISO-8601 times
  validation @1 :List(Text);
  test @2 :List(Text);
}

struct SplitMetrics {
  train @0 :BinaryMetrics;
  validation @1 :BinaryMetrics;
  test @2 :BinaryMetrics;
}

struct BinaryMetrics {
  n @0 :UInt64;
  baseRate @1 :Float64 $Json.name("base_rate");
  auc @2 :Float64;
  logLoss @3 :Float64 $Json.name("log_loss");
  accuracy @4 :Float64;
  ece @5 :Float64;                    # expected calibration error, 10 equal-width bins
  calibration @6 :List(CalibrationBin);
}

struct CalibrationBin {
  meanPredicted @0 :Float64 $Json.name("mean_predicted");
  observedRate @1 :Float64 $Json.name("observed_rate");
  count @2 :UInt64;
}

struct SplitRows {
  train @0 :UInt64;
  validation @1 :UInt64;
  test @2 :UInt64;
}

struct EpochRecord {
  epoch @0 :UInt32;
  trainLoss @1 :Float64 $Json.name("train_loss");
  validLogLoss @2 :Float64 $Json.name("valid_log_loss");
  validAuc @3 :Float64 $Json.name("valid_auc");
}

struct References {
  inputs @0 :List(Distribution);
  predictions @1 :Distribution;
}

# A feature's (or the predictions') distribution on the training rows.
struct Distribution {
  name @0 :Text;
  n @1 :UInt64;
  missing @2 :Float64;                # fraction of rows without a value
  mean @3 :Float64;
  stddev @4 :Float64;
  edges @5 :List(Float64);            # 11 edges: min, deciles, max
  counts @6 :List(UInt64);            # 10 bins
}

struct ArtifactRef {
  subject @0 :Text;
  bytes @1 :UInt64;
  crc32 @2 :UInt32;
}
