// Helpers shared by the benchmarks: the flights data, keyed publishing straight to JetStream
// (exactly what the gateway publishes), percentiles.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <capnp/common.h>
#include <kj/array.h>

#include "bus.h"
#include "definitions.h"
#include "tessera/node.h"
#include "tessera/result.h"

namespace tessera::bench {

struct flight {
  int64_t time;
  double delay, distance;
  std::string origin, destination;
};

// ../shared/data/flights-3m.csv.gz, or data/flights-3m.csv.gz (fetched on first use); an error
// when neither is there and the fetch fails.
result<std::string> flights_path();
// The first `max_rows` flights of that file.
result<std::vector<flight>> load_flights(size_t max_rows);
// The first `max_rows` flights of a file in the same format (date,delay,distance,origin,
// destination; gzip or plain), e.g. the committed tests/data/flights-slice.csv.gz.
result<std::vector<flight>> load_flights_file(const std::string& path, size_t max_rows);

// Publishes flights [begin, end) keyed per entity kind and shard, up to `per_msg` events per
// message, without waiting: `wait()` on the answer returns once JetStream acked every message.
class pending_acks {
 public:
  // Returns when JetStream acked every message: the time of the last ack.
  std::chrono::steady_clock::time_point wait();
  size_t messages = 0;

 private:
  friend std::shared_ptr<pending_acks> publish_flights_nowait(bus&, const definitions&,
                                                              const std::vector<flight>&, size_t,
                                                              size_t, size_t, uint32_t);
  std::mutex mu_;
  std::condition_variable cv_;
  size_t left_ = 0;
  std::chrono::steady_clock::time_point acked_at_;
  std::vector<kj::Array<capnp::word>> keep_;  // the messages, alive until acked
};
std::shared_ptr<pending_acks> publish_flights_nowait(bus& b, const definitions& defs,
                                                     const std::vector<flight>& fs, size_t begin,
                                                     size_t end, size_t per_msg,
                                                     uint32_t shards = kDefaultShards);
// The same, waiting for every JetStream ack. Returns the number of messages.
size_t publish_flights(bus& b, const definitions& defs, const std::vector<flight>& fs, size_t begin,
                       size_t end, size_t per_msg, uint32_t shards = kDefaultShards);

// A node in this process on the flights example's definitions: data in `data_dir`, NATS at
// `nats_url`, RPC on a free loopback port.
node_config flights_node_config(const std::string& data_dir, const std::string& nats_url,
                                uint32_t shards = kDefaultShards);

struct stats {
  double p50, p90, p99, p999, max, mean;
  size_t n;
};
stats summarize(std::vector<double> xs);
void print_stats(const char* what, const stats& s, const char* unit);

// The median of a few repeated figures (0 for none).
inline double median(std::vector<double> xs) {
  if (xs.empty()) return 0;
  std::sort(xs.begin(), xs.end());
  size_t n = xs.size();
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace tessera::bench
