// A cluster on loopback: one nats-server, several `tessera node` processes. Every served value,
// read through every node, equals the brute-force reference — after a plain ingest, across a
// node joining and another leaving gracefully mid-ingest, and across a node killed with SIGKILL
// mid-ingest and replaced. The persisted applied counts sum to exactly 2 × rows (origin and
// route), so no event was lost or applied twice.
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <thread>

#include "bus.h"
#include "cluster/kv.h"
#include "hash.h"
#include "nats_server.h"
#include "point_reads.h"
#include "schemas/tessera.capnp.h"
#include "test_support.h"

namespace tessera::test {
namespace {

std::string ingest_cmd(const std::string& rpc, int batch = 500) {
  return std::string(TSR_BINARY) + " ingest --quiet --batch " + std::to_string(batch) +
         " --window 1 --rpc " + rpc + " --stream flights " + slice_path() + " >/dev/null 2>&1";
}

// Waits until the cluster has applied at least `events` (to pick a moment mid-ingest); says so
// when the deadline passes first.
void wait_progress(const std::vector<std::string>& rpcs, uint64_t events) {
  uint64_t seen = 0;
  bool reached = eventually([&] { return (seen = cluster_applied(rpcs).applied) >= events; },
                            std::chrono::seconds(120), std::chrono::milliseconds(20));
  EXPECT_TRUE(reached) << "after 120 s the cluster had applied " << seen << " of the " << events
                       << " events waited for";
}

// The leader `rpc`'s status names; a failed status call is a test failure (and names nobody).
std::string leader_of(const std::string& rpc) {
  auto st = open_client(rpc)->status();
  if (!st) {
    ADD_FAILURE() << "status of " << rpc << ": " << failure_text(st);
    return "";
  }
  return st->get().getLeader().cStr();
}

struct cluster_fixture : ::testing::Test {
  temp_dir dir;
  std::unique_ptr<embedded_nats> nats;
  void SetUp() override {
    auto n = embedded_nats::start(dir.path + "/nats-data");
    ASSERT_TRUE(n) << n.error_message();
    nats = std::move(n.value());
  }
  std::unique_ptr<node_process> start(const std::string& id) {
    return std::make_unique<node_process>(dir.path + "/" + id, nats->url(), id);
  }
  void expect_exact_everywhere(const std::vector<node_process*>& nodes) {
    std::vector<std::string> rpcs;
    for (auto* n : nodes) rpcs.push_back(n->rpc());
    EXPECT_EQ(wait_cluster_applied(rpcs, 2 * slice().size()), 2 * slice().size());
    EXPECT_GE(wait_all_served(rpcs[0], 64, 30, "", nodes.size()), 0);
    for (auto* n : nodes)
      EXPECT_EQ(compare_all(n->rpc(), slice(), 0), 0u) << "reading through " << n->rpc();
    if (HasFailure())
      for (auto* n : nodes)
        std::fprintf(stderr, "---- %s\n%s", n->dir.c_str(), n->log_tail(15).c_str());
  }
};

TEST_F(cluster_fixture, ThreeNodesServeExactValuesThroughEveryNode) {
  auto a = start("a"), b = start("b"), c = start("c");
  ASSERT_GE(wait_all_served(a->rpc(), 64, 30, "", 3), 0);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + b->rpc() + " --stream flights " + slice_path(), &out),
            0)
      << out;
  expect_exact_everywhere({a.get(), b.get(), c.get()});
  // Every node serves a share: none holds everything.
  for (auto* n : {a.get(), b.get(), c.get()}) {
    auto st = open_client(n->rpc())->status();
    ASSERT_TRUE(st) << n->rpc() << ": " << failure_text(st);
    auto shards = st->get().getShards().size();
    EXPECT_GT(shards, 0u);
    EXPECT_LT(shards, 128u);
  }
}

