// Reads while events stream in must never see a window that an in-flight batch has already
// pruned. Reads default to the stream's clock t (the latest event time applied on any shard), so
// an airport's count at t must lie between the brute-force count of the events its shard had
// committed before the read (those before the shard's committed watermark, from status) and
// the count of every event up to t. Calls of 4000 rows put more than a day of event time in
// one message, so an applied batch moves an entity's state (and its pruning) a day ahead of the
// last commit; the shard must then answer "retry" (read again at the newer clock), not a
// pruned window.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "hash.h"
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
    EXPECT_EQ(run_cli("ingest --quiet --batch 4000 --window 1 --rpc " + h.rpc() +
                          " --stream flights " + slice_path(),
                      &out),
              0)
        << out;
    done = true;
  });
  const std::vector<std::string> airports{"ORD", "ATL", "DFW", "LAX", "DEN", "PHX"};
  const int64_t day = 86400LL * 1000000;
  size_t checked = 0, bad = 0, loops = 0, retried = 0;
  std::string read_error;
  // One attempt per call (open_client): a read the node answers "retry" is counted here.
  auto c = open_client(h.rpc());
  // A read that meets a shard whose clock moved on more than the gateway's retries cover is
  // retryable (or overloaded); anything else is a failure.
  auto retry_later = [](errc code) { return code == errc::retryable || code == errc::overloaded; };
  // Read until the CLI is done and the node has applied everything (it drains a backlog), for
  // at most 5 minutes (the slice takes seconds).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while ((!done || h.n->events_applied() < 2 * slice().size()) &&
         std::chrono::steady_clock::now() < deadline) {
    ++loops;
    std::map<uint32_t, int64_t> committed;  // origin shard -> committed watermark before the read
    auto status = c->status();
    if (!status) {
      if (retry_later(status.error_code())) {
        ++retried;
        continue;
      }
      read_error = failure_text(status);
      break;
    }
    for (auto s : status->get().getShards())
      if (std::string(s.getKind().cStr()) == "origin") committed[s.getShard()] = s.getWatermark();
    auto resp = c->features("airport_delay", airports);
    if (!resp) {
      if (retry_later(resp.error_code())) {
        ++retried;
        continue;
      }
      read_error = failure_text(resp);
      break;
    }
    int64_t as_of = -1;
    for (auto& v : *resp) {
      int64_t t = v.as_of;
      if (as_of != -1 && t != as_of)
        ADD_FAILURE() << "one read, two as-of times: " << as_of << " and " << t;
      as_of = t;
      if (t == 0) continue;
      const int64_t w = committed[shard_of(v.entity, 64)];
      int64_t lo = 0, hi = 0;  // committed events in (t - 24h, t], and all of them
      for (auto& f : slice()) {
        if (f.origin != v.entity || f.time <= t - day || f.time > t) continue;
        ++hi;
        if (f.time < w) ++lo;
      }
      int64_t got = -1;
      if (const client::value* x = v.find("count_24h"))
        if (auto* n = std::get_if<int64_t>(x)) got = *n;
      ++checked;
      if (got < lo || got > hi) {
        if (++bad < 5)
          ADD_FAILURE() << v.entity << " at " << t << " (shard committed to " << w
                        << "): count_24h " << got << " not in [" << lo << ", " << hi << "]";
      }
    }
  }
  const bool timed_out = !done || h.n->events_applied() < 2 * slice().size();
  ingest.join();
  std::fprintf(stderr, "reads checked during ingest: %zu in %zu loops (%zu retryable errors)\n",
               checked, loops, retried);
  EXPECT_EQ(read_error, "");
  EXPECT_FALSE(timed_out) << "after 5 minutes: CLI done " << done << ", applied "
                          << h.n->events_applied() << " of " << 2 * slice().size();
  EXPECT_GT(checked, 0u);
  EXPECT_EQ(bad, 0u);
}

}  // namespace
}  // namespace tessera::test
