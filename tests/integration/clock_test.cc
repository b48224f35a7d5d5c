// One clock per stream (../shared/DESIGN.md): reads default to the stream's clock, the same for
// every entity; an event far ahead of the stream is refused with its reason and changes nothing
// for anyone; a live stream's windows decay with the wall clock; events too old for the online
// windows are kept for training sets only, and the producer is told how many.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "test_support.h"
#include "time_util.h"

namespace tessera::test {
namespace {

constexpr int64_t kMinute = 60LL * 1000000, kDay = 86400LL * 1000000;

struct event_spec {
  int64_t time;
  double delay;
  std::string origin, destination;
  double distance = 300;
};

result<client::ingest_result> ingest(client::connection& c, const std::vector<event_spec>& evs,
                                     const std::string& stream = "flights") {
  std::vector<client::event> out;
  for (auto& e : evs) {
    client::event x;
    x.fields = {{"date", client::timestamp{e.time}},
                {"delay", e.delay},
                {"origin", e.origin},
                {"destination", e.destination},
                {"distance", e.distance}};
    out.push_back(std::move(x));
  }
  return c.ingest(stream, out);
}

struct clock_status {
  std::string mode;
  int64_t read_time = 0, watermark = 0;
  uint64_t late = 0, refused = 0;
};
// A failed status call is a test failure (and reads as an empty clock_status).
clock_status clock_of(const std::string& rpc, const std::string& stream) {
  auto st = open_client(rpc)->status();
  if (!st) {
    ADD_FAILURE() << "status of " << rpc << ": " << failure_text(st);
    return {};
  }
  for (auto cl : st->get().getClocks())
    if (stream == cl.getStream().cStr())
      return {cl.getMode().cStr(), cl.getReadTime(), cl.getWatermark(), cl.getLate(),
              cl.getRefused()};
  return {};
}

// The issue's story: amid a replay, one producer sends a flight dated two months ahead. It is
// refused with its reason, the stream's clock stays where the good events put it, and every
// entity's every value equals the brute force at that one clock.
TEST(StreamClock, AnEventFarAheadAmidAReplayIsRefusedAndNobodyElseChanges) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + h.rpc() + " --stream flights " + slice_path(), &out),
            0)
      << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size()), 2 * slice().size());
  int64_t last = 0;
  for (auto& f : slice()) last = std::max(last, f.time);

  auto c = open_client(h.rpc());
  auto r = ingest(*c, {{last + kMinute, 3, "ORD", "LAX"},
                       {last + 60 * kDay, 400, "LAX", "SFO"},
                       {last + 2 * kMinute, 25, "ATL", "DFW"}});
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_EQ(r->accepted, 2u);
  ASSERT_EQ(r->rejected.size(), 1u);
  EXPECT_EQ(r->rejected[0].index, 1u);
  EXPECT_EQ(r->rejected[0].field, "date");
  EXPECT_NE(r->rejected[0].reason.find("more than max_jump (2d) past the stream's watermark"),
            std::string::npos)
      << r->rejected[0].reason;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size() + 4), 2 * slice().size() + 4);

  std::vector<flight> all = slice();
  all.push_back({last + kMinute, 3, "ORD", "LAX", 300});
  all.push_back({last + 2 * kMinute, 25, "ATL", "DFW", 300});
  // compare_all checks that every vector of each read has the same as_of: the stream's clock.
  EXPECT_EQ(compare_all(h.rpc(), all, 0), 0u);
  auto cl = clock_of(h.rpc(), "flights");
  EXPECT_EQ(cl.mode, "replay");
  EXPECT_EQ(cl.read_time, last + 2 * kMinute);
  EXPECT_EQ(cl.watermark, last + 2 * kMinute);
  EXPECT_EQ(cl.refused, 1u);
}

// The very first call of a stream has no clock to measure from: its outliers are measured
// from the median of its own events (schemas/SUBJECTS.md, "The stream's clock").
TEST(StreamClock, TheFirstCallsOutliersAreMeasuredFromItsMedian) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  auto c = open_client(h.rpc());
  const int64_t t0 = 978307200000000LL;  // 2001-01-01
  std::vector<event_spec> evs;
  for (int i = 0; i < 9; ++i) evs.push_back({t0 + i * kMinute, 1, "LAX", "SFO"});
  evs.insert(evs.begin() + 4, {t0 + 90 * kDay, 1, "ORD", "SFO"});
  auto r = ingest(*c, evs);
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_EQ(r->accepted, 9u);
  ASSERT_EQ(r->rejected.size(), 1u);
  EXPECT_EQ(r->rejected[0].index, 4u);
  ASSERT_EQ(wait_applied(h.rpc(), 18), 18u);
  EXPECT_EQ(clock_of(h.rpc(), "flights").read_time, t0 + 8 * kMinute);
}

