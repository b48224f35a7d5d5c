// SIGKILL the node in the middle of an ingest, restart it on the same data dir, finish the
// ingest: final values equal the reference and every event was applied exactly once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

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

  // The CLI reads the slice through a FIFO that the test fills: the first part, then nothing
  // until the node is dead. The kill is therefore always mid-ingest, however fast or slow this
  // machine is (a fresh clone once saw the whole file ingested before the kill).
  std::vector<std::string> lines;
  {
    gzFile gz = gzopen(slice_path().c_str(), "rb");
    ASSERT_NE(gz, nullptr);
    char buf[4096];
    while (gzgets(gz, buf, sizeof buf)) lines.emplace_back(buf);
    gzclose(gz);
  }
  ASSERT_GT(lines.size(), 20000u);
  const size_t first_part = lines.size() / 2;  // Header included; ~16k rows, ~32k events.
  std::string fifo = dir.path + "/flights.csv";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ::signal(SIGPIPE, SIG_IGN);  // The CLI may exit (its node gone) before the rest is written.
  std::atomic<bool> node_dead{false}, ingest_done{false};
  std::thread writer([&] {
    // Open without blocking, retried until the CLI has opened its end (or has given up).
    int fd = -1;
    while (fd < 0 && !node_dead && !ingest_done) {
      fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (fd < 0) return;
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    for (size_t i = 0; i < first_part; ++i)
      if (::write(fd, lines[i].data(), lines[i].size()) < 0) break;  // the CLI is gone
    while (!node_dead) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ::close(fd);  // The CLI sends what it holds to a dead node, fails, and exits.
  });
  std::string cmd = std::string(TSR_BINARY) + " ingest --quiet --batch 300 --window 1 --rpc " +
                    rpc + " --stream flights " + fifo + " >/dev/null 2>&1";
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
  EXPECT_TRUE(mid_ingest) << "the ingest ended before the kill: it failed, see the node's log";
  EXPECT_LT(applied, 2 * slice().size());
  ::waitpid(node, nullptr, 0);
  node_dead = true;
  writer.join();
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