TEST_F(cluster_fixture, JoinAndGracefulLeaveMidIngestKeepValuesExact) {
  auto a = start("a"), b = start("b");
  ASSERT_GE(wait_all_served(a->rpc(), 64, 30, "", 2), 0);
  std::thread ingest([&] { (void)std::system(ingest_cmd(a->rpc(), 300).c_str()); });
  wait_progress({a->rpc(), b->rpc()}, 12000);
  auto c = start("c");  // joins mid-ingest and takes a share
  wait_progress({a->rpc(), b->rpc(), c->rpc()}, 30000);
  b->kill(SIGTERM);  // leaves gracefully: hands its shards over with snapshots
  int st = b->wait();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << "graceful leave exits 0, status " << st << "\n"
      << b->log_tail();
  ingest.join();
  expect_exact_everywhere({a.get(), c.get()});
  // The shards b handed over came from its snapshots, not from a replay of the whole stream.
  uint64_t restored = 0, refused = 0;
  for (auto* n : {a.get(), c.get()}) {
    auto st = open_client(n->rpc())->status();
    ASSERT_TRUE(st) << n->rpc() << ": " << failure_text(st);
    restored += st->get().getSnapshotsRestored();
    refused += st->get().getSnapshotsRefused();
  }
  EXPECT_GT(restored, 0u);
  EXPECT_EQ(refused, 0u);
}

// The node killed is the leader: the lease lapses and another node takes over while also
// taking over the dead node's shards.
TEST_F(cluster_fixture, SigkillOfTheLeaderMidIngestLosesNothingAndCountsNothingTwice) {
  std::map<std::string, std::unique_ptr<node_process>> nodes;
  for (auto id : {"a", "b", "c"}) nodes[id] = start(id);
  ASSERT_GE(wait_all_served(nodes["a"]->rpc(), 64, 30, "", 3), 0);
  std::string leader;
  {
    auto st = open_client(nodes["a"]->rpc())->status();
    ASSERT_TRUE(st) << failure_text(st);
    leader = st->get().getLeader().cStr();
  }
  ASSERT_TRUE(nodes.count(leader)) << "leader '" << leader << "'";
  std::vector<node_process*> rest;
  for (auto& [id, n] : nodes)
    if (id != leader) rest.push_back(n.get());
  std::atomic<bool> ingest_done{false};
  std::thread ingest([&] {
    (void)std::system(ingest_cmd(rest[0]->rpc(), 300).c_str());
    ingest_done = true;
  });
  wait_progress({rest[0]->rpc(), rest[1]->rpc(), nodes[leader]->rpc()}, 15000);
  const bool mid_ingest = !ingest_done;
  nodes[leader]->kill(SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(mid_ingest)
      << "the ingest had finished before the kill: the test did not test a kill mid-ingest";
  // Generous on a loaded 2-core machine; the figure itself is printed (detection is 1.5 s).
  double served = wait_all_served(rest[0]->rpc(), 64, 90, leader, 2);
  double recovery = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_GE(served, 0) << rest[0]->log_tail();
  std::printf("[ recovery ] leader %s killed: every shard served again %.2f s after SIGKILL\n",
              leader.c_str(), recovery);
  {
    // The survivors' status never names the dead node as leader, not even before its lease has
    // lapsed; it names nobody until a live member holds the lease, then that member.
    const std::string b = rest[0]->dir.substr(rest[0]->dir.rfind('/') + 1),
                      c = rest[1]->dir.substr(rest[1]->dir.rfind('/') + 1);
    std::vector<std::string> seen;
    bool found = eventually(
        [&] {
          for (auto* n : rest) {
            std::string now = leader_of(n->rpc());
            if (seen.empty() || seen.back() != now) seen.push_back(now);
            EXPECT_NE(now, leader) << "status through " << n->rpc() << " names the killed leader";
          }
          return seen.back() == b || seen.back() == c;
        },
        std::chrono::seconds(60));
    std::string history;
    for (auto& s : seen) history += " '" + s + "'";
    EXPECT_TRUE(found) << "no live leader after 60 s; leaders seen:" << history;
  }
  auto d = start("d");  // the replacement takes its share
  ingest.join();
  expect_exact_everywhere({rest[0], rest[1], d.get()});
}

// A node that comes back with an old data dir must not serve its stale state: it takes the
// newer snapshot its shards' interim owner wrote when handing them back.
TEST_F(cluster_fixture, RejoinWithAnOldDataDirTakesTheNewerSnapshot) {
  // The slice in two halves, in file order.
  std::string first = dir.path + "/first.csv", second = dir.path + "/second.csv";
  std::string split = "gzip -dc " + slice_path() + " | awk -v f=" + first + " -v s=" + second +
                      " 'NR==1{print > f; print > s; next} NR<=16000{print > f; next} {print > s}'";
  ASSERT_EQ(std::system(split.c_str()), 0);
  auto a = start("a"), b = start("b");
  ASSERT_GE(wait_all_served(a->rpc(), 64, 30, "", 2), 0);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + a->rpc() + " --stream flights " + first, &out), 0)
      << out;
  b->kill(SIGTERM);  // leaves with snapshots; a serves everything
  ASSERT_TRUE(WIFEXITED(b->wait()));
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + a->rpc() + " --stream flights " + second, &out), 0)
      << out;
  EXPECT_EQ(wait_cluster_applied({a->rpc()}, 2 * slice().size()), 2 * slice().size());
  b = start("b");  // same data dir, now behind
  ASSERT_GE(wait_all_served(a->rpc(), 64, 30, "", 2), 0);
  expect_exact_everywhere({a.get(), b.get()});
  auto st = open_client(b->rpc())->status();
  ASSERT_TRUE(st) << failure_text(st);
  EXPECT_GT(st->get().getSnapshotsRestored(), 0u)
      << "b must restore the newer state, not replay from its old one";
  EXPECT_GT(st->get().getShards().size(), 0u);
}