// A live stream reads at the wall clock: an entity that gets no more events decays to count 0
// and status missing once its 2 s window has passed, with no event anywhere to move a watermark.
TEST(StreamClock, ALiveStreamsWindowDecaysWithoutNewEvents) {
  temp_dir dir;
  const std::string defs = dir.path + "/live.lua";
  std::ofstream(defs) << R"lua(
stream { name = "clicks", time_field = "t", fields = { t = "timestamp", user = "text", ms = "float" } }
stream { name = "pings", time_field = "t", fields = { t = "timestamp", user = "text" }, max_jump = "1s" }
entity { name = "user", key = "user" }
view { name = "recent", entity = "user", stream = "clicks", features = {
  count { "clicks_2s", window = "2s" }, mean { "ms_2s", field = "ms", window = "2s" } } }
view { name = "pinged", entity = "user", stream = "pings", features = { count { "pings_1m", window = "1m" } } }
)lua";
  node_harness h(dir.path + "/node", 5 * 60 * 1000, defs);
  ASSERT_TRUE(h.n);
  auto c = open_client(h.rpc());
  const int64_t sent = now_micros();
  // ann and bob click now; cat's device clock runs 10 minutes fast (within max_future): its
  // click counts only once the wall clock gets there, and reads of cat's shard keep working.
  std::vector<client::event> clicks(3);
  const char* users[] = {"ann", "bob", "cat"};
  for (unsigned i = 0; i < 3; ++i)
    clicks[i].fields = {{"t", client::timestamp{i == 2 ? sent + 10 * kMinute : sent}},
                        {"user", std::string(users[i])},
                        {"ms", 10.0}};
  auto r = c->ingest("clicks", clicks);
  ASSERT_TRUE(r) << failure_text(r);
  ASSERT_EQ(r->accepted, 3u);
  ASSERT_EQ(wait_applied(h.rpc(), 3), 3u);
  EXPECT_EQ(clock_of(h.rpc(), "clicks").refused, 0u);
  EXPECT_EQ(clock_of(h.rpc(), "clicks").mode, "live");

  // Every read is at now: the same as_of for both users, after the event, never before it.
  auto read = [&](std::vector<int64_t>& as_ofs) {
    as_ofs.clear();
    return read_vectors(h.rpc(), "recent", {"ann", "bob", "cat"}, 0, nullptr, &as_ofs);
  };
  std::vector<int64_t> as_ofs;
  auto v = read(as_ofs);
  ASSERT_EQ(as_ofs.size(), 3u);
  EXPECT_EQ(as_ofs[0], as_ofs[1]);
  EXPECT_EQ(as_ofs[0], as_ofs[2]);
  EXPECT_EQ(v[2].second["clicks_2s"], 0)
      << "an event 10 minutes ahead counts only when its time comes";
  EXPECT_GE(as_ofs[0], sent);
  // Within the window the event counts (unless this loaded machine took 2 s to get here).
  const double want = as_ofs[0] - sent < 2 * 1000000 ? 1 : 0;
  EXPECT_EQ(v[0].second["clicks_2s"], want)
      << "read " << (as_ofs[0] - sent) / 1000 << " ms after the event";

  // Then, without any new event, the window empties as the wall clock passes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  double seen = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    v = read(as_ofs);
    seen = v[0].second["clicks_2s"].value_or(-1);
    if (seen == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(seen, 0) << "count_2s never decayed; last read at " << format_timestamp(as_ofs[0]);
  EXPECT_GE(as_ofs[0] - sent, 2 * 1000000);
  EXPECT_FALSE(v[1].second["ms_2s"].has_value());
  std::vector<int64_t> times;
  read_vectors(h.rpc(), "recent", {"ann"}, 0, &times);
  ASSERT_EQ(times.size(), 1u);
  EXPECT_EQ(times[0], 0) << "an empty window has no last event";

  // A quiet live stream's next event at now is no jump, though its watermark is more than
  // max_jump (1s for pings) behind: a live stream measures jumps from the wall clock at least.
  for (int64_t ago : {10 * 1000000LL, 0LL}) {
    client::event ping;
    ping.fields = {{"t", client::timestamp{now_micros() - ago}}, {"user", std::string("ann")}};
    auto r2 = c->ingest("pings", {ping});
    ASSERT_TRUE(r2) << failure_text(r2);
    EXPECT_EQ(r2->accepted, 1u);
    EXPECT_EQ(r2->rejected.size(), 0u) << (r2->rejected.size() ? r2->rejected[0].reason : "");
  }
}

// Events too old for every online window at the stream's clock go to the offline log only; the
// ingest reply and the CLI say how many, and status counts them per stream.
TEST(StreamClock, LateEventsAreCountedAndReportedToTheCli) {
  temp_dir dir;
  node_harness h(dir.path, 5 * 60 * 1000, flights_example_definitions());
  ASSERT_TRUE(h.n);
  // February moves the clock; then three flights of early January arrive: 27+ days behind it,
  // older than route_delay's 7 d window plus its 7 d as-of horizon.
  const std::string csv = dir.path + "/late.csv";
  {
    std::ofstream f(csv);
    f << "date,delay,distance,origin,destination\n";
    for (int i = 0; i < 20; ++i)
      f << "2001-02-01T" << (10 + i / 6) << ":" << (i % 6) << "0:00Z,5,400,LAX,SFO\n";
    f << "2001-01-03T08:00:00Z,50,400,LAX,SFO\n2001-01-03T09:00:00Z,60,400,ORD,SFO\n2001-01-04T08:"
         "00:00Z,70,400,LAX,JFK\n";
  }
  std::string out;
  ASSERT_EQ(
      run_cli("ingest --batch 20 --window 1 --rpc " + h.rpc() + " --stream flights " + csv, &out),
      0)
      << out;
  EXPECT_NE(out.find("3 events older than the online windows: kept for training sets only"),
            std::string::npos)
      << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * 23), 2u * 23);
  auto cl = clock_of(h.rpc(), "flights");
  EXPECT_EQ(cl.late, 3u);
  EXPECT_EQ(cl.refused, 0u);
  // Online, LAX-SFO counts February only.
  auto v = read_vectors(h.rpc(), "route_delay", {"LAX-SFO", "LAX-JFK"}, 0);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].second["count_7d"], 20);
  EXPECT_EQ(v[1].second["count_7d"], 0);
  // The status line says so too.
  ASSERT_EQ(run_cli("status --rpc " + h.rpc(), &out), 0) << out;
  EXPECT_NE(out.find("stream flights: replay clock"), std::string::npos) << out;
  EXPECT_NE(out.find("late 3, refused 0"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::test
