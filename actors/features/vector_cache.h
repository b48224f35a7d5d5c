// Vectors the shards' entities computed, readable from any thread, so the gateway answers the
// common read (a known entity at the stream's clock) on its own thread without a hop into the
// actor system. Entries are (view@version, shard, entity) -> vector; a hit requires the
// caller's t to lie in the vector's validity [as_of, valid_until) (see feature_vector), so a
// live stream's clock, which moves on every read, still hits until a window edge passes, and
// the answer is exactly what the entity would compute at t. An entity erases
// its entries before it applies events, and a shard clears its entries when it (re)starts, so
// an entry never outlives the state it was computed from.
// Compact (issue 18, memory per entity): one entry holds the vector's times, status and values
// only; the view's name, version and feature names are kept once per view and put back on a
// hit, and entries are found by (shard, view) then entity key, so a lookup allocates nothing.
// Thread-safe (striped mutexes; the view table under its own); owned by the node, outlives the
// actors and the gateway.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "aggregate.h"
#include "hash.h"

namespace tessera {

class vector_cache {
 public:
  void put(const std::string& view, uint32_t shard, const std::string& key,
           const feature_vector& v) {
    const view_info* info = view_of(view, &v);
    if (!info || !same_features(*info, v)) return;  // not cached: read from the entity
    entry e;
    e.as_of = v.as_of;
    e.event_time = v.event_time;
    e.valid_until = v.valid_until;
    e.status = v.status;
    e.values = std::make_unique<slot[]>(v.values.size());
    for (size_t i = 0; i < v.values.size(); ++i)
      e.values[i] = {v.values[i].v, v.values[i].event_time};
    auto& s = stripe(key);
    std::lock_guard<std::mutex> g(s.mu);
    s.by_tag[tag(shard, info->id)][key] = std::move(e);
  }
  // The entity's vector at t, if the cached one is valid at t (its as_of set to t).
  std::optional<feature_vector> get(const std::string& view, uint32_t shard, const std::string& key,
                                    int64_t t) const {
    const view_info* info = view_of(view, nullptr);
    if (!info) return std::nullopt;
    feature_vector out;
    {
      auto& s = stripe(key);
      std::lock_guard<std::mutex> g(s.mu);
      auto bt = s.by_tag.find(tag(shard, info->id));
      if (bt == s.by_tag.end()) return std::nullopt;
      auto it = bt->second.find(key);
      if (it == bt->second.end()) return std::nullopt;
      const entry& e = it->second;
      if (t < e.as_of || t >= e.valid_until) return std::nullopt;  // still_valid()
      out.event_time = e.event_time;
      out.valid_until = e.valid_until;
      out.status = e.status;
      out.values.resize(info->features.size());
      for (size_t i = 0; i < out.values.size(); ++i) {
        out.values[i].v = e.values[i].v;
        out.values[i].event_time = e.values[i].event_time;
      }
    }
    out.view = info->name;
    out.version = info->version;
    out.entity = key;
    out.as_of = t;
    for (size_t i = 0; i < out.values.size(); ++i) out.values[i].name = info->features[i];
    return out;
  }
  void erase(const std::string& view, uint32_t shard, const std::string& key) {
    const view_info* info = view_of(view, nullptr);
    if (!info) return;
    auto& s = stripe(key);
    std::lock_guard<std::mutex> g(s.mu);
    auto bt = s.by_tag.find(tag(shard, info->id));
    if (bt != s.by_tag.end()) bt->second.erase(key);
  }
  // Drops every entry of one shard (rare: shard start).
  void clear_shard(uint32_t shard) {
    for (auto& s : stripes_) {
      std::lock_guard<std::mutex> g(s.mu);
      for (auto it = s.by_tag.begin(); it != s.by_tag.end();) {
        if (static_cast<uint32_t>(it->first >> 32) == shard)
          it = s.by_tag.erase(it);
        else
          ++it;
      }
    }
  }
  size_t size() const {
    size_t n = 0;
    for (auto& s : stripes_) {
      std::lock_guard<std::mutex> g(s.mu);
      for (auto& [t, m] : s.by_tag) n += m.size();
    }
    return n;
  }

 private:
  struct view_info {
    uint32_t id = 0;
    std::string name;  // without the version
    uint32_t version = 0;
    std::vector<std::string> features;
  };
  struct slot {
    value v;
    int64_t event_time = 0;
  };
  struct entry {
    int64_t as_of = 0, event_time = 0, valid_until = 0;
    vector_status status = vector_status::missing;
    std::unique_ptr<slot[]> values;  // view_info::features.size() of them
  };
  struct stripe_t {
    mutable std::mutex mu;
    std::unordered_map<uint64_t, std::unordered_map<std::string, entry>> by_tag;
  };
  static uint64_t tag(uint32_t shard, uint32_t view) {
    return (static_cast<uint64_t>(shard) << 32) | view;
  }
  static bool same_features(const view_info& info, const feature_vector& v) {
    if (info.features.size() != v.values.size()) return false;
    for (size_t i = 0; i < v.values.size(); ++i)
      if (info.features[i] != v.values[i].name) return false;
    return true;
  }
  // The view's entry in the table, registered from `first` (a vector of it) when new. Entries
  // are never removed (a node serves a handful of view versions), so pointers stay valid.
  const view_info* view_of(const std::string& qualified, const feature_vector* first) const {
    {
      std::shared_lock<std::shared_mutex> g(views_mu_);
      auto it = views_.find(qualified);
      if (it != views_.end()) return it->second.get();
    }
    if (!first) return nullptr;
    std::unique_lock<std::shared_mutex> g(views_mu_);
    auto& slot_ptr = views_[qualified];
    if (!slot_ptr) {
      slot_ptr = std::make_unique<view_info>();
      slot_ptr->id = static_cast<uint32_t>(views_.size());
      slot_ptr->name = first->view;
      slot_ptr->version = first->version;
      for (auto& f : first->values) slot_ptr->features.push_back(f.name);
    }
    return slot_ptr.get();
  }
  stripe_t& stripe(const std::string& k) { return stripes_[stable_hash(k) % stripes_.size()]; }
  const stripe_t& stripe(const std::string& k) const {
    return stripes_[stable_hash(k) % stripes_.size()];
  }
  std::array<stripe_t, 16> stripes_;
  mutable std::shared_mutex views_mu_;
  mutable std::unordered_map<std::string, std::unique_ptr<view_info>> views_;
};

}  // namespace tessera
