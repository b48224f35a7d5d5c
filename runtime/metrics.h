// Node-wide counters (read by status) and a rate limiter for log lines about bad input.
// Thread-safe; owned by the node and outlives every actor.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace tessera {

struct node_metrics {
  std::atomic<uint64_t> events_applied{0};
  std::atomic<uint64_t> dead_letters{0};
  std::atomic<uint64_t> rejected_at_gateway{0};
  std::atomic<uint64_t> entity_restarts{0};
  std::atomic<uint64_t> shard_restarts{0};
  std::atomic<uint64_t> ingest_calls{0};
  std::atomic<uint64_t> read_calls{0};
};

// Allows one line per `key` per interval and counts what it suppressed.
class log_limiter {
 public:
  explicit log_limiter(std::chrono::milliseconds interval = std::chrono::seconds(5)) : interval_(interval) {}
  // Returns true if the caller should log now; `suppressed` is how many were skipped since.
  bool allow(const std::string& key, uint64_t& suppressed);

 private:
  struct slot {
    std::chrono::steady_clock::time_point last{};
    uint64_t skipped = 0;
  };
  std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::unordered_map<std::string, slot> slots_;
};

inline bool log_limiter::allow(const std::string& key, uint64_t& suppressed) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> g(mu_);
  auto& s = slots_[key];
  if (s.last.time_since_epoch().count() != 0 && now - s.last < interval_) {
    ++s.skipped;
    return false;
  }
  suppressed = s.skipped;
  s.skipped = 0;
  s.last = now;
  return true;
}

}  // namespace tessera
