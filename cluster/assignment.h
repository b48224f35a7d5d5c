// Shard assignment by rendezvous (highest-random-weight) hashing: each shard goes to the live
// node with the highest weight hash(node, shard). Every node computes the same answer from the
// same member list, and a change of members moves only the shards it must: a leaving node's
// shards spread over the others; a joining node takes about 1/N of the shards from the others.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hash.h"

namespace tessera {

inline uint64_t rendezvous_weight(const std::string& node, uint32_t shard) {
  // FNV-1a of the node id, mixed with the shard number by splitmix64's finaliser, so that
  // weights of one node across shards (and of nodes with similar ids) are uncorrelated.
  uint64_t x = stable_hash(node) ^ (0x9e3779b97f4a7c15ULL * (shard + 1));
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Owner of every shard; empty strings when there are no nodes. Ties (practically impossible)
// go to the smaller node id, so the result does not depend on the order of `nodes`.
inline std::vector<std::string> assign_shards(uint32_t shard_count,
                                              const std::vector<std::string>& nodes) {
  std::vector<std::string> owners(shard_count);
  for (uint32_t s = 0; s < shard_count; ++s) {
    uint64_t best = 0;
    const std::string* who = nullptr;
    for (auto& n : nodes) {
      uint64_t w = rendezvous_weight(n, s);
      if (!who || w > best || (w == best && n < *who)) {
        best = w;
        who = &n;
      }
    }
    if (who) owners[s] = *who;
  }
  return owners;
}

}  // namespace tessera
