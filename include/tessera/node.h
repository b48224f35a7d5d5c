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

#include "tessera/result.h"

namespace tessera {

struct node_config {
  std::string data_dir = "./tessera-data";
  std::string rpc = "127.0.0.1:7400";   // HOST:PORT; port 0 picks a free one
  std::string nats_url;                 // empty: start an embedded nats-server
  std::string definitions;              // Lua file
  std::string node_id;                  // empty: kept in <data_dir>/node_id
  uint32_t shards = 64;                 // fixed when the data dir is created
  int64_t entity_idle_ms = 5 * 60 * 1000;
  bool sync_writes = false;             // fsync every RocksDB batch
  int threads = 0;                      // actor scheduler threads; 0 = hardware concurrency
};

class node {
 public:
  [[nodiscard]] static result<std::unique_ptr<node>> start(const node_config& cfg);
  ~node();
  void stop();
  int rpc_port() const;
  const std::string& nats_url() const;
  const std::string& node_id() const;
  // Events applied since start, summed over entity kinds (a cheap counter for monitoring).
  uint64_t events_applied() const;
  // Test hook: the next apply of this entity's actor throws (one-for-one restart path).
  void TEST_crash_entity(const std::string& stream, const std::string& kind, const std::string& key);
  // Blocks until SIGINT or SIGTERM.
  static void wait_for_stop_signal();

  struct impl;

 private:
  explicit node(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace tessera
