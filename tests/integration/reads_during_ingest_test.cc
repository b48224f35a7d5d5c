// Reads while events stream in must never see a window that the in-flight batch has already
// pruned: at the returned as-of t, a busy airport's count must lie between the brute-force
// counts of events strictly before t and up to t (events at exactly t may still be in flight).
// Calls of 4000 rows put more than a day of event time in one message, so an applied batch can
// move an entity's state (and its pruning) a day ahead of the last commit.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "test_support.h"

namespace tessera::test {
namespace {

TEST(ReadsDuringIngest, DefaultReadsNeverLoseEventsThatWereApplied) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  (void)slice();  // load the reference before the clock starts
  std::atomic<bool> done{false};
  std::thread ingest([&] {
    std::string out;
    EXPECT_EQ(run_cli("ingest --quiet --batch 4000 --window 1 --rpc " + h.rpc() + " --stream flights " + slice_path(), &out), 0) << out;
    done = true;
  });
  const std::vector<std::string> airports{"ORD", "ATL", "DFW", "LAX", "DEN", "PHX"};
  const int64_t day = 86400LL * 1000000;
  size_t checked = 0, bad = 0;
  capnp::EzRpcClient client(h.rpc());
  auto gw = client.getMain<wire::Gateway>();
  size_t loops = 0;
  // Read until the CLI is done and the node has applied everything (it drains a backlog).
  while (!done || h.n->events_applied() < 2 * slice().size()) {
    ++loops;
    auto req = gw.getFeaturesRequest();
    req.setView("airport_delay");
    auto el = req.initEntities(static_cast<unsigned>(airports.size()));
    for (size_t i = 0; i < airports.size(); ++i) el.set(static_cast<unsigned>(i), airports[i]);
    auto resp = req.send().wait(client.getWaitScope());
    for (auto v : resp.getVectors()) {
      int64_t t = v.getAsOf();
      if (t == 0) continue;
      int64_t lo = 0, hi = 0;  // events in (t - 24h, t) and in (t - 24h, t]
      for (auto& f : slice()) {
        if (f.origin != v.getEntity().cStr() || f.time <= t - day || f.time > t) continue;
        ++hi;
        if (f.time < t) ++lo;
      }
      int64_t got = -1;
      for (auto fv : v.getValues())
        if (std::string(fv.getName().cStr()) == "count_24h") got = fv.getValue().getInt();
      ++checked;
      if (got < lo || got > hi) {
        if (++bad < 5) ADD_FAILURE() << v.getEntity().cStr() << " at " << t << ": count_24h " << got << " not in [" << lo << ", " << hi << "]";
      }
    }
  }
  ingest.join();
  std::fprintf(stderr, "reads checked during ingest: %zu in %zu loops\n", checked, loops);
  EXPECT_GT(checked, 0u);
  EXPECT_EQ(bad, 0u);
}

}  // namespace
}  // namespace tessera::test
