// Memory per active entity (issue 18, goal 4: <= 2 KB including window state): a node in this
// process applies one synthetic flight for each of N airports and N routes (2N entities, every
// one with its windows' state), and the process's resident memory is read before and after.
//   bench_memory [airports=1000000] [shards=8, the default] [entity_idle_ms=300000]
// With a short entity_idle_ms it also reads RSS once the shards have passivated every entity
// (after malloc_trim): what the entities' state holds, against the stores' part.
// Generated in chunks of 100k so the generator holds little; RSS from /proc/self/statm, after
// every event is applied and the node has been idle for 2 s.
#include <malloc.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "bench_common.h"
#include "nats_server.h"
#include "tessera/node.h"

using namespace tessera;
using namespace tessera::bench;
using clk = std::chrono::steady_clock;

namespace {

double rss_mib() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1048576.0;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::stoul(argv[1]) : 1000000;
  const uint32_t shards = argc > 2 ? static_cast<uint32_t>(std::stoul(argv[2])) : kDefaultShards;
  const std::string dir = "/tmp/tessera-bench-memory";
  std::filesystem::remove_all(dir);
  auto defs = definitions::load_file(TSR_SOURCE_DIR "/examples/flights/flights.lua");
  if (!defs) return std::fprintf(stderr, "%s\n", defs.error_message().c_str()), 2;
  auto nats = embedded_nats::start(dir);
  if (!nats) return std::fprintf(stderr, "%s\n", nats.error_message().c_str()), 2;
  node_config cfg = flights_node_config(dir + "/node", (*nats)->url(), shards);
  const int64_t idle_ms = argc > 3 ? std::stoll(argv[3]) : 300000;
  cfg.entity_idle_ms = idle_ms;
  auto nd = node::start(cfg);
  if (!nd) return std::fprintf(stderr, "%s\n", nd.error_message().c_str()), 2;
  auto b = bus::connect({(*nats)->url(), "bench"});
  if (!b) return std::fprintf(stderr, "%s\n", b.error_message().c_str()), 2;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double before = rss_mib();
  std::printf("bench_memory: %zu airports + %zu routes, %u shards; node idle RSS %.1f MiB\n", n, n,
              shards, before);
  std::fflush(stdout);
  const int64_t t0 = 988675200000000;  // 2001-05-01T00:00:00Z
  const auto started = clk::now();
  for (size_t at = 0; at < n; at += 100000) {
    std::vector<flight> chunk;
    for (size_t i = at; i < std::min(n, at + 100000); ++i)
      chunk.push_back({t0 + static_cast<int64_t>(i) * 1000, static_cast<double>(i % 60),
                       100.0 + static_cast<double>(i % 3000), "A" + std::to_string(i),
                       "B" + std::to_string(i)});
    publish_flights(**b, **defs, chunk, 0, chunk.size(), 1000, shards);
  }
  for (auto last = clk::now(); (*nd)->events_applied() < 2 * n && seconds_since(started) < 1200;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (seconds_since(last) >= 10) {
      last = clk::now();
      std::printf("  %.0f s: %llu of %zu applied, RSS %.1f MiB\n", seconds_since(started),
                  static_cast<unsigned long long>((*nd)->events_applied()), 2 * n, rss_mib());
      std::fflush(stdout);
    }
  }
  const double applied_s = seconds_since(started);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double after = rss_mib();
  const double per = (after - before) * 1048576.0 / static_cast<double>(2 * n);
  std::printf("applied %llu entity events in %.1f s; RSS %.1f MiB (+%.1f MiB)\n",
              static_cast<unsigned long long>((*nd)->events_applied()), applied_s, after,
              after - before);
  std::printf("  memory per active entity: %.0f bytes (goal <= 2048), %zu entities\n", per, 2 * n);
  // What malloc holds for the program (in use) against what it keeps (arenas' free space):
  // tells live data from fragmentation.
  const struct mallinfo2 mi = mallinfo2();
  std::printf(
      "  malloc: %.1f MiB in use (%.0f bytes per entity), %.1f MiB free in its arenas, "
      "%.1f MiB mapped\n",
      static_cast<double>(mi.uordblks + mi.hblkhd) / 1048576.0,
      static_cast<double>(mi.uordblks + mi.hblkhd) / static_cast<double>(2 * n),
      static_cast<double>(mi.fordblks) / 1048576.0, static_cast<double>(mi.hblkhd) / 1048576.0);
  if (idle_ms < 60000) {  // entities are passivated after idle_ms; what stays is the stores' part
    std::this_thread::sleep_for(std::chrono::milliseconds(2 * idle_ms + 3000));
    malloc_trim(0);
    const double idle = rss_mib();
    std::printf(
        "  after every entity was passivated (idle %lld ms) and malloc_trim: RSS %.1f MiB "
        "(+%.1f MiB over the idle node = %.0f bytes per entity)\n",
        static_cast<long long>(idle_ms), idle, idle - before,
        (idle - before) * 1048576.0 / static_cast<double>(2 * n));
    const struct mallinfo2 mi2 = mallinfo2();
    std::printf("  malloc then: %.1f MiB in use (%.0f bytes per entity)\n",
                static_cast<double>(mi2.uordblks + mi2.hblkhd) / 1048576.0,
                static_cast<double>(mi2.uordblks + mi2.hblkhd) / static_cast<double>(2 * n));
  }
  (*nd)->stop();
  return 0;
}
