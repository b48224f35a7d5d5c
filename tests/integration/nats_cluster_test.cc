// The local development cluster (cluster/local-cluster.sh): a 3-server NATS cluster with
// JetStream replicas = 3 and two Tessera nodes. One NATS server is killed in the middle of an
// ingest: nothing is lost, every value read through either node equals the reference.
#include <gtest/gtest.h>

#include <thread>

#include "test_support.h"

namespace tessera::test {
namespace {

TEST(NatsCluster, LosingOneOfThreeServersLosesNothing) {
  temp_dir dir;
  std::string script = std::string("TESSERA_CLUSTER_DIR=") + dir.path + " TESSERA_BIN=" + TSR_BINARY + " bash " + TSR_SOURCE_DIR +
                       "/cluster/local-cluster.sh ";
  ASSERT_EQ(std::system((script + "up --nodes 2 >/dev/null").c_str()), 0);
  std::vector<std::string> rpcs{"127.0.0.1:7401", "127.0.0.1:7402"};
  EXPECT_GE(wait_all_served(rpcs[0], 64, 60, "", 2), 0);
  std::thread ingest([&] {
    std::string out;
    // The client goes through node 1; its calls may fail while NATS fails over: retry (the
    // batch ids make a re-run count nothing twice).
    for (int i = 0; i < 5; ++i)
      if (run_cli("ingest --quiet --batch 500 --rpc " + rpcs[0] + " --stream flights " + slice_path(), &out) == 0) break;
  });
  for (int i = 0; i < 300 && cluster_applied(rpcs).applied < 15000; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(std::system((script + "kill-nats 2").c_str()), 0);
  ingest.join();
  EXPECT_EQ(wait_cluster_applied(rpcs, 2 * slice().size(), 120), 2 * slice().size());
  for (auto& rpc : rpcs) EXPECT_EQ(compare_all(rpc, slice(), 0), 0u) << "reading through " << rpc;
  if (HasFailure()) std::system(("tail -n 20 " + dir.path + "/node1.log " + dir.path + "/node2.log").c_str());
  std::system((script + "down >/dev/null").c_str());
}

}  // namespace
}  // namespace tessera::test
