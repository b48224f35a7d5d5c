// Inference on three nodes (processes) over one NATS server: predictions through every node for
// label entities of every shard, scored on the owner; v2 promoted and rolled back under load from
// four clients without a failed request or a call mixing versions; a node SIGKILLed under load
// gives only retryable errors until its shards have moved, then every prediction succeeds.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "hash.h"
#include "nats_server.h"
#include "serving_support.h"

namespace tessera::test {
namespace {

using clock_type = std::chrono::steady_clock;

// One departure per shard of the label entity (route), from the test period.
std::vector<flight> one_per_shard() {
  std::map<uint32_t, flight> by_shard;
  for (const flight& f : slice())
    if (f.time >= kJan8 && f.time < kJan12)
      by_shard.emplace(shard_of(f.origin + "-" + f.destination, 64), f);
  std::vector<flight> out;
  for (auto& [sh, f] : by_shard) out.push_back(f);
  return out;
}

// The owner of every shard, by shard number, as `rpc` sees the map.
std::vector<std::string> owners(const std::string& rpc) {
  std::vector<std::string> out;
  auto st = open_client(rpc)->status();
  if (!st) return out;
  for (auto o : (*st)->getShardOwners()) out.push_back(o);
  return out;
}

struct load_result {
  std::atomic<uint64_t> calls{0};
  uint64_t examples = 0;
  std::map<std::string, uint64_t> errors;  // "[code] message" -> count
  std::set<uint32_t> versions;
  uint64_t mixed_calls = 0;  // calls whose predictions came from more than one version
  // Per node: when each version was first seen in an answer through it.
  std::map<std::string, std::map<uint32_t, clock_type::time_point>> first_seen;
};

// Four clients, each on a node of `rpcs` in turn, predicting 8 departures per call until `stop`.
void run_load(const std::vector<std::string>& rpcs, const std::vector<flight>& fs,
              std::atomic<bool>& stop, load_result& out) {
  std::mutex mu;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      const std::string rpc = rpcs[static_cast<size_t>(t) % rpcs.size()];
      auto c = open_client(rpc);
      for (size_t i = static_cast<size_t>(t) * 8; !stop; i += 32) {
        std::vector<client::example> ex;
        for (size_t k = 0; k < 8; ++k) ex.push_back(departure(fs[(i + k) % fs.size()]));
        auto r = c->predict("late_mlp", ex);
        std::lock_guard<std::mutex> l(mu);
        ++out.calls;
        if (!r) {
          ++out.errors[failure_text(r)];
          continue;
        }
        std::set<uint32_t> in_call;
        for (auto& p : *r) {
          ++out.examples;
          if (!p.ok()) {
            ++out.errors["[" + std::string(errc_name(p.code)) + "] " + p.error];
            continue;
          }
          in_call.insert(p.version);
          out.versions.insert(p.version);
          out.first_seen[rpc].emplace(p.version, clock_type::now());
        }
        out.mixed_calls += in_call.size() > 1;
      }
    });
  for (auto& t : clients) t.join();
}

// The load's thread, stopped and joined however the test ends.
struct load_thread {
  std::atomic<bool>& stop;
  std::thread t;
  ~load_thread() { finish(); }
  void finish() {
    stop = true;
    if (t.joinable()) t.join();
  }
};

