// The committed flights slice through a real node (embedded nats-server, JetStream, RocksDB,
// RPC): every served value of both views, for every entity, equals the brute-force reference.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "point_reads.h"
#include "test_support.h"

namespace tessera::test {
namespace {

constexpr int64_t kHour = 3600LL * 1000000;

class FlightsNode : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new temp_dir();
    harness_ = new node_harness(dir_->path);
    ASSERT_TRUE(harness_->n);
    std::string out;
    ASSERT_EQ(
        run_cli("ingest --quiet --rpc " + harness_->rpc() + " --stream flights " + slice_path(),
                &out),
        0)
        << out;
    ASSERT_EQ(wait_applied(harness_->rpc(), 2 * slice().size()), 2 * slice().size());
  }
  static void TearDownTestSuite() {
    delete harness_;
    delete dir_;
  }
  static temp_dir* dir_;
  static node_harness* harness_;
};
temp_dir* FlightsNode::dir_ = nullptr;
node_harness* FlightsNode::harness_ = nullptr;

TEST_F(FlightsNode, EveryValueAtTheStreamsClockMatchesBruteForce) {
  EXPECT_EQ(compare_all(harness_->rpc(), slice(), 0), 0u);
}

TEST_F(FlightsNode, EveryValueAtAnExplicitAsOfMatchesBruteForce) {
  int64_t last = 0;
  for (auto& f : slice()) last = std::max(last, f.time);
  EXPECT_EQ(compare_all(harness_->rpc(), slice(), last), 0u);
  // Inside the retained window, a past read sees exactly the events up to that time.
  EXPECT_EQ(compare_all(harness_->rpc(), slice(), last - 5 * kHour - 17 * 1000000), 0u);
}

// The default shard count (8, where the tests' nodes have 64): every value of both views still
// equals the reference.
TEST(DefaultShards, EveryValueMatchesBruteForce) {
  temp_dir dir;
  node_harness h(dir.path, 5 * 60 * 1000, flights_definitions(), kDefaultShards);
  ASSERT_TRUE(h.n);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + h.rpc() + " --stream flights " + slice_path(), &out),
            0)
      << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size()), 2 * slice().size());
  auto st = open_client(h.rpc())->status();
  ASSERT_TRUE(st) << failure_text(st);
  EXPECT_EQ(st->get().getShardCount(), 8u);
  EXPECT_EQ(st->get().getShards().size(), 16u);  // 8 shards x 2 entity kinds
  EXPECT_EQ(compare_all(h.rpc(), slice(), 0), 0u);
}

// One ingest call of 6,000 events of one route is one JetStream message per entity kind, larger
// than what a pull may ask for (the node's 24 MiB of pulls in flight over 64 shards x 2 kinds x 2
// pulls: 96 KiB). The pull that meets it ends on its byte limit with nothing delivered; the next
// fetches it alone. Every value still equals the reference.
TEST(PullBytes, AMessageLargerThanAPullMayAskForIsStillApplied) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  std::vector<flight> fs;
  const int64_t start = 978307200LL * 1000000;  // 2001-01-01
  for (int i = 0; i < 6000; ++i)
    fs.push_back({start + i * 60LL * 1000000, static_cast<double>(i % 50), "LAX", "SFO"});
  write_flights_csv(dir.path + "/one-route.csv", fs);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --batch 6000 --rpc " + h.rpc() + " --stream flights " +
                        dir.path + "/one-route.csv",
                    &out),
            0)
      << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * fs.size()), 2 * fs.size());
  EXPECT_EQ(compare_all(h.rpc(), fs, 0), 0u);
}

TEST_F(FlightsNode, AsOfBeforeTheRetainedWindowIsAClearError) {
  auto c = open_client(harness_->rpc());
  // 2001-01-01: ten days before the watermark, horizon is 24h.
  auto r = c->features("airport_delay", {"LAX"}, 978307260000000LL);
  ASSERT_FALSE(r) << "expected an error";
  EXPECT_NE(r.error_message().find("before the retained window"), std::string::npos)
      << failure_text(r);
}

