# Node-to-node messages (NATS request/reply between Tessera nodes; see SUBJECTS.md). Not a
# client contract: only nodes of one cluster speak it, and they run the same version during a
# rolling upgrade only if these evolve by the rules in README.md. The type IDs are pinned to the
# ones these structs had in tessera.capnp.
@0x9c1e5f3a7b2d4e61;

$import "/capnp/c++.capnp".namespace("tessera::wire");

using import "tessera.capnp".FeatureVector;

# Node-to-node (NATS request/reply on tsr.node.<node id>.read): the part of a getFeatures call
# whose shards the receiving node serves.
struct ForwardedRead @0xe7c2c838fda571dc {
  view @0 :Text;
  entities @1 :List(Text);
  asOf @2 :Int64;
  # asOf is the sending node's reading of the stream's clock (no explicit time was asked for):
  # if this node's shards have moved past it by more than the as-of horizon, the answer is a
  # retryable error, and `clock` in the reply lets the sender read again at a newer time.
  atClock @3 :Bool;
}

struct ForwardedReadReply @0xc4deb2593216d831 {
  vectors @0 :List(FeatureVector);
  error @1 :Text;         # empty on success
  retryable @2 :Bool;     # the shard is moving: the caller may retry
  clock @3 :Int64;        # the stream's watermark as the answering node knows it
  # With `error`: what kind of failure it is (tessera::errc as a number: 0 internal, 1 invalid,
  # 2 not found, 3 retryable, 4 overloaded, 5 deadline, 6 unauthorized), so the sending node
  # passes the same code on to its caller.
  code @4 :UInt8;
}

# Node-to-node (NATS request/reply on tsr.node.<node id>.pit): point-in-time vectors from the
# offline log of one shard the receiving node serves, for building training sets. The reply is a
# ForwardedReadReply with one vector per item, in order; a vector with asOf = 0 marks an item
# whose time is outside the shard's offline retention.
struct PitItem @0xa9ee573b3c1e67b4 {
  entity @0 :Text;
  time @1 :Int64;
}

struct PitRead @0xf9b737493edaaa7e {
  view @0 :Text;
  shard @1 :UInt32;
  items @2 :List(PitItem);
}

# Node-to-node (tsr.node.<id>.part): a node asks the owner of a shard for its whole dataset part
# (the reply is a DatasetPart, in pages; see SUBJECTS.md). The layout is that of
# Gateway.datasetShard's parameters, which the first version sent.
struct PartRequest {
  label @0 :Text;
  shard @1 :UInt32;
  from @2 :Int64;
  to @3 :Int64;
}

# Node-to-node (tsr.node.<id>.predict): the examples of a predict call whose label entities the
# receiving node's shards own, with the version the entry node resolved (one version per call).
# The reply is a ForwardedPredictReply, one Prediction per example, in order.
struct ForwardedPredict {
  model @0 :Text;
  version @1 :UInt32;
  options @2 :import "inference.capnp".PredictOptions;
  examples @3 :List(import "inference.capnp".Example);
  deadline @4 :Int64;   # the caller's deadline, µs since the epoch (wall clock)
}

struct ForwardedPredictReply {
  predictions @0 :List(import "inference.capnp".Prediction);
  error @1 :Text;       # the whole request failed (e.g. the version cannot be loaded)
  code @2 :UInt8;
}
# Node-to-node (NATS request/reply on tsr.node.<node id>.points): many lookups, each of its own
# view, entity and read time, whose shards the receiving node serves (feature_reader::read_points:
# one request per owner node). The receiving node answers from its own shards only and never
# forwards again: a lookup on a shard it does not serve (any more) gets a retryable error.
struct PointItem @0xb27b7b112276c6c4 {
  view @0 :Text;     # qualified: "name@version"
  entity @1 :Text;
  # The read time (µs since the epoch); 0: the receiving node's clock of the view's stream.
  asOf @2 :Int64;
  # asOf is the sending node's reading of the stream's clock (as ForwardedRead.atClock): a shard
  # that has moved past it answers a retryable error rather than "before the retained window".
  atClock @3 :Bool;
  # Answer once the shard has applied its events up to asOf, waiting a bounded time (a
  # stream-following prediction; feature_reader's point_lookup::settled).
  settled @4 :Bool;
}

struct PointRead @0xfcc40e15706b207f {
  items @0 :List(PointItem);
}

# The answer to one PointItem: its vector, or an error with its code (tessera::errc as a number,
# as in ForwardedReadReply.code).
struct PointAnswer @0xed8e99e6bd365906 {
  vector @0 :FeatureVector;  # when `error` is empty
  error @1 :Text;
  code @2 :UInt8;
}

# A stream's watermark as the answering node knows it.
struct StreamWatermark @0xe5291a9cbafc639c {
  stream @0 :Text;
  watermark @1 :Int64;
}

struct PointReadReply @0xd7dda947055e745e {
  answers @0 :List(PointAnswer);  # one per item, in order
  # Of every stream the items read (as ForwardedReadReply.clock).
  watermarks @1 :List(StreamWatermark);
  # Set when the request as a whole could not be read (malformed); `answers` is then empty.
  error @2 :Text;
  code @3 :UInt8;
}
