// SIGKILL the node in the middle of an ingest, restart it on the same data dir, finish the
// ingest: final values equal the reference and every event was applied exactly once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "nats_server.h"
#include "test_support.h"

namespace tessera::test {
namespace {

pid_t start_node(const std::string& dir, int port) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string log = dir + "/node.log";
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::string rpc = "127.0.0.1:" + std::to_string(port);
    ::execl(TSR_BINARY, "tessera", "node", "--data-dir", dir.c_str(), "--rpc", rpc.c_str(),
            "--definitions", flights_definitions().c_str(), nullptr);
    ::_exit(127);
  }
  eventually([&] { return tcp_port_open(port); }, std::chrono::seconds(60),
             std::chrono::milliseconds(50));
  return pid;
}

TEST(Crash, SigkillMidIngestLosesNothingAndCountsNothingTwice) {
  temp_dir dir;
  int port = find_free_port();
  std::string rpc = "127.0.0.1:" + std::to_string(port);
  pid_t node = start_node(dir.path, port);
  ASSERT_TRUE(tcp_port_open(port));

  // Ingest in small calls from a background process, and kill the node part-way.
  std::string cmd = std::string(TSR_BINARY) + " ingest --quiet --batch 300 --window 1 --rpc " +
                    rpc + " --stream flights " + slice_path() + " >/dev/null 2>&1";
  std::atomic<bool> ingest_done{false};
  std::thread ingest([&] {
    (void)std::system(cmd.c_str());
    ingest_done = true;
  });
  // Poll with a fresh connection each time: an RPC error must not abort the test with the ingest
  // thread still running (seen once as "terminate called without an active exception").
  uint64_t applied = 0;
  bool reached = eventually(
      [&] {
        auto st = open_client(rpc)->status();
        if (st)
          applied = st->get().getEventsApplied();
        else  // Not fatal here: what the node applied is checked after the restart, with its log.
          std::fprintf(stderr, "status during ingest failed (retrying): %s\n",
                       failure_text(st).c_str());
        return applied > 8000 || ingest_done;
      },
      std::chrono::seconds(120), std::chrono::milliseconds(20));
  const bool mid_ingest = !ingest_done;
  int nats = embedded_nats_pid(dir.path);
  ASSERT_EQ(::kill(node, SIGKILL), 0);
  std::printf("[ crash ] SIGKILL after %llu of %zu events applied, ingest %s\n",
              static_cast<unsigned long long>(applied), 2 * slice().size(),
              mid_ingest ? "still running" : "already finished");
  EXPECT_TRUE(reached) << "the node applied only " << applied << " events in 120 s";
  EXPECT_TRUE(mid_ingest)
      << "the ingest finished before the kill: this run did not test a kill mid-ingest";
  EXPECT_LT(applied, 2 * slice().size());
  ::waitpid(node, nullptr, 0);
  ingest.join();
  // The embedded nats-server must not outlive its node.
  bool nats_gone = false;
  for (int i = 0; i < 100 && !nats_gone; ++i) {
    nats_gone = ::kill(nats, 0) != 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(nats_gone) << "nats-server pid " << nats << " orphaned";

  node = start_node(dir.path, port);
  ASSERT_TRUE(tcp_port_open(port));
  std::string out;
  // Re-running the same command (same --batch: batch ids follow the chunking) resumes safely.
  EXPECT_EQ(run_cli("ingest --quiet --batch 300 --rpc " + rpc + " --stream flights " + slice_path(),
                    &out),
            0)
      << out;
  EXPECT_EQ(wait_applied(rpc, 2 * slice().size()), 2 * slice().size());
  EXPECT_EQ(compare_all(rpc, slice(), 0), 0u);
  ::kill(node, SIGTERM);
  int st = 0;
  ::waitpid(node, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "clean shutdown on SIGTERM, status " << st;
  if (HasFailure()) std::system(("tail -20 " + dir.path + "/node.log").c_str());
}

}  // namespace
}  // namespace tessera::test