// Many lookups of two views, each at its own read time, in one call: every answer equals read
// of that key alone at that time, bit for bit, and the reference; a lookup before its view's
// retained window fails alone, with read's error.
TEST_F(FlightsNode, ReadPointsAnswersEachLookupAsReadOfItAloneAndFailsOnlyTheOnesOutsideTheWindow) {
  auto ctx = harness_->n->TEST_features_context();
  ASSERT_TRUE(ctx);
  int64_t last = 0;
  for (auto& f : slice()) last = std::max(last, f.time);
  int64_t clock = 0;
  ASSERT_TRUE(eventually([&] { return (clock = ctx->clocks->read_time("flights")) >= last; },
                         std::chrono::seconds(30)))
      << "the stream's clock reads " << clock << ", " << last << " expected";
  feature_reader reader(ctx, ctx->nats);
  std::set<size_t> outside;
  auto lookups = mixed_lookups(*ctx->defs, clock, outside);
  auto answers = read_points_sync(reader, lookups);
  EXPECT_EQ(check_points(reader, lookups, answers, outside, clock), 0u);
  EXPECT_EQ(reader.TEST_points_requests(), 0u) << "one node: nothing to ask another";
  // Nothing to look up: answered at once, with nothing.
  EXPECT_TRUE(read_points_sync(reader, {}).empty());
}

TEST_F(FlightsNode, ReingestingTheSameFileCountsNothingTwice) {
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + harness_->rpc() + " --stream flights " + slice_path(),
                    &out),
            0)
      << out;
  EXPECT_NE(out.find("32,797 already stored"), std::string::npos) << out;
  EXPECT_EQ(wait_applied(harness_->rpc(), 2 * slice().size(), 5), 2 * slice().size());
  EXPECT_EQ(compare_all(harness_->rpc(), slice(), 0), 0u);
}

TEST_F(FlightsNode, UnknownEntitiesAreMissingNotErrors) {
  std::vector<int64_t> times;
  auto v = read_vectors(harness_->rpc(), "airport_delay", {"NOPE"}, 0, &times);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].second["count_24h"], 0.0);
  EXPECT_FALSE(v[0].second["mean_delay_24h"].has_value());
  EXPECT_EQ(times[0], 0);
}

TEST_F(FlightsNode, CrashedEntityRestartsFromPersistedStateWithoutLosingEvents) {
  ASSERT_TRUE(harness_->n->TEST_crash_entity("flights", "origin", "LAX"));
  // Three more LAX flights after the slice's end: the first apply of LAX throws once.
  std::vector<flight> more = slice();
  int64_t last = 0;
  for (auto& f : slice()) last = std::max(last, f.time);
  auto c = open_client(harness_->rpc());
  std::vector<client::event> evs;
  for (unsigned i = 0; i < 3; ++i) {
    flight f{last + (i + 1) * 60 * 1000000LL, 10.0 * (i + 1), "LAX", "SFO"};
    more.push_back(f);
    client::event e;
    e.fields = {{"date", client::timestamp{f.time}},
                {"delay", f.delay},
                {"origin", std::string("LAX")},
                {"destination", std::string("SFO")}};
    evs.push_back(std::move(e));
  }
  auto resp = c->ingest("flights", evs);
  ASSERT_TRUE(resp) << failure_text(resp);
  EXPECT_EQ(resp->accepted, 3u);
  ASSERT_EQ(wait_applied(harness_->rpc(), 2 * more.size()), 2 * more.size());
  auto st = c->status();
  ASSERT_TRUE(st) << failure_text(st);
  EXPECT_GE(st->get().getEntityRestarts(), 1u);
  auto got = read_vectors(harness_->rpc(), "airport_delay", {"LAX"}, last + 3 * 60 * 1000000LL);
  auto want = airport_at(more, "LAX", last + 3 * 60 * 1000000LL);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].second["count_24h"], static_cast<double>(want.count_24h));
  EXPECT_NEAR(*got[0].second["mean_delay_1h"], *want.mean_1h, 1e-9);
}

}  // namespace
}  // namespace tessera::test
