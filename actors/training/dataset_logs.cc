// This node's offline logs as the dataset reads them: indexed logs (dataset_impl.h), the
// node-wide cache of those many parts share, and point-in-time vectors of the shards this node
// serves (local_pit, for its own parts and for other nodes' reads).
#include "dataset.h"
#include "dataset_impl.h"

namespace tessera {

using dataset_detail::item;

std::shared_ptr<const dataset_service::impl::indexed_log> dataset_service::impl::cached(
    const std::string& k, uint64_t applied_seq) const {
  std::lock_guard<std::mutex> g(cache_mu);
  auto it = log_cache.find(k);
  if (it == log_cache.end() || it->second.applied_seq != applied_seq) return nullptr;
  lru.splice(lru.begin(), lru, it->second.lru);
  return it->second.log;
}

void dataset_service::impl::remember(const std::string& k, uint64_t applied_seq,
                                     std::shared_ptr<const indexed_log> log) const {
  const size_t bytes = log->bytes();
  std::lock_guard<std::mutex> g(cache_mu);
  if (bytes > kLogCacheBytes / 4) return;
  auto old = log_cache.find(k);
  if (old != log_cache.end()) {
    cache_bytes -= old->second.bytes;
    lru.erase(old->second.lru);
    log_cache.erase(old);
  }
  while (cache_bytes + bytes > kLogCacheBytes && !lru.empty()) {
    auto victim = log_cache.find(lru.back());
    cache_bytes -= victim->second.bytes;
    log_cache.erase(victim);
    lru.pop_back();
  }
  lru.push_front(k);
  log_cache[k] = cached_log{applied_seq, std::move(log), bytes, lru.begin()};
  cache_bytes += bytes;
}

dataset_service::impl::indexed_log::indexed_log(const view_def& v, const kind_plan& plan,
                                                const store& db, const shard_id& sid,
                                                const std::string& key, status& st) {
  index = std::make_unique<window_index>(v);
  if (!index->supported()) {
    std::vector<log_entry> es;
    st = db.scan_log(sid, key, INT64_MIN, INT64_MAX - 1, es);
    log.assign(plan, es);
    index = std::make_unique<window_index>(v, log);
    return;
  }
  // Only the fields the plan stores are decoded, straight into its layout. Sized from the log's
  // bytes in the store (an entry takes over 80): growing the index's arrays by doubling cost
  // a copy and fresh pages (each page fault is ~12 us on the VMs measured here).
  const std::vector<int> slot_of = stored_slot_of(plan);
  index->reserve(static_cast<size_t>(db.approximate_log_bytes(sid, key) / 80));
  st =
      db.for_each_entry(sid, key, INT64_MIN, INT64_MAX - 1, slot_of, plan.stored_field_index.size(),
                        [&](log_entry& e) { index->add(e.r.time, e.known, e.r.fields); });
  index->finish();
  has_log = false;
}

auto dataset_service::impl::shared_log(const view_def& v, const kind_plan& plan,
                                       const shard_id& sid, const std::string& key,
                                       uint64_t applied_seq) const
    -> result<std::shared_ptr<const indexed_log>> {
  const std::string ck = sid.name() + "/" + v.qualified() + "/" + key;
  if (auto hit = cached(ck, applied_seq)) return hit;
  std::lock_guard<std::mutex> g(load_mu[stable_hash(ck) % kLoadStripes]);
  if (auto hit = cached(ck, applied_seq)) return hit;  // read by another thread meanwhile
  status st = ok_status();
  auto use = std::make_shared<const indexed_log>(v, plan, *ctx->db, sid, key, st);
  if (!st) return make_error(st.error_message());
  remember(ck, applied_seq, use);
  return std::shared_ptr<const indexed_log>(use);
}

result<feature_vector> dataset_service::impl::walk(const view_def& v, const kind_plan& plan,
                                                   const indexed_log& l, const std::string& key,
                                                   int64_t t, std::deque<record>& scratch) const {
  if (l.has_log) return vector_at(v, l.log, t, key, scratch);
  std::vector<log_entry> es;
  if (auto st =
          ctx->db->scan_log(shard_id{v.stream, v.entity, shard_of(key, ctx->opts.shard_count)}, key,
                            INT64_MIN, INT64_MAX - 1, es);
      !st)
    return make_error(st.error_message());
  projected_log reread;
  reread.assign(plan, es);
  return vector_at(v, reread, t, key, scratch);
}

result<std::vector<feature_vector>> dataset_service::impl::local_pit(const view_def& v,
                                                                     uint32_t shard,
                                                                     std::vector<item> items,
                                                                     bool shared) const {
  route r = ctx->cluster ? ctx->cluster->route_of(shard) : route{route::local, {}, {}};
  if (r.kind != route::local)
    return make_error(r.kind == route::remote ? "shard " + std::to_string(shard) +
                                                    " is served by node " + r.owner + "; retry"
                                              : r.why);
  const kind_plan* plan = ctx->defs->find_plan(v.stream, v.entity);
  const stream_def* s = ctx->defs->find_stream(v.stream);
  shard_id sid{v.stream, v.entity, shard};
  const shard_meta meta = ctx->db->load_meta(sid);
  // The log holds events with time > watermark - retention: a window reaching before that
  // would be silently incomplete.
  const int64_t earliest =
      meta.watermark > 0 ? meta.watermark - s->offline_retention_us + v.max_window_us() : INT64_MIN;
  std::vector<feature_vector> out(items.size());
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return items[a].key != items[b].key ? items[a].key < items[b].key : items[a].t < items[b].t;
  });
  std::vector<log_entry> entries;
  std::deque<record> scratch;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    const std::string& key = items[order[i]].key;
    while (j < order.size() && items[order[j]].key == key) ++j;
    std::shared_ptr<const indexed_log> use;
    if (shared) {
      auto got = shared_log(v, *plan, sid, key, meta.applied_seq);
      if (!got) return make_error(got.error_message());
      use = std::move(*got);
    } else {
      entries.clear();
      if (auto st = ctx->db->scan_log(sid, key, items[order[i]].t - v.max_window_us(),
                                      items[order[j - 1]].t, entries);
          !st)
        return make_error(st.error_message());
      use = std::make_shared<const indexed_log>(v, *plan, entries);
    }
    for (size_t k = i; k < j; ++k) {
      const item& it = items[order[k]];
      if (it.t < earliest) {
        out[order[k]].as_of = 0;  // outside the retention
        continue;
      }
      if (use->index->supported() && use->index->at(it.t, key, out[order[k]])) continue;
      auto walked = walk(v, *plan, *use, key, it.t, scratch);
      if (!walked) return make_error(walked.error_message());
      out[order[k]] = std::move(*walked);
    }
    i = j;
  }
  return out;
}

}  // namespace tessera
