#include <gtest/gtest.h>

#include "hash.h"

namespace tessera {

// Published FNV-1a 64-bit test vectors, and shard numbers computed independently (Python).
TEST(StableHash, MatchesPublishedFnv1aVectors) {
  EXPECT_EQ(stable_hash(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(stable_hash("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(stable_hash("LAX"), 0x25748019b8f29232ULL);
}

TEST(StableHash, ShardsAreStableAcrossReleases) {
  EXPECT_EQ(shard_of("LAX", 64), 50u);
  EXPECT_EQ(shard_of("LAX-SFO", 64), 33u);
  EXPECT_EQ(shard_of("ORD", 64), 32u);
}

TEST(StableHash, SpreadsKeysOverShards) {
  std::vector<int> hits(64);
  for (int i = 0; i < 64000; ++i) hits[shard_of("entity-" + std::to_string(i), 64)]++;
  for (int h : hits) {
    EXPECT_GT(h, 800);
    EXPECT_LT(h, 1200);
  }
}

}  // namespace tessera
