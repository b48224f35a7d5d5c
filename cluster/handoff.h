// Shard handoff: moves this node's shards towards what the shard map says, through the
// families that keep per-shard state (shard_host.h), and keeps their snapshots (snapshots.h).
//   Release: a shard the map gives to another node is marked releasing (still listed as served
//     in the heartbeat), stopped in every family (each commits what it applied), snapshotted
//     unless the stored snapshot already equals its local state, its consumers dropped, then
//     unlisted with one heartbeat for the whole batch.
//   Acquire: a shard the map gives to this node waits until no other live member lists it as
//     served (at most `handoff_wait`, then it is taken over with a warning naming the holder),
//     starts from the newer of its local state and the latest snapshot, slice by slice (a
//     refused snapshot is counted and logged, and the shard replays from its local state), and
//     is served once every family started it; the rest are offered again on the next call.
//   Snapshots: periodic (at most one shard per call, every `snapshot_every` when changed), on
//     release, and on leave for shards nobody took.
// Owner: the cluster agent (agent.h), which gives it the map and what it needs of membership.
// Threads: the agent's control thread only, except snapshot_unowned() (on the thread that
// leaves, after the agent's threads have stopped); not thread-safe. It blocks on families'
// stop_shards, RocksDB and JetStream, each bounded; the lease is renewed on another thread.
// Start/stop: constructed once the snapshot store is open; it has no threads and no stop of its
// own. The families and the snapshot store it borrows outlive it.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tessera/result.h"

namespace tessera {

class bus;
class store;
class definitions;
class shard_host;
class cluster_view;
class snapshot_store;
struct agent_options;

class shard_handoff {
 public:
  struct deps {
    bus* nats = nullptr;
    store* db = nullptr;
    std::shared_ptr<const definitions> defs;
    std::vector<shard_host*> hosts;  // in start order; stopped in the same order
    cluster_view* view = nullptr;    // this node's shards' local states are written here
    snapshot_store* snaps = nullptr;
  };
  // What handoff needs of membership (the agent).
  struct membership {
    // A live member other than this node whose heartbeat lists `shard` as served, or "".
    std::function<std::string(uint32_t shard)> other_server;
    // Puts this node's heartbeat now, so the others see the served list change.
    std::function<void()> announce;
  };
  shard_handoff(const agent_options& o, deps d, membership m);

  // Releases the shards `owners` gives to other nodes, then acquires (or keeps waiting for)
  // those it gives to this node. `epoch` is the map's, written into snapshots. Stops looking at
  // further shards once `stop` is set.
  void reconcile(const std::vector<std::string>& owners, uint64_t epoch,
                 const std::atomic<bool>& stop);
  // Snapshots at most one served shard whose last snapshot is older than `snapshot_every` and
  // whose state changed since.
  void periodic_snapshot(uint64_t epoch);
  // Leave: snapshots the shards still served (nobody took them) that changed since their last
  // snapshot, until `deadline`.
  void snapshot_unowned(std::chrono::steady_clock::time_point deadline, uint64_t epoch);

 private:
  bool acquire(uint32_t shard);  // restores its state; start_shards() then runs it
  size_t start_shards(const std::vector<uint32_t>& shards);
  void release(const std::vector<uint32_t>& shards, uint64_t epoch);
  status snapshot(uint32_t shard, uint64_t epoch);
  bool snapshot_current(uint32_t shard) const;  // local state == the stored snapshot

  const std::string node_id_;
  const std::chrono::milliseconds handoff_wait_;
  const std::chrono::seconds snapshot_every_;
  const size_t snapshot_max_bytes_;
  deps d_;
  membership m_;
  std::map<uint32_t, std::chrono::steady_clock::time_point> acquiring_since_;
  std::map<uint32_t, std::chrono::steady_clock::time_point> last_snapshot_;
  std::map<uint32_t, uint64_t> snapshot_applied_;  // total applied at the last snapshot
};

}  // namespace tessera
