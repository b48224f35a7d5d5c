// Node-wide counters (read by status) and a rate limiter for log lines about bad input.
// Thread-safe; owned by the node and outlives every actor.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace tessera {

// Latencies since start in log-spaced buckets (8 per doubling, ≤ 9% relative error) from 1 µs
// to ~1 h. Recording is one relaxed atomic increment; percentiles are read from a snapshot.
class latency_histogram {
 public:
  static constexpr int kPerDoubling = 8;
  static constexpr int kBuckets = 32 * kPerDoubling;
  void record_us(double us) {
    int b = !(us > 1)    ? 0
            : us >= 1e12 ? kBuckets - 1
                         : static_cast<int>(std::log2(us) * kPerDoubling) + 1;  // NaN → 0
    buckets_[static_cast<size_t>(std::min(b, kBuckets - 1))].fetch_add(1,
                                                                       std::memory_order_relaxed);
  }
  uint64_t count() const {
    uint64_t n = 0;
    for (auto& b : buckets_) n += b.load(std::memory_order_relaxed);
    return n;
  }
  // Recorded values at least `us` (to the bucket: those in buckets whose lower edge is >= us;
  // buckets are 9% wide).
  uint64_t count_at_least_us(double us) const {
    const int first = us <= 1 ? 1 : static_cast<int>(std::ceil(std::log2(us) * kPerDoubling)) + 1;
    uint64_t n = 0;
    for (int i = std::max(first, 0); i < kBuckets; ++i)
      n += buckets_[static_cast<size_t>(i)].load(std::memory_order_relaxed);
    return n;
  }
  // The q-quantile (0 < q ≤ 1) in µs: the upper edge of the bucket holding it; 0 when empty.
  double quantile_us(double q) const {
    std::array<uint64_t, kBuckets> snap;
    uint64_t n = 0;
    for (size_t i = 0; i < snap.size(); ++i)
      n += snap[i] = buckets_[i].load(std::memory_order_relaxed);
    if (n == 0) return 0;
    auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(n)));
    uint64_t seen = 0;
    for (size_t i = 0; i < snap.size(); ++i)
      if ((seen += snap[i]) >= rank)
        return i == 0 ? 1.0 : std::exp2(static_cast<double>(i) / kPerDoubling);
    return std::exp2(static_cast<double>(kBuckets - 1) / kPerDoubling);
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

// Where the time goes between JetStream storing a message and its events being committed,
// measured on the first message of each applied batch.
struct apply_stages {
  latency_histogram delivery;  // JetStream stored it → the node received it (pull, server, network)
  latency_histogram
      queued;  // received → its batch started applying (actor mailboxes, earlier batches)
  latency_histogram applying;  // apply started → committed (entity actors, RocksDB write)
  latency_histogram total;     // stored → committed
};

struct node_metrics {
  apply_stages stages;
  std::atomic<uint64_t> events_applied{0};
  std::atomic<uint64_t> dead_letters{0};
  // Events older than a kind's online retention but within the offline retention: logged for
  // training sets, not applied to online windows (no read could reach them any more).
  std::atomic<uint64_t> events_offline_only{0};
  std::atomic<uint64_t> rejected_at_gateway{0};
  std::atomic<uint64_t> entity_restarts{0};
  std::atomic<uint64_t> shard_restarts{0};
  std::atomic<uint64_t> ingest_calls{0};
  std::atomic<uint64_t> read_calls{0};
  // Settled reads (stream-following predictions) that waited for their shard to apply up to
  // their time, and those answered when the wait ran out (possibly missing events).
  std::atomic<uint64_t> settled_waits{0};
  std::atomic<uint64_t> settle_timeouts{0};
};

// Allows one line per `key` per interval and counts what it suppressed.
class log_limiter {
 public:
  explicit log_limiter(std::chrono::milliseconds interval = std::chrono::seconds(5))
      : interval_(interval) {}
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
