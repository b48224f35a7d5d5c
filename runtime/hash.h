// Stable entity → shard mapping. The hash is part of the wire contract (schemas/SUBJECTS.md):
// producers that publish to JetStream directly must compute the same shard, so it never changes.
#pragma once
#include <cstdint>
#include <string_view>

namespace tessera {

// 64-bit FNV-1a of the key's bytes.
inline uint64_t stable_hash(std::string_view key) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

inline uint32_t shard_of(std::string_view key, uint32_t shard_count) {
  return static_cast<uint32_t>(stable_hash(key) % shard_count);
}

}  // namespace tessera
