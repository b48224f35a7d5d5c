// Cluster benchmarks on one machine (every process shares the same 2 cores, so this measures
// overhead, not scaling):
//   recovery  — SIGKILL one of 3 nodes, time until every shard is served again by the others
//               (the shard map names only live nodes and they serve all 8, the default); repeated.
//   ingest    — 1, 2 and 3 node processes apply the same pre-published flights (JetStream →
//               shards → RocksDB) from a fresh start; events/s until all are applied.
//   routing   — getFeatures for one airport through its owner vs through another node
//               (the request is forwarded over NATS request/reply).
//   snapshots — writing and reading a shard snapshot of the size the ingest produced.
//   bench_cluster [recovery_rounds=10] [ingest_events=300000]
#include <nats/nats.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "bench_common.h"
#include "cluster/snapshots.h"
#include "cluster/status_check.h"
#include "hash.h"
#include "nats_server.h"
#include "tessera/client.h"

using namespace tessera;
using namespace tessera::bench;
using clk = std::chrono::steady_clock;

namespace {

const std::string kDefs = TSR_SOURCE_DIR "/examples/flights/flights.lua";

struct proc {
  std::string id, dir;
  int port = 0;
  pid_t pid = -1;
  std::string rpc() const { return "127.0.0.1:" + std::to_string(port); }
};

void start(proc& p, const std::string& nats) {
  if (!p.port) p.port = find_free_port();
  std::filesystem::create_directories(p.dir);
  std::string cmd = std::string("exec ") + TSR_BINARY + " node --data-dir " + p.dir +
                    " --node-id " + p.id + " --rpc " + p.rpc() + " --nats " + nats +
                    " --definitions " + kDefs + " >>" + p.dir + "/node.log 2>&1";
  p.pid = ::fork();
  if (p.pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    ::_exit(127);
  }
  for (int i = 0; i < 600 && !tcp_port_open(p.port); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void kill9(proc& p) {
  if (p.pid <= 0) return;
  ::kill(p.pid, SIGKILL);
  ::waitpid(p.pid, nullptr, 0);
  p.pid = -1;
}

void stop(proc& p) {
  if (p.pid <= 0) return;
  ::kill(p.pid, SIGTERM);
  ::waitpid(p.pid, nullptr, 0);
  p.pid = -1;
}

// One attempt per call: the loops below poll on their own (a node may be down).
std::unique_ptr<client::connection> open_once(const std::string& rpc) {
  client::options o;
  o.address = rpc;
  o.retry.attempts = 1;
  return client::connection::open(std::move(o));
}

// Seconds until `rpc` reports every shard served by live members other than `gone`; -1 on timeout.
double wait_served(const std::string& rpc, const std::string& gone, double timeout_s = 60) {
  auto t0 = clk::now();
  while (seconds_since(t0) < timeout_s) {
    auto st = open_once(rpc)->status();  // an error: not served yet
    if (st && every_shard_served(st->get(), kDefaultShards, gone)) return seconds_since(t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

uint64_t applied(const std::vector<proc*>& nodes) {
  std::map<std::string, uint64_t> by;
  for (auto* n : nodes) {
    auto st = open_once(n->rpc())->status();
    if (!st) continue;  // not up yet
    for (auto s : st->get().getShards())
      by[std::string(s.getKind().cStr()) + std::to_string(s.getShard())] = std::max<uint64_t>(
          by[std::string(s.getKind().cStr()) + std::to_string(s.getShard())], s.getEventsApplied());
  }
  uint64_t t = 0;
  for (auto& [k, v] : by) t += v;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::stoi(argv[1]) : 10;
  size_t events = argc > 2 ? std::stoul(argv[2]) : 300000;
  std::string root = "/tmp/tessera-bench-cluster";
  std::filesystem::remove_all(root);
  auto nats = embedded_nats::start(root + "/nats");
  if (!nats) return std::fprintf(stderr, "%s\n", nats.error_message().c_str()), 2;
  std::string url = (*nats)->url();
  std::printf("bench_cluster: %u cores shared by nats-server and every node\n",
              std::thread::hardware_concurrency());

  // Recovery.
  {
    std::vector<proc> ps(3);
    for (int i = 0; i < 3; ++i) {
      ps[i].id = "r" + std::to_string(i);
      ps[i].dir = root + "/recovery/" + ps[i].id;
      start(ps[i], url);
    }
    wait_served(ps[0].rpc(), "");
    std::vector<double> rec;
    std::mt19937 rng(11);
    for (int r = 0; r < rounds; ++r) {
      size_t v = rng() % 3;
      size_t watcher = (v + 1) % 3;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      kill9(ps[v]);
      double t = wait_served(ps[watcher].rpc(), ps[v].id);
      rec.push_back(t);
      std::printf("  round %d: killed %s, every shard served again after %.2f s\n", r + 1,
                  ps[v].id.c_str(), t);
      start(ps[v], url);  // rejoins with its data dir; wait until the map has settled again
      wait_served(ps[watcher].rpc(), "");
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    auto s = summarize(rec);
    std::printf(
        "recovery (SIGKILL → every shard served again, 3 nodes, dead-after 1.5 s): p50=%.2f s "
        "max=%.2f s (n=%zu)\n",
        s.p50, s.max, s.n);
    for (auto& p : ps) stop(p);
  }

  // Ingest with 1, 2, 3 nodes from a fresh start on the same pre-published events.
  auto fs_loaded = load_flights(events);
  if (!fs_loaded) return std::fprintf(stderr, "%s\n", fs_loaded.error_message().c_str()), 2;
  std::vector<flight> fs = std::move(*fs_loaded);
  auto defs = definitions::load_file(kDefs);
  for (int n : {1, 2, 3}) {
    // A fresh stream each time: delete it through a bus, then republish.
    auto b = bus::connect({url, "bench-cluster"});
    if (!b) return std::fprintf(stderr, "%s\n", b.error_message().c_str()), 2;
    jsCtx* js = (*b)->jetstream();
    js_DeleteStream(js, "TSR_flights", nullptr, nullptr);
    js_DeleteKeyValue(js, "TSR_SHARDMAP");
    js_DeleteKeyValue(js, "TSR_NODES");
    js_DeleteKeyValue(js, "TSR_SNAPSHOTS");
    for (auto& s : (*defs)->streams()) (void)(*b)->ensure_stream(s);
    publish_flights(**b, **defs, fs, 0, fs.size(), 1000);
    std::vector<proc> ps(n);
    std::vector<proc*> ptrs;
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i) {
      ps[i].id = "i" + std::to_string(n) + "_" + std::to_string(i);
      ps[i].dir = root + "/ingest" + std::to_string(n) + "/" + ps[i].id;
      start(ps[i], url);
      ptrs.push_back(&ps[i]);
    }
    while (applied(ptrs) < 2 * fs.size() && seconds_since(t0) < 600)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    double secs = seconds_since(t0);
    std::printf(
        "ingest with %d node%s: %zu events (x2 entity kinds) applied in %.2f s from process start "
        "= %.0f events/s\n",
        n, n > 1 ? "s" : "", fs.size(), secs, fs.size() / secs);
    if (n == 3) {
      // Routing: one airport read through its owner and through another node.
      auto st = client::connection::open(ps[0].rpc())->status();
      if (!st) {
        std::fprintf(stderr, "status: %s\n", st.error_message().c_str());
        for (auto& q : ps) stop(q);
        return 2;
      }
      auto owners = st->get().getShardOwners();
      std::string key = "ATL";
      std::string owner = owners[shard_of(key, kDefaultShards)].cStr();
      proc* own = nullptr;
      proc* other = nullptr;
      for (auto& p : ps) (p.id == owner ? own : other) = &p;
      for (auto* p : {own, other}) {
        auto c = client::connection::open(p->rpc());
        std::vector<double> lat;
        for (int i = 0; i < 3000; ++i) {
          auto t = clk::now();
          auto r = c->features("airport_delay", {key});
          if (!r) {
            std::fprintf(stderr, "read: %s\n", r.error_message().c_str());
            for (auto& q : ps) stop(q);
            return 2;
          }
          lat.push_back(seconds_since(t) * 1e3);
        }
        print_stats(
            p == own ? "  read ATL through its owner (ms)" : "  read ATL through another node (ms)",
            summarize(lat), "ms");
      }
    }
    for (auto& p : ps) stop(p);
  }

  // Snapshots: write and read back blobs of 64 KiB, 1 MiB and 16 MiB through the store the
  // nodes use (JetStream chunks + KV manifest), replacing the previous one each time.
  {
    auto b = bus::connect({url, "bench-snap"});
    auto ss = snapshot_store::open((*b)->jetstream(), {});
    if (!ss) return std::fprintf(stderr, "%s\n", ss.error_message().c_str()), 2;
    for (size_t bytes : {size_t(64) << 10, size_t(1) << 20, size_t(16) << 20}) {
      std::string blob(bytes, 'x');
      for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 2654435761u >> 13);
      std::vector<double> w, r;
      for (int i = 0; i < 5; ++i) {
        snapshot_manifest m;
        m.shard = 1000;
        m.node = "bench";
        m.applied["x/y"] = static_cast<uint64_t>(i + 1) + bytes;
        auto t = clk::now();
        (void)(*ss)->save(m, blob);
        w.push_back(seconds_since(t) * 1e3);
        auto man = (*ss)->latest(1000);
        t = clk::now();
        auto got = (*ss)->fetch(**man);
        r.push_back(seconds_since(t) * 1e3);
        if (!got || got->size() != blob.size()) std::printf("  snapshot read failed\n");
      }
      auto sw = summarize(w), sr = summarize(r);
      std::printf(
          "snapshot of %6.0f KiB: write p50 %.1f ms max %.1f ms (%.0f MB/s); read+verify p50 %.1f "
          "ms max %.1f ms (%.0f MB/s)\n",
          bytes / 1024.0, sw.p50, sw.max, bytes / 1e3 / sw.p50, sr.p50, sr.max,
          bytes / 1e3 / sr.p50);
    }
  }
  return 0;
}
