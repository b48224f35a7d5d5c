// With a tiny idle timeout every entity actor passivates, and comes back with equal values.
#include <gtest/gtest.h>

#include <thread>

#include "test_support.h"

namespace tessera::test {
namespace {

TEST(Passivation, IdleEntitiesPassivateAndReactivateWithEqualValues) {
  temp_dir dir;
  node_harness h(dir.path, /*entity_idle_ms=*/300);
  ASSERT_TRUE(h.n);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + h.rpc() + " --stream flights " + slice_path(), &out), 0) << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size()), 2 * slice().size());

  capnp::EzRpcClient client(h.rpc());
  auto gw = client.getMain<wire::Gateway>();
  uint64_t active = 1, passive = 0;
  for (int i = 0; i < 100 && active > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto st = gw.statusRequest().send().wait(client.getWaitScope());
    active = passive = 0;
    for (auto s : st.getStatus().getShards()) {
      active += s.getEntitiesActive();
      passive += s.getEntitiesPassivated();
    }
  }
  EXPECT_EQ(active, 0u);
  std::set<std::string> entities;
  for (auto& f : slice()) entities.insert(f.origin), entities.insert(f.origin + "-" + f.destination);
  EXPECT_EQ(passive, entities.size());
  // Reading reactivates from RocksDB and serves the same values.
  EXPECT_EQ(compare_all(h.rpc(), slice(), 0), 0u);
}

}  // namespace
}  // namespace tessera::test
