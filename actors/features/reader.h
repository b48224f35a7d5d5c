// Feature reads with cluster routing, shared by the RPC gateway and the node-to-node read
// service. Keys are grouped by shard; each group is answered
//   - here, when this node serves the shard: from the vector cache when its entry is valid at the
//   read time, or
//     by the shard actor (which asks its entity actors);
//   - by the owner in the shard map, over NATS request/reply on tsr.node.<owner>.read
//     (ForwardedRead / ForwardedReadReply in schemas/node.capnp), when `forward` is set;
//   - not at all while the shard moves: a retryable error naming the shard.
// Thread safety: read() may be called from any thread; `done` runs on a CAF worker, a libnats
// thread or the caller's thread.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "aggregate.h"
#include "tessera/result.h"

namespace tessera {

struct features_context;
struct view_def;
class bus;

class feature_reader {
 public:
  feature_reader(std::shared_ptr<const features_context> ctx, bus* nats,
                 int64_t forward_timeout_ms = 5000)
      : ctx_(std::move(ctx)), nats_(nats), forward_timeout_ms_(forward_timeout_ms) {}

  // An error's code says what the caller can do: retryable (a shard moving, an owner not
  // answering, a clock moved past the read), invalid (a read time outside the view's window),
  // not found, internal.
  using done_fn = std::function<void(result<std::vector<feature_vector>> vectors)>;
  // `keys` must be valid entity keys and `v` a known view. as_of 0 = the stream's clock, read
  // once here, so every vector of the answer has the same as_of.
  void read(const view_def* v, std::vector<std::string> keys, int64_t as_of, bool forward,
            done_fn done) const;

 private:
  // `at_clock`: as_of is a reading of the stream's clock (by this node, or the node that
  // forwarded the read), so a shard that has moved further answers "retry" rather than
  // "before the retained window".
  void read_at(const view_def* v, std::vector<std::string> keys, int64_t as_of, bool at_clock,
               bool forward, done_fn done) const;

 public:
  // Answers forwarded reads addressed to this node.
  status serve() const;

 private:
  std::shared_ptr<const features_context> ctx_;
  bus* nats_;
  int64_t forward_timeout_ms_;
};

std::string node_read_subject(const std::string& node_id);

}  // namespace tessera