// Another member claims every shard in its heartbeat but is leaving (so the map gives it none)
// and never lets go: a new owner waits for it at most --handoff-wait-ms, then takes the shards
// over as the map says, and logs who still claimed them.
TEST_F(cluster_fixture, AStuckClaimantIsOverruledByTheShardMapAfterTheHandoffWait) {
  auto b = bus::connect({nats->url(), "ghost-writer"});
  ASSERT_TRUE(b) << b.error_message();
  auto nodes = kv_bucket::open((*b)->jetstream(), {"TSR_NODES", 3600 * 1000, 1, 1});
  ASSERT_TRUE(nodes) << nodes.error_message();
  std::string served = "[";
  for (int s = 0; s < 64; ++s) served += (s ? "," : "") + std::to_string(s);
  served += "]";
  std::atomic<bool> stop{false};
  std::thread ghost([&] {
    while (!stop) {
      (*nodes)->put("ghost", R"({"id":"ghost","rpc":"127.0.0.1:1","served":)" + served +
                                 R"(,"leaving":true})");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  auto t0 = std::chrono::steady_clock::now();
  node_process a(dir.path + "/a", nats->url(), "a", "--handoff-wait-ms 8000");
  {
    // While the shards wait for the claimant, a read waits (2 s) and then gets a retryable
    // error naming the shard: never a silent drop, never a value from a shard not yet restored.
    // One attempt (open_client): the client's own retries would read again after the wait.
    auto c = open_client(a.rpc());
    auto t = std::chrono::steady_clock::now();
    // The read can only be judged if it starts while the 8 s wait has room for its own 2 s.
    const double started_at = std::chrono::duration<double>(t - t0).count();
    auto r = c->features("airport_delay", {"ATL"});
    if (r) {
      if (started_at < 5.5)
        ADD_FAILURE() << "a read of a shard that is not served yet must fail (read at "
                      << started_at << " s)";
      else
        std::printf(
            "[ note ] the node took %.1f s to start: the read came too late to check the wait\n",
            started_at);
    } else {
      EXPECT_EQ(r.error_code(), errc::retryable) << failure_text(r);
      // The message names the shard, for the user.
      EXPECT_NE(r.error_message().find("shard " + std::to_string(shard_of("ATL", 64))),
                std::string::npos)
          << failure_text(r);
      EXPECT_GE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count(), 1.5)
          << "bounded wait first";
    }
  }
  double waited = wait_all_served(a.rpc(), 64, 30, "ghost", 1);
  double since_start = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  ghost.join();
  ASSERT_GE(waited, 0) << a.log_tail();
  EXPECT_GE(since_start, 8.0) << "the new owner must wait for the claimant first";
  EXPECT_NE(a.log_tail(200).find("ghost still claims shard"), std::string::npos) << a.log_tail();
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + a.rpc() + " --stream flights " + slice_path(), &out),
            0)
      << out;
  EXPECT_EQ(wait_cluster_applied({a.rpc()}, 2 * slice().size()), 2 * slice().size());
  EXPECT_EQ(compare_all(a.rpc(), slice(), 0), 0u);
}

