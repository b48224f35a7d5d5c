// The node's vector cache answers exactly what the entity would compute at the time asked, only
// while the cached vector is valid, and forgets by entity and by shard.
#include <gtest/gtest.h>

#include <random>

#include "actors/features/vector_cache.h"
#include "aggregate.h"
#include "definitions.h"

namespace tessera {
namespace {

constexpr int64_t M = 60LL * 1000000;

const char* kDefs = R"lua(
stream { name = "s", time_field = "t", fields = { t = "timestamp", x = "float", tag = "text" } }
entity { name = "e", key = "tag" }
view { name = "v", entity = "e", stream = "s", ttl = "30m", features = {
  count { "n_10m", window = "10m" },
  mean { "mean_1h", field = "x", window = "1h" },
  last { "last_x_1h", field = "x", window = "1h" },
  last_n_distinct { "tags_1h", field = "tag", window = "1h", n = 2 },
} }
view { name = "w", entity = "e", stream = "s", features = {
  sum { "sum_1h", field = "x", window = "1h" },
} }
)lua";

void expect_same(const feature_vector& got, const feature_vector& want, const std::string& ctx) {
  EXPECT_EQ(got.view, want.view) << ctx;
  EXPECT_EQ(got.version, want.version) << ctx;
  EXPECT_EQ(got.entity, want.entity) << ctx;
  EXPECT_EQ(got.as_of, want.as_of) << ctx;
  EXPECT_EQ(got.event_time, want.event_time) << ctx;
  EXPECT_EQ(got.status, want.status) << ctx;
  ASSERT_EQ(got.values.size(), want.values.size()) << ctx;
  for (size_t i = 0; i < want.values.size(); ++i) {
    EXPECT_EQ(got.values[i].name, want.values[i].name) << ctx;
    EXPECT_EQ(got.values[i].v, want.values[i].v) << ctx << " " << want.values[i].name;
    EXPECT_EQ(got.values[i].event_time, want.values[i].event_time) << ctx;
  }
}

class VectorCache : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = definitions::load_string(kDefs);
    ASSERT_TRUE(d.ok()) << d.error_message();
    defs = *d;
    v = defs->find_view("v");
    w = defs->find_view("w");
    const kind_plan* plan = defs->find_plan("s", "e");
    auto slot = [&](const char* n) {
      return std::find(plan->stored_field_names.begin(), plan->stored_field_names.end(), n) -
             plan->stored_field_names.begin();
    };
    std::mt19937_64 rng(7);
    for (int i = 0; i < 40; ++i) {
      record r;
      r.time = (i * 7 + static_cast<int64_t>(rng() % 5)) * M;
      r.seq = static_cast<uint64_t>(i + 1);
      r.fields.resize(plan->stored_field_names.size());
      r.fields[slot("x")] = static_cast<double>(rng() % 100) / 10.0;
      r.fields[slot("tag")] = std::string(i % 3 ? "a" : "b");
      insert_record(records, r);
    }
  }
  std::shared_ptr<const definitions> defs;
  const view_def* v = nullptr;
  const view_def* w = nullptr;
  std::deque<record> records;
};

TEST_F(VectorCache, AHitIsWhatTheEntityComputesAtThatTimeAndOnlyWhileValid) {
  vector_cache cache;
  int hits = 0, misses = 0;
  for (int64_t t0 = 0; t0 < 300 * M; t0 += 13 * M) {
    const feature_vector at_t0 = compute_vector(*v, records, t0, "k1");
    cache.put(v->qualified(), 3, "k1", at_t0);
    for (int64_t t = t0 - 2 * M; t < t0 + 40 * M; t += M / 2) {
      const std::string ctx = "t0=" + std::to_string(t0 / M) + "m t=" + std::to_string(t / M) + "m";
      auto hit = cache.get(v->qualified(), 3, "k1", t);
      const bool valid = t >= at_t0.as_of && t < at_t0.valid_until;
      ASSERT_EQ(hit.has_value(), valid) << ctx;
      if (!hit) {
        ++misses;
        continue;
      }
      ++hits;
      expect_same(*hit, compute_vector(*v, records, t, "k1"), ctx);
    }
  }
  EXPECT_GT(hits, 100);
  EXPECT_GT(misses, 100);
}

TEST_F(VectorCache, EntriesAreKeptApartByViewShardAndEntityAndForgottenByEntityOrShard) {
  vector_cache cache;
  const int64_t t = 200 * M;
  EXPECT_FALSE(cache.get(v->qualified(), 0, "k", t));  // a view never seen
  for (uint32_t shard : {0u, 1u})
    for (const char* key : {"k", "a-very-long-entity-key-beyond-small-strings"}) {
      cache.put(v->qualified(), shard, key, compute_vector(*v, records, t, key));
      cache.put(w->qualified(), shard, key, compute_vector(*w, records, t, key));
    }
  EXPECT_EQ(cache.size(), 8u);
  expect_same(*cache.get(w->qualified(), 1, "k", t), compute_vector(*w, records, t, "k"), "w");
  EXPECT_FALSE(cache.get(v->qualified(), 2, "k", t));
  EXPECT_FALSE(cache.get(v->qualified(), 0, "other", t));

  cache.erase(v->qualified(), 0, "k");
  EXPECT_FALSE(cache.get(v->qualified(), 0, "k", t));
  EXPECT_TRUE(cache.get(w->qualified(), 0, "k", t));
  EXPECT_TRUE(cache.get(v->qualified(), 1, "k", t));

  cache.clear_shard(1);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.get(w->qualified(), 1, "k", t));
  expect_same(*cache.get(v->qualified(), 0, "a-very-long-entity-key-beyond-small-strings", t),
              compute_vector(*v, records, t, "a-very-long-entity-key-beyond-small-strings"),
              "long key");
}

}  // namespace
}  // namespace tessera
