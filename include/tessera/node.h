// A Tessera node: one process running the feature pipeline for the shards it owns.
//
//   auto n = tessera::node::start(cfg);   // loads definitions, opens storage, NATS, actors, RPC
//   if (!n) { /* n.error_message() says what to fix */ }
//   (*n)->wait_for_stop_signal();          // SIGINT/SIGTERM
//   (*n)->stop();                          // or destroy it: stops in reverse order
//
// Thread safety: start/stop from one thread. The node owns its actor system, its RocksDB, its
// NATS connection and (without nats_url) its embedded nats-server.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/result.h"

namespace tessera {

struct features_context;  // actors/features/messages.h

// The shard count of a new data dir when none is given: 8 (64 made every 10 ms of ingest 128
// tiny JetStream messages; freshness at 10k events/s, p99 in three rounds: 324-582 ms with 64,
// 27-83 ms with 8; bench/RESULTS.md, issue 18). A cluster of more than 8 nodes needs more, set at
// its creation.
inline constexpr uint32_t kDefaultShards = 8;

struct node_config {
  std::string data_dir = "./tessera-data";
  std::string rpc = "127.0.0.1:7400";  // HOST:PORT; port 0 picks a free one
  std::string nats_url;                // empty: start an embedded nats-server
  std::string definitions;             // Lua file
  std::string node_id;                 // empty: kept in <data_dir>/node_id
  // Fixed when the data dir is created; 0: the data dir's count, or kDefaultShards for a new one.
  uint32_t shards = 0;
  int64_t entity_idle_ms = 5 * 60 * 1000;
  bool sync_writes = false;  // fsync every RocksDB batch
  int threads = 0;           // actor scheduler threads; 0 = hardware concurrency
  // Cluster (every node runs the same code path; one node alone owns every shard).
  std::string advertise;  // RPC address other nodes and clients use; default: the bound one
  int replicas = 1;       // JetStream replicas of streams, KV buckets and snapshots
  int64_t heartbeat_ms = 400;
  int64_t dead_after_ms = 1500;     // a member silent this long is dead; its shards move
  int64_t handoff_wait_ms = 10000;  // a new owner waits at most this long for the old one to let go
  int64_t snapshot_every_s = 60;    // periodic shard snapshots (when the shard changed)
  int64_t leave_timeout_ms = 30000;  // graceful leave on stop: hand shards off within this
  // Inference (actors/inference).
  bool prediction_log = true;          // log every prediction (sampled per model) to JetStream
  std::string alert_webhook;           // http://host:port/path: alert transitions POSTed there
  int64_t monitor_save_ms = 5000;      // monitored models' state saved to JetStream this often
  int predict_max_batch = 64;          // rows per forward pass
  int64_t predict_max_wait_us = 300;   // wait for announced rows (only when some are on their way)
  int64_t predict_deadline_ms = 1000;  // default deadline of a predict call
  // Stream-following models: an event message whose predictions are not stored within this is
  // delivered again (to any node).
  int64_t follow_ack_wait_ms = 10000;
};

class node {
 public:
  [[nodiscard]] static result<std::unique_ptr<node>> start(const node_config& cfg);
  ~node();
  // Graceful: hands this node's shards to the other members (with snapshots), then stops.
  void stop();
  // Test hook: stops without leaving the cluster, as if the process died (others take over
  // after dead_after).
  void TEST_stop_without_leaving();
  // Shard numbers this node serves now.
  std::vector<uint32_t> serving() const;
  int rpc_port() const;
  const std::string& nats_url() const;
  const std::string& node_id() const;
  // Events applied since start, summed over entity kinds (a cheap counter for monitoring).
  uint64_t events_applied() const;
  // Test hook: the next apply of this entity's actor throws (one-for-one restart path).
  // Returns once the entity actor has taken the order (false: its shard is not served here).
  bool TEST_crash_entity(const std::string& stream, const std::string& kind,
                         const std::string& key);
  // Test hook: the features family's context, to read through a feature_reader of this node
  // (actors/features/reader.h). Its services are the node's: drop it before stopping the node.
  std::shared_ptr<const features_context> TEST_features_context() const;
  // Blocks until SIGINT or SIGTERM.
  static void wait_for_stop_signal();

  struct impl;

 private:
  explicit node(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace tessera