// A failed status call is a test failure (and reads as 0).
uint64_t snapshots_written(const std::string& rpc) {
  auto st = open_client(rpc)->status();
  if (!st) {
    ADD_FAILURE() << "status of " << rpc << ": " << failure_text(st);
    return 0;
  }
  return st->get().getSnapshotsWritten();
}

// A node restarted on its data dir finds every shard equal to its stored snapshot and uploads
// nothing until something new is applied (it used to upload every shard again: the whole
// store, one shard per tick, competing with ingest and dataset builds after every restart).
TEST_F(cluster_fixture, ARestartedNodeSnapshotsOnlyShardsThatChanged) {
  std::string first = dir.path + "/first.csv", second = dir.path + "/second.csv";
  std::string split = "gzip -dc " + slice_path() + " | awk -v f=" + first + " -v s=" + second +
                      " 'NR==1{print > f; print > s; next} NR<=16000{print > f; next} {print > s}'";
  ASSERT_EQ(std::system(split.c_str()), 0);
  auto a = start("a");
  ASSERT_GE(wait_all_served(a->rpc(), 64, 30, "", 1), 0);
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + a->rpc() + " --stream flights " + first, &out), 0)
      << out;
  ASSERT_EQ(wait_cluster_applied({a->rpc()}, 2 * 15999), 2u * 15999);
  a->kill(SIGTERM);  // leaves: snapshots every shard on release
  ASSERT_TRUE(WIFEXITED(a->wait()));
  a = std::make_unique<node_process>(dir.path + "/a", nats->url(), "a", "--snapshot-every 1");
  ASSERT_GE(wait_all_served(a->rpc(), 64, 30, "", 1), 0);
  // Once every shard has come due for its periodic snapshot (each second) and been found equal to
  // its stored one, none may have been written.
  uint64_t unchanged = 0;
  EXPECT_TRUE(eventually(
      [&] {
        auto st = open_client(a->rpc())->status();
        if (!st) {
          ADD_FAILURE() << "status of " << a->rpc() << ": " << failure_text(st);
          return true;
        }
        return (unchanged = st->get().getSnapshotsUnchanged()) >= 2 * 64;
      },
      std::chrono::seconds(120)))
      << "after 120 s only " << unchanged << " periodic snapshot checks found shards unchanged";
  EXPECT_EQ(snapshots_written(a->rpc()), 0u) << a->log_tail();
  // Nor on a graceful leave: every stored manifest keeps its revision.
  auto b = bus::connect({nats->url(), "manifest-reader"});
  ASSERT_TRUE(b) << b.error_message();
  auto manifests = kv_bucket::open((*b)->jetstream(), {"TSR_SNAPSHOTS", 0, 1, 1});
  ASSERT_TRUE(manifests) << manifests.error_message();
  auto revisions = [&] {
    std::vector<uint64_t> r;
    for (int s = 0; s < 64; ++s) {
      auto e = (*manifests)->get("shard-" + std::to_string(s));
      r.push_back(e && e->has_value() ? (*e)->revision : 0);
    }
    return r;
  };
  const auto before = revisions();
  a->kill(SIGTERM);
  ASSERT_TRUE(WIFEXITED(a->wait()));
  EXPECT_EQ(revisions(), before) << "a leave with nothing new rewrote snapshots";
  a = std::make_unique<node_process>(dir.path + "/a", nats->url(), "a", "--snapshot-every 1");
  ASSERT_GE(wait_all_served(a->rpc(), 64, 30, "", 1), 0);
  // Something new: the shards it touches are snapshotted again.
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + a->rpc() + " --stream flights " + second, &out), 0)
      << out;
  EXPECT_EQ(wait_cluster_applied({a->rpc()}, 2 * slice().size()), 2 * slice().size());
  uint64_t written = 0;
  EXPECT_TRUE(eventually([&] { return (written = snapshots_written(a->rpc())) > 0; },
                         std::chrono::seconds(60)))
      << "no snapshot written within 60 s of new events";
}

