// Freshness: time from publishing an event to JetStream until a client reading over RPC sees
// it in the served vector, while background load runs at a fixed rate.
//   bench_freshness [seconds_per_rate=8] [shards=8, the default] [rates=0,1000,10000]
// Beside every loaded rate, its raw JetStream baseline in the same run (raw_jetstream.h: one
// 100-byte message per event, async publish, one pull consumer) and the ratio of the p99s.
// Load: flights replayed in order, published every 10 ms in keyed batches. Probes: every 20 ms
// one event for a probe airport "PRB<n>" with a fresh event time; a reader polls getFeatures
// for that airport from the moment it publishes (not from the publisher's ack, which can
// arrive after the event is readable) until its eventTime reaches the probe's.
#include <filesystem>
#include <optional>
#include <thread>

#include "bench_common.h"
#include "hash.h"
#include "nats_server.h"
#include "raw_jetstream.h"
#include "tessera/client.h"
#include "tessera/node.h"

using namespace tessera;
using namespace tessera::bench;
using clk = std::chrono::steady_clock;

namespace {

// One rate: returns the probe latencies in ms, or the error of a read that failed.
result<std::vector<double>> run_rate(bus& b, bus& probe_bus, const definitions& defs,
                                     const std::vector<flight>& fs, size_t& cursor, double rate,
                                     double seconds, const std::string& rpc, uint32_t shards,
                                     std::vector<double>& ack_ms) {
  std::atomic<bool> stop{false};
  std::atomic<size_t> published{0};
  std::thread load([&] {
    auto next = clk::now();
    const size_t per_tick = static_cast<size_t>(rate / 100);
    while (!stop) {
      next += std::chrono::milliseconds(10);
      size_t end = std::min(fs.size(), cursor + per_tick);
      if (cursor >= fs.size()) break;
      publish_flights(b, defs, fs, cursor, end, 1000, shards);
      published += end - cursor;
      cursor = end;
      std::this_thread::sleep_until(next);
    }
  });
  std::vector<double> lat;
  auto c = client::connection::open(rpc);
  std::optional<error> failed;
  auto t0 = clk::now();
  int probe = 0;
  while (!failed && seconds_since(t0) < seconds) {
    // The probe's event time follows the replay so it lies inside every window.
    int64_t t = fs[std::min(cursor, fs.size() - 1)].time + 1000 * (++probe % 1000);
    std::string key = "PRB" + std::to_string(probe % 50);
    std::vector<flight> one{{t, 1.0, 1.0, key, "XXX"}};
    auto sent = clk::now();
    // Polling starts at once, not after the publisher's ack: the event can be readable before
    // the ack reaches the publisher (as the raw baseline's consumer sees a message before its
    // producer's ack). The ack is awaited before the next probe and its time reported.
    auto acks = publish_flights_nowait(probe_bus, defs, one, 0, 1, 1, shards);
    while (true) {
      auto resp = c->features("airport_delay", {key});
      if (!resp) {
        failed = resp.failure();
        break;
      }
      if ((*resp)[0].event_time >= t) break;
      if (seconds_since(sent) > 5) break;
      // Poll every 0.1 ms for the first 5 ms, then every 1 ms: a tight loop would take a whole
      // core (and the gateway thread) away from the node and nats-server on this 2-core
      // machine, and the coarser step only matters when the probe is already late.
      std::this_thread::sleep_for(
          std::chrono::microseconds(seconds_since(sent) < 0.005 ? 100 : 1000));
    }
    lat.push_back(seconds_since(sent) * 1000);
    ack_ms.push_back(std::chrono::duration<double, std::milli>(acks->wait() - sent).count());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  load.join();
  if (failed) return *failed;
  std::printf("  load achieved: %.0f events/s\n", published / seconds_since(t0));
  return result<std::vector<double>>(std::move(lat));
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  double secs = argc > 1 ? std::stod(argv[1]) : 8;
  uint32_t shards = argc > 2 ? static_cast<uint32_t>(std::stoul(argv[2])) : kDefaultShards;
  std::string dir = "/tmp/tessera-bench-freshness";
  std::filesystem::remove_all(dir);
  auto fs_loaded = load_flights(static_cast<size_t>(110000 * secs + 100000));
  if (!fs_loaded) return std::fprintf(stderr, "%s\n", fs_loaded.error_message().c_str()), 2;
  std::vector<flight> fs = std::move(*fs_loaded);
  auto defs = definitions::load_file(TSR_SOURCE_DIR "/examples/flights/flights.lua");
  auto nats = embedded_nats::start(dir);
  if (!nats) return std::fprintf(stderr, "%s\n", nats.error_message().c_str()), 2;
  node_config cfg = flights_node_config(dir + "/node", (*nats)->url(), shards);
  auto nd = node::start(cfg);
  if (!nd) return std::fprintf(stderr, "%s\n", nd.error_message().c_str()), 2;
  auto b = bus::connect({(*nats)->url(), "bench"});
  // The probes' producer has a connection of its own, as another client would: on the load's
  // connection a probe waited behind the acks of the load's messages (publish → ack p99 17 ms
  // at 1k events/s, against 1.6 ms for the raw baseline's producer).
  auto pb = bus::connect({(*nats)->url(), "bench-probe"});
  if (!b || !pb) return std::fprintf(stderr, "cannot connect to NATS\n"), 2;
  std::string rpc = "127.0.0.1:" + std::to_string((*nd)->rpc_port());
  size_t cursor = 0;
  std::printf(
      "bench_freshness: publish → readable over RPC, %.0f s per rate, %u shards, %u cores\n", secs,
      shards, std::thread::hardware_concurrency());
  std::vector<double> rates{0.0, 1000.0, 10000.0};
  if (argc > 3) {  // e.g. "10000" or "0,10000"
    rates.clear();
    for (auto& r : split_list(argv[3])) rates.push_back(std::stod(r));
  }
  for (double rate : rates) {
    std::printf("rate %.0f events/s%s\n", rate, rate == 0 ? " (baseline: idle node)" : "");
    std::optional<stats> raw;
    if (rate > 0) {
      auto r = raw_publish_consume_ms((*nats)->url(), "RAW_FRESH", rate, secs);
      if (r.empty()) return std::fprintf(stderr, "raw baseline failed\n"), 2;
      raw = summarize(std::move(r));
      print_stats("  baseline raw JetStream publish → consume (ms)", *raw, "ms");
    }
    std::vector<double> ack;
    auto probes = run_rate(**b, **pb, **defs, fs, cursor, rate, secs, rpc, shards, ack);
    if (!probes)
      return std::fprintf(stderr, "read failed: [%s] %s\n", errc_name(probes.error_code()),
                          probes.error_message().c_str()),
             1;
    const std::vector<double>& lat = *probes;
    const stats fresh = summarize(lat);
    print_stats("  freshness (ms)", fresh, "ms");
    if (raw)
      std::printf("  RATIO freshness p99 / raw p99 at %.0f events/s: %.2f (goal <= 2); p50: %.2f\n",
                  rate, fresh.p99 / raw->p99, fresh.p50 / raw->p50);
    std::vector<double> node_part(lat.size());
    for (size_t i = 0; i < lat.size(); ++i) node_part[i] = lat[i] - ack[i];
    print_stats("    publish → JetStream ack (ms)", summarize(ack), "ms");
    print_stats("    ack → readable (ms; < 0: readable first)", summarize(node_part), "ms");
    // The node's own split of stored → committed (cumulative since node start).
    auto st = client::connection::open(rpc)->status();
    if (!st) return std::fprintf(stderr, "status: %s\n", st.error_message().c_str()), 2;
    for (auto l : st->get().getApplyStages())
      std::printf(
          "    node apply stage %-9s p50=%.3f p99=%.3f p99.9=%.3f ms (%llu batches, cumulative)\n",
          l.getStage().cStr(), l.getP50Micros() / 1e3, l.getP99Micros() / 1e3,
          l.getP999Micros() / 1e3, static_cast<unsigned long long>(l.getCount()));
  }
  (*nd)->stop();
  return 0;
}
