// The message contract of the feature actors, in one place.
//
//   supervisor  <- status_atom, status_request      (from the gateway; replies via callback)
//               <- own_atom, vector<uint32> shards -> the shards started (cluster agent: run every
//                                                    slice of each shard)
//               <- release_atom, uint32 shard -> bool (cluster agent: stop them; answers once all
//                                                    have exited, so their state is committed)
//               <- restart_atom, std::string shard  (self, after a crash back-off)
//   shard       <- delivery                         (from the bus: one JetStream message or a
//   pull's end)
//               <- flush_atom / tick_atom           (self)
//               <- read_atom, shard_read              (from the gateway, found in the
//               shard_directory;
//                                                    replies via callback)
//               <- status_atom -> shard_status
//               <- crash_atom, std::string key -> bool  (test hook: the entity's next apply fails)
//   (entities are not actors: the shard holds them, see entities.h)
//
// CAF messages never leave the process (nodes talk over NATS), so these types are allowed
// unserialised with CAF_ALLOW_UNSAFE_MESSAGE_TYPE.
#pragma once
#include <caf/all.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "aggregate.h"
#include "bus.h"
#include "definitions.h"
#include "metrics.h"
#include "store.h"
#include "stream_clock.h"

namespace tessera {

class shard_directory;
class cluster_view;
class vector_cache;
class validation_ledger;

using read_atom = caf::atom_constant<caf::atom("read")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using restart_atom = caf::atom_constant<caf::atom("restart")>;
using init_atom = caf::atom_constant<caf::atom("init")>;
using crash_atom = caf::atom_constant<caf::atom("TEST_crash")>;
using own_atom = caf::atom_constant<caf::atom("own")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using watchdog_atom = caf::atom_constant<caf::atom("watchdog")>;

struct features_options {
  uint32_t shard_count = 8;
  std::chrono::milliseconds entity_idle{std::chrono::minutes(5)};
  std::chrono::milliseconds materialize_every{
      std::chrono::seconds(1)};  // online-store refresh per entity
  int pull_batch = 256;          // JetStream messages per pull request
  // Bytes a node's shards may have asked JetStream for and not yet received, in all; each pull
  // asks for at most this over twice the node's (shard, kind) slices (see shard_pull). NATS
  // drops a client with over 64 MiB unread (the server's max_pending default) as a slow
  // consumer: every delivery in flight lost, heartbeats missed (issue 18, bench/RESULTS.md).
  int64_t pull_bytes_in_flight = 24 << 20;
  int entity_max_restarts = 3;  // within restart_window, then its events go to the DLQ
  int shard_max_restarts = 5;   // within restart_window, then the shard is reported failed
  std::chrono::seconds restart_window{60};
  // The longest a settled read (shard_read::settled) waits for its shard to apply up to its time.
  std::chrono::milliseconds settle_wait{2000};
};

// Everything the feature actors share. Owned by the node; outlives the actor system.
struct features_context {
  std::shared_ptr<const definitions> defs;
  store* db = nullptr;
  bus* nats = nullptr;
  node_metrics* metrics = nullptr;
  log_limiter* limiter = nullptr;
  shard_directory* directory = nullptr;
  const cluster_view* cluster =
      nullptr;  // routing: which shards this node serves, who owns the rest
  vector_cache* cache = nullptr;
  stream_clocks* clocks = nullptr;          // the streams' read clocks (runtime/stream_clock.h)
  validation_ledger* validation = nullptr;  // what ingest saw of the expectations (node-owned)
  std::string node_id;
  features_options opts;
};
using context_ptr = std::shared_ptr<const features_context>;

// What applying a batch changed in an entity: its vectors to store.
struct entity_delta {
  std::string key;
  std::vector<std::pair<std::string, std::string>> vectors;  // (view@version, encoded vector)
};

struct shard_status {
  shard_id id;
  shard_meta meta;
  uint64_t lag = 0;
  uint32_t active = 0;
  uint32_t passivated = 0;
  uint32_t restarts = 0;
  std::string failed;
};

// The part of a read that one shard answers: vectors for `keys` in order, or an error.
struct shard_read {
  uint32_t view = 0;  // index into the shard's kind_plan::views
  std::vector<std::string> keys;
  int64_t as_of = 0;
  bool at_clock =
      false;  // as_of is the caller's reading of the stream's clock, not a time asked for
  // Answer only once the shard has applied its events up to as_of, waiting at most
  // features_options::settle_wait (replay-clock streams; see shard_reads.h).
  bool settled = false;
  std::chrono::steady_clock::time_point settle_by{};  // set by the shard when it defers the read
  std::function<void(result<std::vector<feature_vector>>)> done;
};

// Where each shard actor of this node is, for callers outside the actor system (the gateway).
// The supervisor keeps it current. Thread-safe.
class shard_directory {
 public:
  void set(const std::string& shard, caf::actor a, std::string why_not = {}) {
    std::lock_guard<std::mutex> g(mu_);
    auto& e = map_[shard];
    e.first = std::move(a);
    e.second = std::move(why_not);
  }
  // The shard's actor, or an invalid handle and the reason (not owned, restarting, failed).
  caf::actor get(const std::string& shard, std::string& why_not) const {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(shard);
    if (it == map_.end()) {
      why_not = "not owned by this node";
      return {};
    }
    why_not = it->second.second;
    return it->second.first;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::pair<caf::actor, std::string>> map_;
};

struct status_request {
  std::function<void(std::vector<shard_status>)> done;
};

}  // namespace tessera

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tessera::delivery)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tessera::shard_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tessera::shard_read)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tessera::status_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tessera::feature_vector)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<tessera::feature_vector>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tessera::context_ptr)
