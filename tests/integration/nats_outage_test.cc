// The node's NATS server dies (SIGKILL) and comes back: reads keep being answered from the
// node's own state meanwhile, and events published after the restart are applied.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "test_support.h"

namespace tessera::test {
namespace {

TEST(NatsOutage, ReadsContinueAndIngestCatchesUpAfterRestart) {
  temp_dir dir;
  std::string first = dir.path + "/first.csv", second = dir.path + "/second.csv";
  std::string split = "gzip -dc " + slice_path() + " | awk -v f=" + first + " -v s=" + second +
                      " 'NR==1{print > f; print > s; next} NR<=16000{print > f; next} {print > s}'";
  ASSERT_EQ(std::system(split.c_str()), 0);
  node_process n(dir.path + "/node");
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + n.rpc() + " --stream flights " + first, &out), 0)
      << out;
  ASSERT_EQ(wait_applied(n.rpc(), 2 * 15999), 2u * 15999) << n.log_tail();
  std::string before;
  ASSERT_EQ(run_cli("features --json --rpc " + n.rpc() + " airport_delay ATL ORD", &before), 0)
      << before;

  int pid = embedded_nats_pid(dir.path + "/node");
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  // Right after the kill, and while the node restarts its server, reads are served.
  for (int i = 0; i < 5; ++i) {
    std::string now;
    EXPECT_EQ(run_cli("features --json --rpc " + n.rpc() + " airport_delay ATL ORD", &now), 0)
        << now;
    EXPECT_EQ(now, before);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The server is back (restarted by the node, same port and storage): ingest resumes.
  int code = 1;
  eventually(
      [&] {
        return (code = run_cli("ingest --quiet --rpc " + n.rpc() + " --stream flights " + second,
                               &out)) == 0;
      },
      std::chrono::seconds(120), std::chrono::milliseconds(200));
  ASSERT_EQ(code, 0) << "ingest still failing 120 s after the NATS server was killed: " << out
                     << n.log_tail();
  EXPECT_EQ(wait_applied(n.rpc(), 2 * slice().size()), 2 * slice().size());
  EXPECT_EQ(compare_all(n.rpc(), slice(), 0), 0u) << n.log_tail();
}

}  // namespace
}  // namespace tessera::test
