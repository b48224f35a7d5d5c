// Read latency: getFeatures over RPC on loopback (one entity; 100 entities per call), beside
// redis-benchmark GET against a local redis-server started in the same run.
//   bench_read [calls=20000] [shards=8]
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "bench_common.h"
#include "nats_server.h"
#include "tessera/client.h"
#include "tessera/node.h"

using namespace tessera;
using namespace tessera::bench;
using clk = std::chrono::steady_clock;

int main(int argc, char** argv) {
  size_t calls = argc > 1 ? std::stoul(argv[1]) : 20000;
  const uint32_t shards = argc > 2 ? static_cast<uint32_t>(std::stoul(argv[2])) : kDefaultShards;
  std::string dir = "/tmp/tessera-bench-read";
  std::filesystem::remove_all(dir);
  auto fs_loaded = load_flights(300000);
  if (!fs_loaded) return std::fprintf(stderr, "%s\n", fs_loaded.error_message().c_str()), 2;
  std::vector<flight> fs = std::move(*fs_loaded);
  auto defs = definitions::load_file(TSR_SOURCE_DIR "/examples/flights/flights.lua");
  node_config cfg;
  cfg.data_dir = dir + "/node";
  cfg.rpc = "127.0.0.1:0";
  cfg.definitions = TSR_SOURCE_DIR "/examples/flights/flights.lua";
  cfg.shards = shards;
  auto nd = node::start(cfg);
  if (!nd) return std::fprintf(stderr, "%s\n", nd.error_message().c_str()), 2;
  auto b = bus::connect({(*nd)->nats_url(), "bench"});
  publish_flights(**b, **defs, fs, 0, fs.size(), 1000, shards);
  while ((*nd)->events_applied() < 2 * fs.size())
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::set<std::string> origin_set, route_set;
  for (auto& f : fs) origin_set.insert(f.origin), route_set.insert(f.origin + "-" + f.destination);
  std::vector<std::string> origins(origin_set.begin(), origin_set.end()),
      routes(route_set.begin(), route_set.end());
  std::printf(
      "bench_read: %zu flights loaded (%zu airports, %zu routes); %zu sequential calls per case, 1 "
      "client\n",
      fs.size(), origins.size(), routes.size(), calls);

  auto c = client::connection::open("127.0.0.1:" + std::to_string((*nd)->rpc_port()));
  std::mt19937 rng(7);
  int64_t last_time = 0;
  for (auto& f : fs) last_time = std::max(last_time, f.time);
  auto run = [&](const char* what, const std::string& view, const std::vector<std::string>& keys,
                 size_t per_call, size_t n, int64_t as_of = 0, int64_t as_of_step = 0) -> stats {
    std::vector<double> lat;
    for (size_t i = 0; i < n + n / 10; ++i) {  // first 10% warm up
      std::vector<std::string> entities(per_call);
      for (auto& e : entities) e = keys[rng() % keys.size()];
      auto t = clk::now();
      auto r =
          c->features(view, entities, as_of ? as_of - static_cast<int64_t>(i) * as_of_step : 0);
      double us = seconds_since(t) * 1e6;
      if (!r) {
        std::fprintf(stderr, "%s: [%s] %s\n", what, errc_name(r.error_code()),
                     r.error_message().c_str());
        std::abort();
      }
      if (r->size() != per_call) std::abort();
      if (i >= n / 10) lat.push_back(us / 1000);
    }
    const stats st = summarize(lat);
    print_stats(what, st, "ms");
    return st;
  };
  const stats airport = run("tessera getFeatures, 1 airport", "airport_delay", origins, 1, calls);
  const stats route = run("tessera getFeatures, 1 route", "route_delay", routes, 1, calls);
  run("tessera getFeatures, 100 routes per call", "route_delay", routes, 100, calls / 10);
  // An explicit as-of inside a cached vector's validity is answered from the cache; one that
  // moves back a microsecond per call always misses it: the entity actor computes it.
  run("tessera getFeatures, 1 airport, as-of 1 h back", "airport_delay", origins, 1, calls,
      last_time - 3600LL * 1000000);
  run("tessera getFeatures, 1 airport, as-of (actor)", "airport_delay", origins, 1, calls,
      last_time - 3600LL * 1000000, 1);

  // Baseline: Redis GET, one client, no pipelining, same machine, same run.
  int port = find_free_port();
  std::string rdir = dir + "/redis";
  std::filesystem::create_directories(rdir);
  std::string start = "redis-server --port " + std::to_string(port) +
                      " --bind 127.0.0.1 --save '' --appendonly no --dir " + rdir +
                      " --daemonize yes --pidfile " + rdir + "/redis.pid --logfile " + rdir +
                      "/redis.log";
  if (std::system(start.c_str()) != 0) {
    std::printf("redis-server not available: no baseline\n");
    return 0;
  }
  for (int i = 0; i < 100 && !tcp_port_open(port); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::string cmd = "redis-benchmark -h 127.0.0.1 -p " + std::to_string(port) + " -t set,get -n " +
                    std::to_string(calls) +
                    " -c 1 -d 200 --precision 3 -q 2>&1; redis-benchmark -h 127.0.0.1 -p " +
                    std::to_string(port) + " -t get -n " + std::to_string(calls) +
                    " -c 1 -d 200 --precision 3 2>&1 | grep -A2 'latency summary'";
  std::printf("baseline redis-benchmark GET (-c 1, 200-byte values):\n");
  std::fflush(stdout);
  // The summary's header line ("avg min p50 p95 p99 max") is followed by the figures in ms.
  double redis_p99 = 0;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char line[4096];
    bool figures_next = false;
    while (std::fgets(line, sizeof line, p)) {
      std::fputs(line, stdout);
      double avg, mn, p50, p95, p99;
      if (figures_next &&
          std::sscanf(line, "%lf %lf %lf %lf %lf", &avg, &mn, &p50, &p95, &p99) == 5)
        redis_p99 = p99;
      figures_next = std::strstr(line, "p99") != nullptr;
    }
    ::pclose(p);
  }
  if (redis_p99 > 0)
    std::printf(
        "  RATIO read p99 / Redis GET p99: 1 airport %.2f, 1 route %.2f (goal <= 2.5; Redis p99 "
        "%.3f ms)\n",
        airport.p99 / redis_p99, route.p99 / redis_p99, redis_p99);
  (void)std::system(("kill $(cat " + rdir + "/redis.pid)").c_str());
  (*nd)->stop();
  return 0;
}
