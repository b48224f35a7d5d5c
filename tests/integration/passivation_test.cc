// With a tiny idle timeout every entity actor passivates, and comes back with equal values.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "test_support.h"

namespace tessera::test {
namespace {

TEST(Passivation, IdleEntitiesPassivateAndReactivateWithEqualValues) {
  temp_dir dir;
  node_harness h(dir.path, /*entity_idle_ms=*/300);
  ASSERT_TRUE(h.n);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + h.rpc() + " --stream flights " + slice_path(), &out),
            0)
      << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size()), 2 * slice().size());

  auto c = open_client(h.rpc());
  uint64_t active = 1, passive = 0;
  std::string status_error;
  eventually(
      [&] {
        auto st = c->status();
        if (!st) {
          status_error = failure_text(st);
          return true;
        }
        active = passive = 0;
        for (auto s : st->get().getShards()) {
          active += s.getEntitiesActive();
          passive += s.getEntitiesPassivated();
        }
        return active == 0;
      },
      std::chrono::seconds(60));
  ASSERT_EQ(status_error, "");
  EXPECT_EQ(active, 0u) << "entities still active 60 s after the ingest (idle timeout 300 ms)";
  std::set<std::string> entities;
  for (auto& f : slice())
    entities.insert(f.origin), entities.insert(f.origin + "-" + f.destination);
  EXPECT_EQ(passive, entities.size());
  // Reading reactivates from RocksDB and serves the same values.
  EXPECT_EQ(compare_all(h.rpc(), slice(), 0), 0u);
}

TEST(Restart, CleanStopAndStartKeepsEveryValueAndAppliesNewEventsOnce) {
  temp_dir dir;
  const auto& all = slice();
  std::vector<flight> first(all.begin(), all.begin() + all.size() / 2),
      second(all.begin() + all.size() / 2, all.end());
  write_flights_csv(dir.path + "/first.csv", first);
  write_flights_csv(dir.path + "/second.csv", second);
  {
    node_harness h(dir.path);
    ASSERT_TRUE(h.n);
    std::string out;
    ASSERT_EQ(
        run_cli("ingest --quiet --rpc " + h.rpc() + " --stream flights " + dir.path + "/first.csv",
                &out),
        0)
        << out;
    ASSERT_EQ(wait_applied(h.rpc(), 2 * first.size()), 2 * first.size());
  }  // clean stop: the next start keeps the consumers (nothing delivered beyond what was applied)
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  EXPECT_EQ(compare_all(h.rpc(), first, 0), 0u);
  std::string out;
  ASSERT_EQ(
      run_cli("ingest --quiet --rpc " + h.rpc() + " --stream flights " + dir.path + "/second.csv",
              &out),
      0)
      << out;
  EXPECT_EQ(wait_applied(h.rpc(), 2 * all.size()), 2 * all.size());
  EXPECT_EQ(compare_all(h.rpc(), all, 0), 0u);
}

}  // namespace
}  // namespace tessera::test
