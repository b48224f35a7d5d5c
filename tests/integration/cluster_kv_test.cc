// The cluster's shared state on a real nats-server: compare-and-swap conflicts, the leader
// lease lapsing and being taken over, and shard snapshots (round trip, a corrupt chunk, a
// manifest of another format, and a stale snapshot that must not replace a newer one).
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <thread>

#include "bus.h"
#include "cluster/kv.h"
#include "cluster/snapshots.h"
#include "nats_server.h"
#include "test_support.h"

namespace tessera::test {
namespace {

struct kv_fixture : ::testing::Test {
  temp_dir dir;
  std::unique_ptr<embedded_nats> nats;
  std::unique_ptr<bus> b;
  void SetUp() override {
    auto n = embedded_nats::start(dir.path);
    ASSERT_TRUE(n) << n.error_message();
    nats = std::move(n.value());
    auto c = bus::connect({nats->url(), "kvtest"});
    ASSERT_TRUE(c) << c.error_message();
    b = std::move(c.value());
  }
};

TEST_F(kv_fixture, CompareAndSwapDetectsConflicts) {
  auto kv = kv_bucket::open(b->jetstream(), {"T_MAP", 0, 1, 1});
  ASSERT_TRUE(kv) << kv.error_message();
  auto w1 = (*kv)->create("map", "v1");
  ASSERT_TRUE(w1.ok) << w1.error;
  auto again = (*kv)->create("map", "other");
  EXPECT_FALSE(again.ok);
  EXPECT_TRUE(again.conflict) << again.error;
  // Two writers read revision r; the first update wins, the second conflicts.
  auto w2 = (*kv)->update("map", "v2", w1.revision);
  ASSERT_TRUE(w2.ok) << w2.error;
  auto w3 = (*kv)->update("map", "v3", w1.revision);
  EXPECT_FALSE(w3.ok);
  EXPECT_TRUE(w3.conflict) << w3.error;
  auto got = (*kv)->get("map");
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->value, "v2");
  EXPECT_EQ((*got)->revision, w2.revision);
}

TEST_F(kv_fixture, LeaderLeaseLapsesAndIsTakenOver) {
  // A 3 s TTL renewed every 200 ms: a renewal fails only if this process stalls for 2.8 s.
  auto lease = kv_bucket::open(b->jetstream(), {"T_LEASE", 3000, 1, 1});
  ASSERT_TRUE(lease) << lease.error_message();
  auto a = (*lease)->create("leader", "node-a");
  ASSERT_TRUE(a.ok) << a.error;
  EXPECT_TRUE((*lease)->create("leader", "node-b").conflict) << "a held lease cannot be taken";
  // node-a renews by CAS for a while; node-b keeps failing.
  uint64_t rev = a.revision;
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto r = (*lease)->update("leader", "node-a", rev);
    ASSERT_TRUE(r.ok) << r.error;
    rev = r.revision;
    EXPECT_FALSE((*lease)->create("leader", "node-b").ok);
  }
  // node-a stops renewing (dies): within the TTL plus the server's expiry check the lease is
  // gone and node-b takes it; node-a's stale CAS then fails.
  bool taken = false;
  auto t0 = std::chrono::steady_clock::now();
  while (!taken && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30)) {
    taken = (*lease)->create("leader", "node-b").ok;
    if (!taken) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ lease ] taken over %.2f s after the last renewal (TTL 3 s)\n", waited);
  ASSERT_TRUE(taken) << "the lease did not lapse within 30 s";
  EXPECT_GT(waited, 1.5) << "the lease must not lapse early";
  EXPECT_FALSE((*lease)->update("leader", "node-a", rev).ok)
      << "the old leader's renewal must fail";
  auto got = (*lease)->get("leader");
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->value, "node-b");
}

snapshot_manifest manifest(uint32_t shard, uint64_t applied) {
  snapshot_manifest m;
  m.shard = shard;
  m.node = "n1";
  m.epoch = 1;
  m.created_us = 1;
  m.applied["flights/origin"] = applied;
  return m;
}

TEST_F(kv_fixture, SnapshotsRoundTripAndRefuseCorruptionOldFormatsAndRollback) {
  snapshot_store::options o;
  o.chunk_bytes = 1000;  // force several chunks
  auto ss = snapshot_store::open(b->jetstream(), o);
  ASSERT_TRUE(ss) << ss.error_message();
  std::string blob;
  for (int i = 0; i < 5000; ++i) blob.push_back(static_cast<char>(i * 7 + i / 13));
  auto saved = (*ss)->save(manifest(5, 100), blob);
  ASSERT_TRUE(saved) << saved.error_message();
  EXPECT_TRUE(*saved);
  auto m = (*ss)->latest(5);
  ASSERT_TRUE(m && m->has_value());
  EXPECT_EQ((*m)->chunks.size(), 5u);
  auto got = (*ss)->fetch(**m);
  ASSERT_TRUE(got) << got.error_message();
  EXPECT_EQ(*got, blob);

  // A newer snapshot replaces it and the old chunks are deleted.
  auto first = **m;
  ASSERT_TRUE((*ss)->save(manifest(5, 100), blob + "more"));
  EXPECT_FALSE((*ss)->fetch(first)) << "old chunks must be gone";
  m = (*ss)->latest(5);
  ASSERT_TRUE(m && m->has_value());
  ASSERT_TRUE((*ss)->fetch(**m));
  EXPECT_EQ(*(*ss)->fetch(**m), blob + "more");

  // A stale snapshot (fewer applied events) never replaces a newer one.
  auto stale = (*ss)->save(manifest(5, 50), "old state");
  ASSERT_TRUE(stale);
  EXPECT_FALSE(*stale);
  EXPECT_EQ((*(*ss)->latest(5))->total_applied(), 100u);

  // A chunk whose checksum does not match is refused, never returned.
  auto bad = **m;
  bad.chunks[2].crc32 ^= 1;
  auto r1 = (*ss)->fetch(bad);
  ASSERT_FALSE(r1);
  EXPECT_NE(r1.error_message().find("checksum"), std::string::npos) << r1.error_message();
  // A whole-blob checksum mismatch too.
  bad = **m;
  bad.crc32 ^= 1;
  EXPECT_FALSE((*ss)->fetch(bad));
  // A manifest pointing at another shard's chunk.
  ASSERT_TRUE((*ss)->save(manifest(6, 1), "x"));
  bad = **m;
  bad.chunks[0].seq = (*(*ss)->latest(6))->chunks[0].seq;
  auto r2 = (*ss)->fetch(bad);
  ASSERT_FALSE(r2);
  EXPECT_NE(r2.error_message().find("is from"), std::string::npos) << r2.error_message();
  // A manifest of another format, or unreadable, is refused with the reason.
  auto j = (**m).to_json();
  auto pos = j.find("\"format\":1");
  ASSERT_NE(pos, std::string::npos);
  ASSERT_TRUE((*ss)->TEST_put_manifest(7, j.replace(pos, 10, "\"format\":0")).ok);
  auto r3 = (*ss)->latest(7);
  ASSERT_FALSE(r3);
  EXPECT_NE(r3.error_message().find("format 0"), std::string::npos) << r3.error_message();
  ASSERT_TRUE((*ss)->TEST_put_manifest(8, "{not json").ok);
  EXPECT_FALSE((*ss)->latest(8));
}

}  // namespace
}  // namespace tessera::test