// read_points through a node (in this process) whose cluster has a second member (a process):
// the lookups on the other member's shards go to it in one request, and every answer equals
// read of its lookup alone, which the owner answers.
TEST_F(cluster_fixture, ReadPointsAsksEachOtherOwnerOnceAndAnswersAsReadsOnTheOwner) {
  auto b = start("b");
  node_config cfg;
  cfg.data_dir = dir.path + "/a";
  cfg.rpc = "127.0.0.1:0";
  cfg.nats_url = nats->url();
  cfg.node_id = "a";
  cfg.definitions = flights_definitions();
  cfg.shards = kTestShards;
  auto a = node::start(cfg);
  ASSERT_TRUE(a) << a.error_message();
  const std::string a_rpc = "127.0.0.1:" + std::to_string((*a)->rpc_port());
  ASSERT_GE(wait_all_served(a_rpc, 64, 60, "", 2), 0) << b->log_tail();
  std::string out;
  ASSERT_EQ(run_cli("ingest --quiet --rpc " + a_rpc + " --stream flights " + slice_path(), &out), 0)
      << out;
  ASSERT_EQ(wait_cluster_applied({a_rpc, b->rpc()}, 2 * slice().size()), 2 * slice().size());
  {
    auto ctx = (*a)->TEST_features_context();
    int64_t last = 0;
    for (auto& f : slice()) last = std::max(last, f.time);
    int64_t clock = 0;
    ASSERT_TRUE(eventually([&] { return (clock = ctx->clocks->read_time("flights")) >= last; },
                           std::chrono::seconds(30)))
        << "a's clock of the stream reads " << clock << ", " << last << " expected";
    std::set<size_t> outside;
    auto lookups = mixed_lookups(*ctx->defs, clock, outside);
    // Both nodes answer some of them.
    std::set<uint32_t> served_here;
    for (uint32_t s : (*a)->serving()) served_here.insert(s);
    size_t here = 0, there = 0;
    for (size_t i = 0; i < lookups.size(); ++i)
      if (!outside.count(i)) ++(served_here.count(shard_of(lookups[i].key, 64)) ? here : there);
    ASSERT_GT(here, 0u);
    ASSERT_GT(there, 0u);
    feature_reader reader(ctx, ctx->nats);
    auto answers = read_points_sync(reader, lookups);
    EXPECT_EQ(reader.TEST_points_requests(), 1u)
        << "the " << there << " lookups on b's shards take one request to b";
    EXPECT_EQ(check_points(reader, lookups, answers, outside, clock), 0u)
        << here << " lookups on a's shards, " << there << " on b's";

    // b dies, and something takes its requests without answering: until a takes b's shards over
    // (b is declared dead after 1.5 s), the lookups on them fail alone after the timeout and can
    // be retried; a's own still answer.
    auto mute = bus::connect({nats->url(), "mute"});
    ASSERT_TRUE(mute) << mute.error_message();
    ASSERT_TRUE((*mute)->serve(node_points_subject("b"), [](std::string, std::string) {}));
    b->kill(SIGKILL);
    const auto killed = std::chrono::steady_clock::now();
    answers = read_points_sync(reader, lookups, 300);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    ASSERT_EQ(answers.size(), lookups.size());
    if (took > 1.0) {
      std::printf("[ note ] the read after the kill took %.1f s: b's shards may have moved\n",
                  took);
    } else {
      size_t wrong = 0;
      for (size_t i = 0; i < lookups.size(); ++i) {
        if (outside.count(i)) continue;
        const bool mine = served_here.count(shard_of(lookups[i].key, 64)) > 0;
        const auto& r = answers[i];
        if (mine ? !r : (r || r.error_code() != errc::retryable)) {
          if (++wrong <= 5)
            ADD_FAILURE() << lookups[i].key << " on " << (mine ? "a" : "b")
                          << "'s shard: " << (r ? std::string("a vector") : failure_text(r));
        }
      }
      EXPECT_EQ(wrong, 0u);
      EXPECT_GE(took, 0.29) << "b's lookups fail once the timeout has passed, not before";
    }
  }
  (*a)->TEST_stop_without_leaving();  // b is gone: nobody to hand shards to
}

// How the events published while a subscription listened were encoded.
struct encodings {
  size_t named = 0, positional = 0, other = 0;  // events
};
encodings drain_events(natsSubscription* sub) {
  encodings out;
  natsMsg* msg = nullptr;
  // The CLI returned after JetStream acknowledged every message: all of them are on their way.
  while (natsSubscription_NextMsg(&msg, sub, 2000) == NATS_OK) {
    const size_t len = static_cast<size_t>(natsMsg_GetDataLength(msg));
    auto words = kj::heapArray<capnp::word>((len + 7) / 8);
    std::memcpy(words.begin(), natsMsg_GetData(msg), len);
    natsMsg_Destroy(msg);
    capnp::FlatArrayMessageReader reader(words);
    auto batch = reader.getRoot<wire::EventBatch>();
    for (auto e : batch.getEvents()) {
      if (batch.hasFieldNames() && e.hasValues() && !e.hasFields())
        ++out.positional;
      else if (!batch.hasFieldNames() && !e.hasValues() && e.hasFields())
        ++out.named;
      else
        ++out.other;
    }
  }
  return out;
}

