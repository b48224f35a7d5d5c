// What this node knows about the cluster, for readers on any thread: the shard map it last
// read, which shards it serves, and the members it sees. The cluster agent writes it; the
// gateway reads it to route each request, and status reports it.
// Thread safety: every method locks; callers get copies.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tessera {

struct member_info {
  std::string id;
  std::string rpc;       // the member's RPC address (HOST:PORT) as it advertises it
  bool alive = false;    // heartbeat changed within the dead-after timeout
  bool leaving = false;  // graceful leave in progress
  uint32_t shards_served = 0;
  uint64_t events_applied = 0;
  double silent_s = 0;      // seconds since its heartbeat last changed (as this node saw it)
  uint32_t event_wire = 1;  // the event encodings its build reads (runtime/codec.h)
};

// The local state of one shard number (every (stream, kind) slice of it moves together).
enum class shard_local { none, acquiring, serving, releasing };

struct route {
  enum kind_t { local, remote, unavailable } kind = unavailable;
  std::string owner;  // remote: the node to forward to
  std::string why;    // unavailable: a reason naming the shard, ending in "retry"
};

// Counters of the cluster agent, reported by status.
struct agent_metrics {
  std::atomic<uint64_t> snapshots_written{0};
  std::atomic<uint64_t> snapshots_restored{0};
  std::atomic<uint64_t> snapshots_refused{0};  // corrupt, wrong format, or unreadable
  std::atomic<uint64_t> shards_acquired{0};
  std::atomic<uint64_t> shards_released{0};
  std::atomic<uint64_t> map_conflicts{0};  // CAS lost to another writer
  // Periodic snapshots found due but not written: the shard equals its stored snapshot.
  std::atomic<uint64_t> snapshots_unchanged{0};
};

class cluster_view {
 public:
  agent_metrics metrics;  // written by the agent, read by status

  explicit cluster_view(std::string node_id, uint32_t shard_count)
      : node_id_(std::move(node_id)),
        local_(shard_count, shard_local::none),
        owners_(shard_count) {}

  const std::string& node_id() const { return node_id_; }
  uint32_t shard_count() const { return static_cast<uint32_t>(local_.size()); }

  void set_map(uint64_t epoch, std::vector<std::string> owners) {
    std::lock_guard<std::mutex> g(mu_);
    epoch_ = epoch;
    if (owners.size() == owners_.size()) owners_ = std::move(owners);
  }
  void set_local(uint32_t shard, shard_local s) {
    std::lock_guard<std::mutex> g(mu_);
    if (shard < local_.size()) local_[shard] = s;
  }
  void set_members(std::vector<member_info> m, std::string leader) {
    std::lock_guard<std::mutex> g(mu_);
    members_ = std::move(m);
    leader_ = std::move(leader);
  }

  shard_local local(uint32_t shard) const {
    std::lock_guard<std::mutex> g(mu_);
    return shard < local_.size() ? local_[shard] : shard_local::none;
  }
  std::vector<uint32_t> serving() const {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<uint32_t> out;
    for (uint32_t s = 0; s < local_.size(); ++s)
      if (local_[s] == shard_local::serving) out.push_back(s);
    return out;
  }
  uint64_t epoch() const {
    std::lock_guard<std::mutex> g(mu_);
    return epoch_;
  }
  std::vector<std::string> owners() const {
    std::lock_guard<std::mutex> g(mu_);
    return owners_;
  }
  std::vector<member_info> members() const {
    std::lock_guard<std::mutex> g(mu_);
    return members_;
  }
  std::string leader() const {
    std::lock_guard<std::mutex> g(mu_);
    return leader_;
  }
  // The event encoding every member reads: the lowest kEventWireVersion among the members in
  // TSR_NODES, live or not (a dead member may come back and take shards; its heartbeat expires
  // from the bucket after an hour). 1 until this node has seen the members at all.
  uint32_t event_wire() const {
    std::lock_guard<std::mutex> g(mu_);
    uint32_t v = members_.empty() ? 1 : UINT32_MAX;
    for (auto& m : members_) v = std::min(v, m.event_wire);
    return v;
  }

  // Where a request for `shard` goes now. Serving locally wins over the map (the map may
  // already name a new owner while this node still serves and is about to hand the shard off).
  route route_of(uint32_t shard) const {
    std::lock_guard<std::mutex> g(mu_);
    route r;
    if (shard >= local_.size()) {
      r.why = "shard " + std::to_string(shard) + " does not exist";
      return r;
    }
    const std::string& owner = owners_[shard];
    switch (local_[shard]) {
      case shard_local::serving:
        r.kind = route::local;
        return r;
      case shard_local::acquiring:
        r.why = "shard " + std::to_string(shard) +
                " is moving to this node (restoring its state); retry";
        return r;
      case shard_local::releasing:
        r.why = "shard " + std::to_string(shard) + " is moving from this node to " +
                (owner.empty() ? "another node" : owner) + "; retry";
        return r;
      case shard_local::none:
        break;
    }
    if (owner.empty()) {
      r.why =
          "shard " + std::to_string(shard) + " has no owner yet (the cluster is forming); retry";
    } else if (owner == node_id_) {
      r.why = "shard " + std::to_string(shard) +
              " is assigned to this node, which is not serving it yet; retry";
    } else {
      r.kind = route::remote;
      r.owner = owner;
    }
    return r;
  }

 private:
  std::string node_id_;
  mutable std::mutex mu_;
  uint64_t epoch_ = 0;
  std::vector<shard_local> local_;
  std::vector<std::string> owners_;
  std::vector<member_info> members_;
  std::string leader_;
};

}  // namespace tessera
