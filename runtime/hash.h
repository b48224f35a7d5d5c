// Stable entity → shard mapping. The hash is part of the wire contract (schemas/SUBJECTS.md):
// producers that publish to JetStream directly must compute the same shard, so it never changes.
#pragma once
#include <cstdint>
#include <string_view>

namespace tessera {

constexpr uint64_t kFnvOffsetBasis = 14695981039346656037ULL;

// 64-bit FNV-1a, continued over more bytes (start from kFnvOffsetBasis). Also the hash of
// dataset files in their manifests.
inline uint64_t fnv1a_update(uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// 64-bit FNV-1a of the key's bytes.
inline uint64_t stable_hash(std::string_view key) {
  return fnv1a_update(kFnvOffsetBasis, key);
}

inline uint32_t shard_of(std::string_view key, uint32_t shard_count) {
  return static_cast<uint32_t>(stable_hash(key) % shard_count);
}

}  // namespace tessera
