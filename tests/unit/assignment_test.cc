// Rendezvous assignment against properties checked by brute force: deterministic and
// independent of member order, every shard owned by a member, balanced, and a membership
// change moves only the shards it must.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "cluster/assignment.h"

namespace tessera {
namespace {

std::vector<std::string> nodes(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("node-" + std::to_string(i));
  return v;
}

TEST(Assignment, DeterministicAndOrderIndependent) {
  auto ns = nodes(5);
  auto a = assign_shards(64, ns);
  std::mt19937 rng(3);
  for (int i = 0; i < 20; ++i) {
    std::shuffle(ns.begin(), ns.end(), rng);
    EXPECT_EQ(assign_shards(64, ns), a);
  }
  for (auto& o : a) EXPECT_TRUE(std::find(ns.begin(), ns.end(), o) != ns.end());
  EXPECT_EQ(assign_shards(64, {}), std::vector<std::string>(64));
  EXPECT_EQ(assign_shards(8, {"solo"}), std::vector<std::string>(8, "solo"));
}

TEST(Assignment, EveryShardGoesToTheHighestWeight) {
  auto ns = nodes(4);
  auto a = assign_shards(256, ns);
  for (uint32_t s = 0; s < 256; ++s) {
    std::string best;
    uint64_t w = 0;
    for (auto& n : ns)
      if (best.empty() || rendezvous_weight(n, s) > w) {
        w = rendezvous_weight(n, s);
        best = n;
      }
    EXPECT_EQ(a[s], best) << "shard " << s;
  }
}

TEST(Assignment, BalancedWithinReason) {
  for (int n : {2, 3, 5, 8}) {
    auto a = assign_shards(1024, nodes(n));
    std::map<std::string, int> count;
    for (auto& o : a) count[o]++;
    ASSERT_EQ(count.size(), static_cast<size_t>(n));
    for (auto& [node, c] : count) {
      EXPECT_GT(c, 1024 / n * 0.75) << n << " nodes: " << node;
      EXPECT_LT(c, 1024 / n * 1.25) << n << " nodes: " << node;
    }
  }
}

TEST(Assignment, JoinMovesOnlyToTheNewNodeAndLeaveOnlyFromTheOldOne) {
  auto three = nodes(3);
  auto four = nodes(4);
  auto before = assign_shards(64, three), after = assign_shards(64, four);
  int moved = 0;
  for (uint32_t s = 0; s < 64; ++s)
    if (before[s] != after[s]) {
      ++moved;
      EXPECT_EQ(after[s], "node-3") << "a join only moves shards to the joining node";
    }
  EXPECT_GT(moved, 64 / 4 / 2);
  EXPECT_LT(moved, 64 / 4 * 2);
  // node-1 leaves: only its shards move.
  std::vector<std::string> without{"node-0", "node-2", "node-3"};
  auto left = assign_shards(64, without);
  for (uint32_t s = 0; s < 64; ++s) {
    if (after[s] != "node-1")
      EXPECT_EQ(left[s], after[s]) << "shard " << s << " moved though its owner stayed";
    else
      EXPECT_NE(left[s], "node-1");
  }
}

}  // namespace
}  // namespace tessera
