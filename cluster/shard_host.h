// What the cluster agent hands shards to. The agent decides which shards this node serves
// (membership, shard map, handoff, snapshots); every family that keeps per-shard state
// implements this interface and is given to the agent at start, so cluster/ never depends on a
// family (features now; inference and monitoring register the same way).
// Threads: called from the agent's control thread, one call at a time; calls may block, each
// for a bounded time. Implementations outlive the agent.
#pragma once
#include <cstdint>
#include <vector>

namespace tessera {

class shard_host {
 public:
  virtual ~shard_host() = default;
  // Starts serving `shards`, whose state the agent has restored. Returns those now served; the
  // others (e.g. still stopping from an earlier release) are offered again on a later tick.
  // Must accept shards it already serves (and return them).
  virtual std::vector<uint32_t> start_shards(const std::vector<uint32_t>& shards) = 0;
  // Stops serving `shards` and returns once each has committed what it applied (or a bounded
  // wait has passed, logged), so that the snapshot the agent writes next holds all of it.
  virtual void stop_shards(const std::vector<uint32_t>& shards) = 0;
};

}  // namespace tessera
