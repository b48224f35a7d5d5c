#include "entities.h"

#include <algorithm>
#include <stdexcept>

#include "codec.h"
#include "vector_cache.h"

namespace tessera {

namespace {

// Inserts r keeping the order; an equal record (a redelivered event) is kept once.
void insert_sorted(std::vector<record>& records, record r) {
  if (records.empty() || records.back() < r) {
    records.push_back(std::move(r));
    return;
  }
  auto it = std::lower_bound(records.begin(), records.end(), r);
  if (it != records.end() && !(r < *it) && !(*it < r)) return;
  records.insert(it, std::move(r));
}

}  // namespace

void entity_table::reset(const std::vector<std::string>& persisted) {
  map_.clear();
  active_ = 0;
  map_.reserve(persisted.size());
  for (auto& k : persisted) map_[k].persisted = true;
}

bool entity_table::persisted(const std::string& key) const {
  auto it = map_.find(key);
  return it != map_.end() && it->second.persisted;
}

size_t entity_table::passive_count() const {
  size_t n = 0;
  for (auto& [k, e] : map_) n += e.persisted && !e.active;
  return n;
}

bool entity_table::active(const std::string& key) const {
  auto it = map_.find(key);
  return it != map_.end() && it->second.active;
}

entity_table::entity& entity_table::activate(const std::string& key, std::vector<record> records) {
  entity& e = map_[key];
  if (!e.active) {
    e.records = std::move(records);
    e.active = true;
    ++active_;
  }
  e.last_used = clock_type::now();
  return e;
}

void entity_table::free_records(entity& e) {
  std::vector<record>().swap(e.records);
  e.active = false;
  e.last_materialized = {};
  --active_;
}

void entity_table::deactivate(const std::string& key) {
  withdraw(key);
  auto it = map_.find(key);
  if (it != map_.end() && it->second.active) free_records(it->second);
}

void entity_table::withdraw(const std::string& key) {
  if (cache_)
    for (const view_def* v : plan_->views) cache_->erase(v->qualified(), shard_no_, key);
}

entity_delta entity_table::apply(const std::string& key, entity& e, const std::vector<record>& recs,
                                 int64_t prune_at, int64_t clock,
                                 std::chrono::milliseconds materialize_every) {
  if (e.TEST_crash_next) {
    e.TEST_crash_next = false;
    throw std::runtime_error("TEST_crash requested");
  }
  // Published vectors describe the old state: withdraw them before changing it.
  withdraw(key);
  for (const auto& r : recs) insert_sorted(e.records, r);
  entity_delta d;
  d.key = key;
  // Drop what no window or as-of read can reach any more.
  const int64_t cutoff = prune_at - plan_->retention_us;
  auto keep = std::find_if(e.records.begin(), e.records.end(),
                           [cutoff](const record& r) { return r.time > cutoff; });
  e.records.erase(e.records.begin(), keep);
  auto now = clock_type::now();
  e.last_used = now;
  if (now - e.last_materialized >= materialize_every) {
    e.last_materialized = now;
    for (uint32_t v = 0; v < plan_->views.size(); ++v)
      d.vectors.emplace_back(plan_->views[v]->qualified(), encode_vector(vector(key, e, v, clock)));
  }
  return d;
}

feature_vector entity_table::vector(const std::string& key, entity& e, uint32_t view, int64_t t) {
  if (view >= plan_->views.size()) throw std::out_of_range("view index");
  const view_def* v = plan_->views[view];
  if (cache_) {
    if (auto hit = cache_->get(v->qualified(), shard_no_, key, t)) return std::move(*hit);
  }
  feature_vector out = compute_vector(*v, e.records, t, key);
  if (cache_) cache_->put(v->qualified(), shard_no_, key, out);
  return out;
}

size_t entity_table::passivate_idle(std::chrono::milliseconds idle) {
  const auto now = clock_type::now();
  size_t n = 0;
  for (auto it = map_.begin(); it != map_.end();) {
    entity& e = it->second;
    if (e.active && now - e.last_used >= idle) {
      // Its published vectors stay: the state they describe is what is persisted.
      free_records(e);
      ++n;
    }
    if (!e.active && !e.persisted)
      it = map_.erase(it);  // activated by a read or a test, never applied
    else
      ++it;
  }
  return n;
}

}  // namespace tessera
