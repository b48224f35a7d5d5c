// Feature reads with cluster routing, shared by the RPC gateway, the node-to-node read service
// and (read_points) the inference family. Keys are grouped by shard; each group is answered
//   - here, when this node serves the shard: from the vector cache when its entry is valid at the
//   read time, or
//     by the shard actor (which asks its entity actors);
//   - by the owner in the shard map, over NATS request/reply on tsr.node.<owner>.read
//     (ForwardedRead / ForwardedReadReply in schemas/node.capnp), when `forward` is set;
//   - not at all while the shard moves: a retryable error naming the shard.
// read_points does the same for many lookups of their own view and read time: one actor message
// per (shard, view, read time) group here, one request per owner node on tsr.node.<owner>.points
// (PointRead / PointReadReply in schemas/node.capnp).
// Thread safety: read() and read_points() may be called from any thread; `done` runs on a CAF
// worker, a libnats thread or the caller's thread. The reader is immutable (copies share its
// request counter).
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "aggregate.h"
#include "tessera/result.h"

namespace tessera {

struct features_context;
struct view_def;
class bus;

// One lookup of read_points.
struct point_lookup {
  const view_def* view;  // a view of the node's definitions
  std::string key;       // a valid entity key (key_is_valid)
  int64_t as_of;         // > 0: the read time (µs since the epoch); 0: the stream's clock
  // Read only once the owning shard has applied the stream's events up to as_of (bounded; see
  // actors/features/shard_reads.h), never from the vector cache: what a prediction that follows
  // a replayed stream needs to see what a point-in-time dataset sees.
  bool settled = false;
};
using points_done_fn = std::function<void(std::vector<result<feature_vector>> answers)>;

class feature_reader {
 public:
  feature_reader(std::shared_ptr<const features_context> ctx, bus* nats,
                 int64_t forward_timeout_ms = 5000)
      : ctx_(std::move(ctx)),
        nats_(nats),
        forward_timeout_ms_(forward_timeout_ms),
        points_requests_(std::make_shared<std::atomic<uint64_t>>(0)) {}

  // An error's code says what the caller can do: retryable (a shard moving, an owner not
  // answering, a clock moved past the read), invalid (a read time outside the view's window),
  // not found, internal.
  using done_fn = std::function<void(result<std::vector<feature_vector>> vectors)>;
  // `keys` must be valid entity keys and `v` a known view. as_of 0 = the stream's clock, read
  // once here, so every vector of the answer has the same as_of.
  void read(const view_def* v, std::vector<std::string> keys, int64_t as_of, bool forward,
            done_fn done) const;

  // One answer per lookup, in order; each lookup fails or succeeds alone, with the codes of
  // read(): its shard moving, or its owner not answering within `timeout_ms`: retryable; an
  // as_of at or before the stream's clock less the view's as_of_horizon: invalid (read's
  // message). Lookups of one (shard, view, read time) are one message to the shard actor, so a
  // failure there (an entity actor not answering) fails all of them. An as_of of 0 reads the
  // stream's clock once per stream for the whole call. Lookups on shards other nodes own go to
  // each owner in one request, never split: its reply must fit NATS' payload limit (1 MiB by
  // default), a few thousand vectors. `done` is called exactly once.
  void read_points(std::vector<point_lookup> lookups, int64_t timeout_ms,
                   points_done_fn done) const;

  // Requests sent on tsr.node.<owner>.points by this reader and its copies.
  uint64_t TEST_points_requests() const { return points_requests_->load(); }

 private:
  // `at_clock`: as_of is a reading of the stream's clock (by this node, or the node that
  // forwarded the read), so a shard that has moved further answers "retry" rather than
  // "before the retained window".
  void read_at(const view_def* v, std::vector<std::string> keys, int64_t as_of, bool at_clock,
               bool forward, done_fn done) const;

  // A lookup of read_points_at: `at_clock` as in read_at; `refused`, when set, is its answer (an
  // unknown view or a bad key in another node's request).
  struct timed_point {
    const view_def* view = nullptr;
    std::string key;
    int64_t as_of = 0;
    bool at_clock = false;
    bool settled = false;
    std::optional<error> refused;
  };
  void read_points_at(std::vector<timed_point> points, bool forward, int64_t timeout_ms,
                      points_done_fn done) const;
  // Answers one request of another node on tsr.node.<this node>.points.
  void serve_points(const std::string& data, const std::string& reply_subject) const;

 public:
  // Answers reads other nodes forward to this one: tsr.node.<id>.read and tsr.node.<id>.points.
  status serve() const;

 private:
  std::shared_ptr<const features_context> ctx_;
  bus* nats_;
  int64_t forward_timeout_ms_;
  std::shared_ptr<std::atomic<uint64_t>> points_requests_;
};

std::string node_read_subject(const std::string& node_id);
std::string node_points_subject(const std::string& node_id);

}  // namespace tessera
