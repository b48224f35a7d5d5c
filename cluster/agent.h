// The cluster agent: this node's part in membership, leadership and the shard map (DESIGN.md,
// "Shards and routing" and "State, exactly once, recovery"); it hands shards on through
// shard_handoff (handoff.h), which it owns. Everything shared lives in JetStream KV buckets:
//   TSR_NODES      key <node id>  heartbeat JSON {id, rpc, served, leaving, ...}, put every
//                                 `heartbeat`; a member whose revision has not changed for
//                                 `dead_after` (by this node's clock) is dead.
//   TSR_LEASE      key leader     the leader's id; bucket TTL = `lease_ttl`, renewed by CAS, so
//                                 it lapses when the leader dies and another node creates it.
//   TSR_SHARDMAP   key map        {epoch, shard_count, owners[], members[]}, written only by the
//                                 leader and only by compare-and-swap on its revision.
//   TSR_SNAPSHOTS  (snapshots.h)  the latest snapshot manifest of every shard.
// The leader assigns shards by rendezvous hashing over the live members. Every node then
// reconciles what it serves with the map (handoff.h).
// Threads: a heartbeat thread (heartbeat, lease renewal), a members thread (follows TSR_NODES)
// and a control thread (lease, map, handoff, status); blocking NATS calls never run on actors.
// Start: start() opens the buckets (retrying transient failures for up to 30 s; a cluster of
// another shard count is refused as errc::invalid) and starts the threads. Stop: leave()
// (handing the shards off first) or stop(); the destructor stops.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster_view.h"
#include "kv.h"
#include "snapshots.h"
#include "tessera/result.h"

namespace tessera {

class bus;
class store;
class definitions;
class shard_host;
class shard_handoff;
class stream_clocks;
struct node_metrics;

struct agent_options {
  std::string node_id;
  std::string rpc_address;  // advertised to the other members
  uint32_t shard_count = 8;
  int replicas = 1;  // of the KV buckets and the snapshot stream
  std::chrono::milliseconds heartbeat{400};
  std::chrono::milliseconds dead_after{1500};
  std::chrono::milliseconds lease_ttl{1500};
  std::chrono::milliseconds handoff_wait{10000};
  std::chrono::milliseconds tick{100};
  std::chrono::seconds snapshot_every{60};
  size_t snapshot_max_bytes = size_t(1) << 30;
};

class cluster_agent {
 public:
  struct deps {
    bus* nats = nullptr;
    store* db = nullptr;
    std::shared_ptr<const definitions> defs;
    // The families that keep per-shard state (cluster/shard_host.h), in start order; stopped
    // in the same order before a shard's snapshot. Borrowed: they outlive the agent.
    std::vector<shard_host*> hosts;
    cluster_view* view = nullptr;
    const node_metrics* metrics = nullptr;  // load figures for the heartbeat
    // The streams' clocks: this node's watermarks go out with its heartbeat, the other
    // members' come in from theirs, so every node reads a stream at the same time.
    stream_clocks* clocks = nullptr;
  };
  // Opens the buckets and checks the cluster's shard count; starts the threads.
  static result<std::unique_ptr<cluster_agent>> start(const agent_options& o, deps d);
  ~cluster_agent();

  // True once the map exists and this node serves every shard the map gives it.
  bool wait_ready(std::chrono::milliseconds timeout);
  // Graceful leave: announces it, lets the leader move every shard away, releases them (with
  // snapshots), and removes itself; when no other member can take the shards it snapshots
  // them instead. Bounded by `budget`. Then stops the threads.
  void leave(std::chrono::milliseconds budget);
  // Stops at once (no handoff): the others take over after `dead_after`.
  void stop();

  bool is_leader() const { return leader_; }

 private:
  cluster_agent() = default;
  struct observed {
    uint64_t revision = 0;
    std::chrono::steady_clock::time_point changed;
    std::string rpc;
    std::set<uint32_t> served;
    bool leaving = false;
    uint64_t events_applied = 0;
    uint32_t event_wire = 1;  // kEventWireVersion of its build (1: from before it existed)
  };
  struct map_state {
    bool present = false;
    uint64_t revision = 0;
    uint64_t epoch = 0;
    std::vector<std::string> owners;
    std::vector<std::string> members;
  };

  void heartbeat_loop();
  void control_loop();
  void beat();
  void members_loop();
  void run_lease();
  void renew_lease();
  void run_map();
  std::vector<std::string> live_members(bool include_leaving) const;  // REQUIRES: mu_ held
  std::string other_server(uint32_t shard);                           // for handoff; takes mu_

  agent_options opts_;
  deps d_;
  std::unique_ptr<kv_bucket> nodes_, lease_, map_kv_;
  std::unique_ptr<snapshot_store> snaps_;
  std::unique_ptr<shard_handoff> handoff_;  // control thread (and leave(), after it stopped)
  std::thread hb_thread_, ctl_thread_, members_thread_;
  std::string lease_holder_;
  std::chrono::steady_clock::time_point lease_checked_;
  struct __jsCtx* js_ = nullptr;  // control thread: who held the lease at the last look
  std::atomic<bool> stop_{false};
  std::atomic<bool> leaving_{false};
  std::atomic<bool> leader_{false};
  std::mutex beat_mu_;
  std::mutex mu_;  // guards the fields below (control thread writes; wait_ready reads)
  std::condition_variable cv_;
  std::map<std::string, observed> members_;
  map_state map_;
  // Written by the control thread before leader_ becomes true, then only by the heartbeat thread.
  uint64_t lease_rev_ = 0;
  std::chrono::steady_clock::time_point lease_renewed_;
  int64_t started_us_ = 0;
};

}  // namespace tessera
