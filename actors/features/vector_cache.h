// Vectors the shards' entities computed, readable from any thread, so the gateway answers the
// common read (a known entity at the stream's clock) on its own thread without a hop into the
// actor system. Entries are (view@version, shard, entity) -> vector; a hit requires the
// caller's t to lie in the vector's validity [as_of, valid_until) (see feature_vector), so a
// live stream's clock, which moves on every read, still hits until a window edge passes, and
// the answer is exactly what the entity would compute at t. An entity erases
// its entries before it applies events, and a shard clears its entries when it (re)starts, so
// an entry never outlives the state it was computed from.
// Thread-safe (striped mutexes); owned by the node, outlives the actors and the gateway.
#pragma once
#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "aggregate.h"
#include "hash.h"

namespace tessera {

class vector_cache {
 public:
  void put(const std::string& view, uint32_t shard, const std::string& key,
           const feature_vector& v) {
    auto k = make_key(view, shard, key);
    auto& s = stripe(k);
    std::lock_guard<std::mutex> g(s.mu);
    s.map[std::move(k)] = v;
  }
  // The entity's vector at t, if the cached one is valid at t (its as_of set to t).
  std::optional<feature_vector> get(const std::string& view, uint32_t shard, const std::string& key,
                                    int64_t t) const {
    auto k = make_key(view, shard, key);
    auto& s = stripe(k);
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end() || !still_valid(it->second, t)) return std::nullopt;
    feature_vector out = it->second;
    out.as_of = t;
    return out;
  }
  void erase(const std::string& view, uint32_t shard, const std::string& key) {
    auto k = make_key(view, shard, key);
    auto& s = stripe(k);
    std::lock_guard<std::mutex> g(s.mu);
    s.map.erase(k);
  }
  // Drops every entry of one shard (rare: shard start).
  void clear_shard(uint32_t shard) {
    std::string tag = shard_tag(shard);
    for (auto& s : stripes_) {
      std::lock_guard<std::mutex> g(s.mu);
      for (auto it = s.map.begin(); it != s.map.end();) {
        if (it->first.compare(0, tag.size(), tag) == 0)
          it = s.map.erase(it);
        else
          ++it;
      }
    }
  }

 private:
  struct stripe_t {
    mutable std::mutex mu;
    std::unordered_map<std::string, feature_vector> map;
  };
  static std::string shard_tag(uint32_t shard) { return std::to_string(shard) + '\x1f'; }
  static std::string make_key(const std::string& view, uint32_t shard, const std::string& key) {
    return shard_tag(shard) + view + '\x1f' + key;
  }
  stripe_t& stripe(const std::string& k) { return stripes_[stable_hash(k) % stripes_.size()]; }
  const stripe_t& stripe(const std::string& k) const {
    return stripes_[stable_hash(k) % stripes_.size()];
  }
  std::array<stripe_t, 16> stripes_;
};

}  // namespace tessera
