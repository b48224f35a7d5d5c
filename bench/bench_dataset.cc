// Point-in-time dataset build over the flights log: `tessera dataset build late` against a node
// that replayed N flights (default all 3M), beside a brute-force single-threaded join of the
// same examples in this process (per-entity sorted arrays, a window scan per example). The
// build runs three times on the same node: the first reads the airport logs, the others hit
// the node's cache of indexed logs.
//   bench_dataset [rows=3000000] [data_dir=data/bench-dataset-node]
// The node's data dir is kept: a second run with the same rows skips the replay.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "bench_common.h"
#include "tessera/client.h"
#include "time_util.h"

using namespace tessera;
using namespace tessera::bench;

namespace {

struct event {
  int64_t arrival;
  double delay;
};

// The node's status in one attempt (the callers poll on their own).
result<client::owned<wire::NodeStatus>> status_of(const std::string& rpc) {
  client::options o;
  o.address = rpc;
  o.retry.attempts = 1;
  return client::connection::open(std::move(o))->status();
}

// Events applied as persisted by the shards (survives restarts, unlike the node's counter).
uint64_t applied(const std::string& rpc) {
  auto st = status_of(rpc);
  if (!st) return 0;
  uint64_t sum = 0;
  for (auto s : st->get().getShards()) sum += s.getEventsApplied();
  return sum;
}

bool port_answers(const std::string& rpc) {
  return status_of(rpc).ok();
}

// The CLI's own figure: from its first request to the last byte written (no process start).
double manifest_seconds(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const size_t at = text.find("\"build_seconds\":");
  return at == std::string::npos ? 0 : std::atof(text.c_str() + at + 16);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t rows = argc > 1 ? std::stoul(argv[1]) : 3'000'000;
  const std::string dir =
      argc > 2 ? argv[2]
               : std::string(TSR_SOURCE_DIR) + "/data/bench-dataset-node-" + std::to_string(rows);
  const std::string bin = TSR_BINARY, rpc = "127.0.0.1:7491";
  auto loaded = load_flights(rows);
  if (!loaded) return std::fprintf(stderr, "%s\n", loaded.error_message().c_str()), 2;
  const std::vector<flight> flights = std::move(*loaded);
  std::printf("bench_dataset: %zu flights from %s\n", flights.size(), flights_path()->c_str());

  // The input file for the CLI replay (the first `rows` rows of the data).
  std::filesystem::create_directories(dir);
  const std::string input = dir + "/flights.csv";
  if (!std::filesystem::exists(input)) {
    std::ofstream out(input);
    out << "date,delay,distance,origin,destination\n";
    for (auto& f : flights)
      out << format_timestamp(f.time) << ',' << f.delay << ',' << f.distance << ',' << f.origin
          << ',' << f.destination << '\n';
  }
  std::string node_cmd = bin + " node --data-dir " + dir + "/node --rpc " + rpc +
                         " --definitions " + TSR_SOURCE_DIR +
                         "/examples/flights/flights.lua --log-level warn >> " + dir +
                         "/node.log 2>&1 & echo $! > " + dir + "/node.pid";
  if (port_answers(rpc)) {
    std::fprintf(stderr, "a node already answers on %s: stop it first\n", rpc.c_str());
    return 2;
  }
  if (std::system(node_cmd.c_str()) != 0) return 2;
  for (int i = 0; i < 300 && !port_answers(rpc); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!port_answers(rpc)) {
    std::fprintf(stderr, "the node did not start; see %s/node.log\n", dir.c_str());
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  // Replayed once per data dir, marked by a file: a node that just started may report fewer
  // applied events than it holds (shards still loading), and a second replay past the
  // de-duplication window would apply everything twice.
  const std::string marker = dir + "/replayed";
  if (!std::filesystem::exists(marker)) {
    std::printf("replaying %zu flights (tessera ingest --replay)...\n", flights.size());
    if (std::system((bin + " ingest --quiet --replay --rpc " + rpc + " --stream flights " + input)
                        .c_str()) != 0)
      return 2;
    std::ofstream(marker) << flights.size() << "\n";
  }
  // Every event applied (each flight feeds two entity kinds) before the build starts.
  while (applied(rpc) < 2 * flights.size())
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::printf("node ready, every event applied (%.1f s)\n", seconds_since(t0));

  // 1. Tessera: the CLI asks each shard's owner for its part (two in flight). Three builds on
  // the same node: the first reads and indexes every airport's log (views on another entity
  // kind than the label's are cached per entity while their shard applies nothing new); the
  // next ones find them in the cache, as a second dataset or model on the same data would.
  const std::string out = dir + "/late.csv";
  double tessera_s[3] = {}, build_s[3] = {};
  int rc = 0;
  for (int round = 0; round < 3 && rc == 0; ++round) {
    t0 = std::chrono::steady_clock::now();
    rc = std::system((bin + " dataset build late --quiet --rpc " + rpc + " -o " + out).c_str());
    tessera_s[round] = seconds_since(t0);
    build_s[round] = manifest_seconds(out + ".manifest.json");
  }
  // Stopped and waited for, so that a second run right after finds the port free.
  std::system(("pid=$(cat " + dir +
               "/node.pid); kill $pid; while kill -0 $pid 2>/dev/null; do sleep 0.1; done")
                  .c_str());
  if (rc != 0) return 2;

  // 2. Brute force, single thread: per-entity arrays sorted by arrival, a window scan per feature.
  t0 = std::chrono::steady_clock::now();
  std::unordered_map<std::string, std::vector<event>> by_origin, by_route;
  for (auto& f : flights) {
    const int64_t arrival = std::llround(static_cast<double>(f.time) +
                                         60000000.0 * (30.0 + f.distance / 8.0 + f.delay));
    by_origin[f.origin].push_back({arrival, f.delay});
    by_route[f.origin + "-" + f.destination].push_back({arrival, f.delay});
  }
  for (auto* m : {&by_origin, &by_route})
    for (auto& [k, v] : *m)
      std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.arrival < b.arrival; });
  const int64_t h = 3600LL * 1000000;
  double checksum = 0;
  auto window = [](const std::vector<event>& v, int64_t t, int64_t w, auto&& fn) {
    auto lo = std::upper_bound(v.begin(), v.end(), t - w,
                               [](int64_t x, const event& e) { return x < e.arrival; });
    for (auto it = lo; it != v.end() && it->arrival <= t; ++it) fn(*it);
  };
  for (auto& f : flights) {
    const int64_t t = f.time;
    auto& o = by_origin[f.origin];
    int64_t n1 = 0, n24 = 0, late = 0;
    double s1 = 0, s24 = 0, mx = -1e300;
    window(o, t, h, [&](const event& e) { ++n1, s1 += e.delay; });
    window(o, t, 24 * h, [&](const event& e) {
      ++n24, s24 += e.delay, mx = std::max(mx, e.delay), late += e.delay > 15;
    });
    int64_t n7 = 0;
    double s7 = 0;
    window(by_route[f.origin + "-" + f.destination], t, 7 * 24 * h,
           [&](const event& e) { ++n7, s7 += e.delay; });
    checksum +=
        n1 + n24 + late + n7 + (n1 ? s1 / n1 : 0) + (n24 ? s24 / n24 + mx : 0) + (n7 ? s7 / n7 : 0);
  }
  const double brute_s = seconds_since(t0);
  // Two figures per build: the CLI's own (first request to manifest) and the whole process
  // (which adds the process start, the connection and the shard map).
  std::printf("\n%-56s %10s %12s %14s\n", "point-in-time join of every flight (node: 2 workers)",
              "seconds", "rows/s", "process rows/s");
  const char* names[3] = {"tessera dataset build, 1st (airport logs read, indexed)",
                          "tessera dataset build, 2nd (airport indexes cached)",
                          "tessera dataset build, 3rd"};
  for (int round = 0; round < 3; ++round)
    std::printf("%-56s %10.2f %12.0f %14.0f\n", names[round], build_s[round],
                build_s[round] > 0 ? flights.size() / build_s[round] : 0.0,
                flights.size() / tessera_s[round]);
  std::printf("%-56s %10.2f %12.0f\n", "brute force, 1 thread, in memory (no log, no RPC)", brute_s,
              flights.size() / brute_s);
  std::printf("(checksum %.6g; dataset %s)\n", checksum, out.c_str());
  return 0;
}