// The event encoding the member `id` reads, as `rpc`'s status reports it (0: not listed).
uint32_t member_event_wire(const std::string& rpc, const std::string& id) {
  auto st = open_client(rpc)->status();
  if (!st) return 0;
  for (auto m : st->get().getMembers())
    if (m.getNodeId() == id) return m.getEventWire();
  return 0;
}

// A rolling upgrade from a build that reads events only by name (Event.fields): while such a
// member is listed in TSR_NODES, the gateway publishes every event by name; once that member
// runs the new build, by position. Both halves of the slice are applied exactly once and every
// value equals the brute-force reference.
TEST_F(cluster_fixture, EventsGoByNameUntilEveryMemberReadsPositions) {
  auto b = bus::connect({nats->url(), "old-build"});
  ASSERT_TRUE(b) << b.error_message();
  auto nodes = kv_bucket::open((*b)->jetstream(), {"TSR_NODES", 3600 * 1000, 1, 1});
  ASSERT_TRUE(nodes) << nodes.error_message();
  // The old build's heartbeat has no "event_wire". It is leaving, so no shard is assigned to it.
  std::atomic<bool> stop{false}, upgraded{false};
  std::thread old([&] {
    while (!stop) {
      (*nodes)->put("old", std::string(R"({"id":"old","rpc":"127.0.0.1:1","served":[],)") +
                               R"("leaving":true)" + (upgraded ? R"(,"event_wire":2})" : "}"));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  struct joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~joiner() { stop = true, t.join(); }
  } join_old{stop, old};
  node_process a(dir.path + "/a", nats->url(), "a");
  ASSERT_TRUE(eventually([&] { return member_event_wire(a.rpc(), "old") == 1; },
                         std::chrono::seconds(30), std::chrono::milliseconds(50)))
      << a.log_tail();
  natsSubscription* sub = nullptr;
  ASSERT_EQ(natsConnection_SubscribeSync(&sub, (*b)->connection(), "tsr.ev.flights.>"), NATS_OK);
  ASSERT_EQ(natsSubscription_SetPendingLimits(sub, -1, -1), NATS_OK);

  const std::vector<flight>& fs = slice();
  const size_t half = fs.size() / 2;
  std::vector<flight> first(fs.begin(), fs.begin() + half), second(fs.begin() + half, fs.end());
  auto ingest = [&](const std::vector<flight>& part, const std::string& name) {
    const std::string path = dir.path + "/" + name + ".csv";
    write_flights_csv(path, part);
    std::string out;
    EXPECT_EQ(run_cli("ingest --quiet --rpc " + a.rpc() + " --stream flights " + path, &out), 0)
        << out;
  };
  ingest(first, "first");
  encodings e1 = drain_events(sub);
  EXPECT_EQ(e1.named, 2 * half) << "both kinds, every event by name";
  EXPECT_EQ(e1.positional + e1.other, 0u);
  EXPECT_EQ(wait_cluster_applied({a.rpc()}, 2 * half), 2 * half);

  upgraded = true;
  ASSERT_TRUE(eventually([&] { return member_event_wire(a.rpc(), "old") == 2; },
                         std::chrono::seconds(30), std::chrono::milliseconds(50)));
  ingest(second, "second");
  encodings e2 = drain_events(sub);
  EXPECT_EQ(e2.positional, 2 * second.size()) << "every member reads positions now";
  EXPECT_EQ(e2.named + e2.other, 0u);
  natsSubscription_Destroy(sub);
  EXPECT_EQ(wait_cluster_applied({a.rpc()}, 2 * fs.size()), 2 * fs.size());
  EXPECT_EQ(compare_all(a.rpc(), fs, 0), 0u);
  if (HasFailure()) std::fprintf(stderr, "%s", a.log_tail(30).c_str());
}

}  // namespace
}  // namespace tessera::test
