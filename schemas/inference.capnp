# The inference family's RPC capability (Gateway.inference): predictions from fresh features.
# Implemented by actors/inference/inference_rpc.cc.
#
# An example is what a caller knows when it asks: the fields of the model's label stream (a
# departure: origin, destination, distance, date). The model's label definition derives from
# them, with the same code as the offline dataset build, the entity keys, the on-demand
# features and the prediction time; the features are read as of that time on the node that
# owns the label entity's shard; the model version's TorchScript scores the vector.
@0xc048b4ee9d2d6761;

$import "/capnp/c++.capnp".namespace("tessera::wire");

using T = import "tessera.capnp";

struct Example {
  fields @0 :List(T.Field);  # the label stream's fields, by name; text is parsed to the type
  # The prediction time (µs since the epoch). 0: the label's prediction_time computed from the
  # fields when they are present, else the label stream's clock.
  asOf @1 :Int64;
  requestId @2 :Text;        # echoed in the answer and the prediction log
}

struct PredictOptions {
  version @0 :UInt32;        # 0: the production version
  deadlineMs @1 :UInt32;     # 0: the node's default (1000 ms); covers reads, hops and scoring
  # > 0: an example whose feature values are older than this (µs, event time to read time)
  # fails with `invalid` naming the feature; 0: stale values are served (their age is returned).
  maxFeatureAge @2 :Int64;
  returnVector @3 :Bool;     # fill Prediction.features
  # One forward pass per example instead of micro-batches (for comparisons; slower under load).
  noBatch @4 :Bool;
  # Features read only once their shards have applied their stream up to the prediction time,
  # waiting a bounded time (2 s by default) on replay-clock streams: what stream-following
  # predictions ask, so that they see what a point-in-time dataset sees.
  settled @5 :Bool;
}

# One input of the model as it was scored.
struct FeatureUsed {
  name @0 :Text;             # the dataset column: an on-demand name or "view.feature"
  value @1 :Float64;         # as given to the model (NaN: missing, imputed inside the model)
  eventTime @2 :Int64;       # latest event that contributed; 0 for on-demand or none
  age @3 :Int64;             # µs from eventTime to the read time; -1 when not applicable
  status @4 :T.Status;       # the view's status at the read time (on-demand: fresh)
}

struct Prediction {
  score @0 :Float64;         # probability of the positive label
  version @1 :UInt32;
  stage @2 :Text;            # the version's stage when it scored (production, or what was pinned)
  path @3 :Text;             # how the answer was made: "model"
  # Non-empty: this example failed (the others did not). `code` as tessera::errc: 0 internal,
  # 1 invalid, 2 not found, 3 retryable, 4 overloaded, 5 deadline, 6 unauthorized, 7 unavailable.
  error @4 :Text;
  code @5 :UInt8;
  requestId @6 :Text;
  predictionTime @7 :Int64;  # µs; features were read as of the label's feature time for it
  node @8 :Text;             # the node that scored it (the owner of the label entity's shard)
  latencyUs @9 :UInt32;      # on that node, from receipt to score
  features @10 :List(FeatureUsed);  # when options.returnVector
  # The model's rules (definitions: model { rules = ... }): the decision label, and the rule
  # that fired as "name@version" (the version hashes the rules' source; "on_error@..." when a
  # rule failed and the rules' on_error label answered). Empty without rules or on error.
  decision @11 :Text;
  rule @12 :Text;
}

struct ModelRequest {
  model @0 :Text;
  options @1 :PredictOptions;
}

struct ModelPredictions {
  model @0 :Text;
  predictions @1 :List(Prediction);  # empty when `error` is set
  error @2 :Text;            # the model as a whole failed (unknown, no production version, ...)
  code @3 :UInt8;
}

interface Inference {
  # One prediction per example, in order. One version scores the whole call. Errors of the call
  # (not of one example): not found (unknown model, no production version: the message lists
  # the stages that exist), invalid (no examples, too many), overloaded (the model's queue is
  # full: retry after the time in the message).
  predict @0 (model :Text, examples :List(Example), options :PredictOptions)
      -> (predictions :List(Prediction));
  # Several models on the same examples (each with its own options and deadline), concurrently;
  # a model that fails leaves the others' answers.
  predictModels @1 (models :List(ModelRequest), examples :List(Example))
      -> (results :List(ModelPredictions));
  # The prediction log (JetStream stream TSR_PREDICTIONS, see SUBJECTS.md): up to `limit` records
  # of `model` after stream sequence `afterSeq` (0: the last `limit`), as JSON lines.
  tailPredictions @2 (model :Text, limit :UInt32, afterSeq :UInt64)
      -> (records :List(Text), lastSeq :UInt64);
  # Recomputes up to `sample` logged vectors of `model` from the offline log at their logged
  # time and compares them feature by feature. The report is JSON (see README.md, "Skew").
  skew @3 (model :Text, sample :UInt32) -> (json :Text);
}