TEST(InferenceCluster, ThreeNodesPredictEveryShardSwitchVersionsUnderLoadAndSurviveASigkill) {
  temp_dir dir;
  auto n = embedded_nats::start(dir.path + "/nats-data");
  ASSERT_TRUE(n) << n.error_message();
  // With rules that read a feature: answers scored on another node are decided on the entry
  // node from the vector that node returns (and strips when the caller did not ask for it).
  const std::string defs = slice_example_definitions(
      dir.path, "serving", true, "",
      R"(rules = { { name = "thin", when = "route_delay.count_7d < 2", decision = "unknown" },
                   { name = "late", when = "score >= 0.3", decision = "late" },
                   { name = "default", decision = "on_time" } },)");
  std::map<std::string, std::unique_ptr<node_process>> nodes;
  for (auto id : {"a", "b", "c"})
    nodes[id] = std::make_unique<node_process>(dir.path + "/" + id, (*n)->url(), id, "", defs);
  std::vector<std::string> rpcs;
  for (auto& [id, p] : nodes) rpcs.push_back(p->rpc());
  ASSERT_GE(wait_all_served(rpcs[0], 64, 60, "", 3), 0);
  std::string out;
  ASSERT_EQ(
      run_cli("ingest --quiet --replay --rpc " + rpcs[0] + " --stream flights " + slice_path(),
              &out),
      0)
      << out;
  ASSERT_EQ(wait_cluster_applied(rpcs, 2 * slice().size()), 2 * slice().size());
  ASSERT_EQ(run_cli("train late_mlp --quiet --rpc " + rpcs[1], &out), 0) << out;
  ASSERT_EQ(run_cli("train late_mlp --quiet --rpc " + rpcs[2], &out), 0) << out;
  auto admin = open_client(rpcs[0]);
  ASSERT_TRUE(admin->promote_model("late_mlp", 1, "production"));
  for (auto& rpc : rpcs) {
    auto c = open_client(rpc);
    ASSERT_TRUE(serves(*c, "late_mlp", 1)) << rpc;
  }

  // Through every node, one departure per shard: each is scored by its shard's owner.
  const std::vector<flight> fs = one_per_shard();
  ASSERT_EQ(fs.size(), 64u);
  const auto map = owners(rpcs[0]);
  ASSERT_EQ(map.size(), 64u);
  for (auto& rpc : rpcs) {
    std::vector<client::example> ex;
    for (auto& f : fs) ex.push_back(departure(f));
    auto r = open_client(rpc)->predict("late_mlp", ex);
    ASSERT_TRUE(r) << failure_text(r);
    std::set<std::string> scored_by;
    for (size_t i = 0; i < fs.size(); ++i) {
      const auto& p = (*r)[i];
      ASSERT_TRUE(p.ok()) << rpc << ": " << p.error;
      EXPECT_EQ(p.node, map[shard_of(fs[i].origin + "-" + fs[i].destination, 64)]);
      scored_by.insert(p.node);
    }
    EXPECT_EQ(scored_by.size(), 3u);
    client::predict_options with_vector;
    with_vector.return_vector = true;
    auto v = open_client(rpc)->predict("late_mlp", ex, with_vector);
    ASSERT_TRUE(v) << failure_text(v);
    for (size_t i = 0; i < fs.size(); ++i) {
      const auto& p = (*r)[i];
      EXPECT_TRUE(p.features.empty()) << "a vector nobody asked for";
      double count = NAN;
      for (auto& f : (*v)[i].features)
        if (f.name == "route_delay.count_7d") count = f.value;
      const std::string want = count < 2 ? "unknown" : p.score >= 0.3 ? "late" : "on_time";
      EXPECT_EQ(p.decision, want) << rpc << " row " << i << " scored on " << p.node;
      EXPECT_EQ((*v)[i].decision, want) << rpc << " row " << i;
    }
  }

  // Promote v2, then roll back, under load: no failed request, no call mixing versions.
  {
    std::atomic<bool> stop{false};
    load_result load;
    load_thread clients{stop, std::thread([&] { run_load(rpcs, fs, stop, load); })};
    ASSERT_TRUE(eventually([&] { return load.calls > 10; }, std::chrono::seconds(30)));
    const auto promoted = clock_type::now();
    ASSERT_TRUE(admin->promote_model("late_mlp", 2, "production"));
    auto seen_everywhere = [&](uint32_t v) {
      return eventually(
          [&] {
            for (auto& rpc : rpcs) {
              auto c = open_client(rpc);
              auto r = c->predict("late_mlp", {departure(fs[0])});
              if (!r || !(*r)[0].ok() || (*r)[0].version != v) return false;
            }
            return true;
          },
          std::chrono::seconds(30), std::chrono::milliseconds(20));
    };
    ASSERT_TRUE(seen_everywhere(2));
    const double switch_s = std::chrono::duration<double>(clock_type::now() - promoted).count();
    const auto rolled = clock_type::now();
    auto back = admin->rollback_model("late_mlp");
    ASSERT_TRUE(back) << failure_text(back);
    EXPECT_EQ(*back, 1u);
    ASSERT_TRUE(seen_everywhere(1));
    const double back_s = std::chrono::duration<double>(clock_type::now() - rolled).count();
    clients.finish();
    std::cerr << "under load: " << load.calls.load() << " calls, " << load.examples
              << " predictions; every node answered with v2 " << switch_s
              << " s after the promotion and with v1 " << back_s << " s after the rollback\n";
    EXPECT_GT(load.calls, 20u);
    EXPECT_TRUE(load.errors.empty()) << load.errors.begin()->first;
    EXPECT_EQ(load.mixed_calls, 0u);
    EXPECT_EQ(load.versions, (std::set<uint32_t>{1, 2}));
    // DESIGN: nodes converge within 2 s; checked loosely here (a shared 2-core machine), the
    // figures are printed above.
    EXPECT_LT(switch_s, 10);
    EXPECT_LT(back_s, 10);
  }

  // SIGKILL of a node under load: only retryable errors meanwhile, then everything succeeds.
  {
    std::atomic<bool> stop{false};
    load_result load;
    std::vector<std::string> survivors = {rpcs[0], rpcs[1]};  // a and b; c dies
    load_thread clients{stop, std::thread([&] { run_load(survivors, fs, stop, load); })};
    nodes["c"]->kill(SIGKILL);
    ASSERT_GE(wait_all_served(rpcs[0], 64, 60, "c", 2), 0);
    bool all_ok = eventually(
        [&] {
          for (auto& rpc : survivors) {
            std::vector<client::example> ex;
            for (auto& f : fs) ex.push_back(departure(f));
            auto r = open_client(rpc)->predict("late_mlp", ex);
            if (!r) return false;
            for (auto& p : *r)
              if (!p.ok()) return false;
          }
          return true;
        },
        std::chrono::seconds(60), std::chrono::milliseconds(200));
    clients.finish();
    EXPECT_TRUE(all_ok) << "predictions still failing 60 s after the shards moved";
    std::cerr << "SIGKILL under load: " << load.calls.load() << " calls, " << load.errors.size()
              << " kinds of error\n";
    for (auto& [e, count] : load.errors) {
      std::cerr << "  " << count << " x " << e << "\n";
      // Errors a client may repeat a prediction on: the owner moving or gone (retryable,
      // unavailable), a full queue (overloaded), or reads that waited for a moving shard past
      // the call's deadline (deadline: predictions are safe to repeat). Never invalid or
      // internal, never a wrong answer.
      EXPECT_TRUE(e.rfind("[retryable]", 0) == 0 || e.rfind("[unavailable]", 0) == 0 ||
                  e.rfind("[overloaded]", 0) == 0 || e.rfind("[deadline]", 0) == 0)
          << e;
    }
  }
}

}  // namespace
}  // namespace tessera::test
