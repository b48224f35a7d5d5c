// Ingest throughput: JetStream → shard actors → entity actors → RocksDB (online store), beside
// a raw JetStream consume (pull + Cap'n Proto decode, nothing else) of the same messages on the
// same machine, in the same run.
// Also (issue 18) `tessera ingest` end to end beside raw async publish.
//   bench_ingest [events=1000000] [events_per_message=1000] [parts=e2e,apply] [shards=8]
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "bench_common.h"
#include "nats_server.h"
#include "raw_jetstream.h"
#include "tessera/node.h"

using namespace tessera;
using namespace tessera::bench;
using clk = std::chrono::steady_clock;

namespace {

// Goal 2 of issue 18: `tessera ingest` of the first `n` flights (a CSV written from the data
// file) into a fresh node until every event is applied, beside raw JetStream async publish of
// one 100-byte message per event on the same nats-server, in the same run.
int end_to_end(size_t n, const std::string& dir, uint32_t shards) {
  auto path = flights_path();
  if (!path) return std::fprintf(stderr, "%s\n", path.error_message().c_str()), 2;
  const std::string csv = dir + "/flights.csv";
  const std::string cut = "zcat " + *path + " | head -n " + std::to_string(n + 1) + " > " + csv;
  if (std::system(cut.c_str()) != 0) return std::fprintf(stderr, "%s failed\n", cut.c_str()), 2;
  auto nats = embedded_nats::start(dir + "/nats-e2e");
  if (!nats) return std::fprintf(stderr, "%s\n", nats.error_message().c_str()), 2;
  const double raw = raw_async_publish_rate((*nats)->url(), "RAW_PUBLISH", n);
  std::printf("baseline raw JetStream async publish, one 100 B message per event: %.0f msg/s\n",
              raw);
  node_config cfg = flights_node_config(dir + "/node-e2e", (*nats)->url(), shards);
  auto nd = node::start(cfg);
  if (!nd) return std::fprintf(stderr, "%s\n", nd.error_message().c_str()), 2;
  const std::string cmd = std::string(TSR_BINARY) +
                          " ingest --quiet --replay --stream flights --rpc 127.0.0.1:" +
                          std::to_string((*nd)->rpc_port()) + " " + csv;
  const auto t0 = clk::now();
  if (std::system(cmd.c_str()) != 0) return std::fprintf(stderr, "%s failed\n", cmd.c_str()), 1;
  const double sent = seconds_since(t0);
  while ((*nd)->events_applied() < 2 * n && seconds_since(t0) < 600)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double total = seconds_since(t0);
  const uint64_t applied = (*nd)->events_applied();
  std::printf(
      "tessera ingest (CLI → gateway → JetStream → applied): %zu events, CLI done after %.2f s, "
      "all applied after %.2f s (%llu of %zu entity applications) = %.0f events/s\n",
      n, sent, total, static_cast<unsigned long long>(applied), 2 * n, n / total);
  std::printf("  RATIO end-to-end ingest / raw async publish: %.2f (goal >= 2)\n", n / total / raw);
  (*nd)->stop();
  return applied >= 2 * n ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::stoul(argv[1]) : 1000000;
  size_t per_msg = argc > 2 ? std::stoul(argv[2]) : 1000;
  const std::string parts = argc > 3 ? argv[3] : "e2e,apply";
  const uint32_t shards = argc > 4 ? static_cast<uint32_t>(std::stoul(argv[4])) : kDefaultShards;
  std::string dir = "/tmp/tessera-bench-ingest";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::printf(
      "bench_ingest: %zu flights, up to %zu events per JetStream message, %u shards, %u cores\n", n,
      per_msg, shards, std::thread::hardware_concurrency());
  if (parts.find("e2e") != std::string::npos)
    if (int rc = end_to_end(n, dir, shards); rc != 0) return rc;
  if (parts.find("apply") == std::string::npos) return 0;
  auto fs_loaded = load_flights(n);
  if (!fs_loaded) return std::fprintf(stderr, "%s\n", fs_loaded.error_message().c_str()), 2;
  std::vector<flight> fs = std::move(*fs_loaded);
  auto defs = definitions::load_file(TSR_SOURCE_DIR "/examples/flights/flights.lua");
  auto nats = embedded_nats::start(dir);
  if (!nats) return std::fprintf(stderr, "%s\n", nats.error_message().c_str()), 2;
  auto b = bus::connect({(*nats)->url(), "bench"});
  (void)(*b)->ensure_stream(*(*defs)->find_stream("flights"));

  auto t0 = clk::now();
  size_t msgs = publish_flights(**b, **defs, fs, 0, fs.size(), per_msg, shards);
  double pub = seconds_since(t0);
  std::printf(
      "preload: %zu events as %zu messages (%zu entity copies) in %.2f s = %.0f events/s "
      "published\n",
      fs.size(), msgs, 2 * fs.size(), pub, fs.size() / pub);

  size_t raw_events = 0;
  double raw = raw_pull_decode((*nats)->url(), "tsr.ev.flights.>", msgs, raw_events);
  std::printf(
      "baseline raw JetStream pull+decode: %zu event copies in %.2f s = %.0f event copies/s (%.0f "
      "events/s)\n",
      raw_events, raw, raw_events / raw, raw_events / 2 / raw);

  node_config cfg = flights_node_config(dir + "/node", (*nats)->url(), shards);
  auto t1 = clk::now();
  auto nd = node::start(cfg);
  if (!nd) return std::fprintf(stderr, "%s\n", nd.error_message().c_str()), 2;
  std::vector<double> rates;  // entity applications per second, per 0.25 s interval
  std::vector<std::pair<double, uint64_t>> samples;  // (seconds since start, applied)
  uint64_t last = 0, applied = 0;
  auto last_t = clk::now();
  while (applied < 2 * fs.size() && seconds_since(t1) < 600) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    applied = (*nd)->events_applied();
    rates.push_back((applied - last) / seconds_since(last_t));
    samples.emplace_back(seconds_since(t1), applied);
    last = applied;
    last_t = clk::now();
  }
  double total = seconds_since(t1);
  // Consumers are created (on a long stream: slow on nats-server 2.9) while the shards that
  // have theirs already apply, so the first seconds run slower. Steady state: the second half.
  size_t first = 0;
  while (first < rates.size() && rates[first] == 0) ++first;
  auto mid = samples.empty() ? std::make_pair(0.0, uint64_t(0)) : samples[samples.size() / 2];
  double steady = total > mid.first ? (2 * fs.size() - mid.second) / (total - mid.first) : 0;
  std::printf(
      "  first applications after %.2f s; steady state (second half of the run): %.0f events/s = "
      "%.0f entity applications/s\n",
      first * 0.25, steady / 2, steady);
  std::printf("  applications/s per 0.25 s interval, in order:");
  for (double r : rates) std::printf(" %.0fk", r / 1000);
  std::printf("\n");
  // The last interval is partial: leave it out of the distribution.
  if (rates.size() > 1) rates.pop_back();
  auto s = summarize(rates);
  std::sort(rates.begin(), rates.end());
  std::printf(
      "tessera apply (node start → all applied, RocksDB state+sequence per batch): %.2f s\n",
      total);
  std::printf("  = %.0f events/s (each event into both views) = %.0f entity applications/s\n",
              fs.size() / total, 2 * fs.size() / total);
  std::printf("  per 0.25 s interval, entity applications/s: p50=%.0f p10=%.0f max=%.0f (n=%zu)\n",
              s.p50, rates.empty() ? 0.0 : rates[rates.size() / 10], s.max, s.n);
  std::printf("  RATIO apply / raw pull+decode: %.2f (goal >= 0.8)\n",
              (fs.size() / total) / (raw_events / 2 / raw));
  (*nd)->stop();
  return 0;
}
