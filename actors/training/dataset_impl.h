// Internals of dataset_service, shared by dataset.cc (the facade and its workers),
// dataset_part.cc (building parts), dataset_logs.cc (the shared cache of indexed logs, local
// point-in-time reads) and dataset_remote.cc (what goes over NATS: other nodes' parts and
// point-in-time reads). Not for use elsewhere.
#pragma once
#include <algorithm>
#include <chrono>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#include "actors/features/messages.h"
#include "cluster/cluster_view.h"
#include "codec.h"
#include "hash.h"
#include "point_in_time.h"
#include "worker_pool.h"

namespace tessera {
namespace dataset_detail {

// One feature lookup: an entity of a view's kind at a feature time, for row `row`.
struct item {
  std::string key;
  int64_t t;
  size_t row;
};

}  // namespace dataset_detail

struct dataset_service::impl {
  explicit impl(int threads)
      : parts({threads, worker_pool::at_stop::drain}),
        reads({threads, worker_pool::at_stop::drain}) {}

  std::shared_ptr<const features_context> ctx;
  // Parts (which may wait on other nodes' point-in-time reads) and the point-in-time reads
  // other nodes ask of this one (which never wait on anyone) queue apart: two nodes whose
  // workers all built parts waiting on each other's reads sat out the read timeout (30 s) per
  // chunk when both shared one queue. Both drain when the service stops: every job queued has a
  // caller waiting for its answer.
  worker_pool parts, reads;
  std::mutex mu;
  // The last parts built for remote pages, by request (label/shard/from/to); guarded by mu.
  std::map<std::string,
           std::pair<std::chrono::steady_clock::time_point, std::shared_ptr<const dataset_part>>>
      part_cache;

  // A log with its window index for one view (see window_index): built once, read many times.
  struct indexed_log {
    projected_log log;  // empty when lean (has_log false): the index answers alone, a refused read
                        // reads the log again
    std::unique_ptr<window_index> index;
    bool has_log = true;
    indexed_log(const view_def& v, const kind_plan& plan, const std::vector<log_entry>& entries) {
      log.assign(plan, entries);
      index = std::make_unique<window_index>(v, log);
    }
    // Lean, read straight from the store entry by entry (no projected log, no entry vector);
    // a view the index does not support keeps its log.
    indexed_log(const view_def& v, const kind_plan& plan, const store& db, const shard_id& sid,
                const std::string& key, status& st);
    indexed_log(indexed_log&&) = delete;  // the index points into `log`
    size_t bytes() const {
      size_t b = 64 + log.records.size() * (sizeof(record) + sizeof(int64_t) + 16) + index->bytes();
      for (auto& r : log.records) b += r.fields.size() * sizeof(value);
      return b;
    }
  };
  // Indexed logs of entities that many parts read (a view on another entity kind than the
  // label's: every part of the route kind reads every airport), kept while their shard applied
  // nothing new (same applied sequence), least recently used first out, within kLogCacheBytes.
  struct cached_log {
    uint64_t applied_seq = 0;
    std::shared_ptr<const indexed_log> log;
    size_t bytes = 0;
    std::list<std::string>::iterator lru;
  };
  static constexpr size_t kLogCacheBytes = 512ull << 20;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, cached_log> log_cache;
  mutable std::list<std::string> lru;
  mutable size_t cache_bytes = 0;

  std::shared_ptr<const indexed_log> cached(const std::string& k, uint64_t applied_seq) const;
  void remember(const std::string& k, uint64_t applied_seq,
                std::shared_ptr<const indexed_log> log) const;

  // (cached, remember, shared_log, walk, local_pit: dataset_logs.cc)
  // The lean indexed log of an entity read by many parts, from the cache or read and indexed now.
  // One thread reads a given entity while others asking for it wait (parts in flight together
  // read the same airports in the same order; each used to read them all).
  static constexpr size_t kLoadStripes = 64;
  mutable std::mutex load_mu[kLoadStripes];
  result<std::shared_ptr<const indexed_log>> shared_log(const view_def& v, const kind_plan& plan,
                                                        const shard_id& sid, const std::string& key,
                                                        uint64_t applied_seq) const;

  // The filtering walk at t over an indexed log, for reads its index refuses (see vector_at);
  // a lean log is read again from the store.
  result<feature_vector> walk(const view_def& v, const kind_plan& plan, const indexed_log& l,
                              const std::string& key, int64_t t, std::deque<record>& scratch) const;

  // Point-in-time vectors of `v` for items of one shard this node serves (error otherwise).
  // `shared`: the entities are read by many parts (see cached_log), so whole logs are cached.
  result<std::vector<feature_vector>> local_pit(const view_def& v, uint32_t shard,
                                                std::vector<dataset_detail::item> items,
                                                bool shared = true) const;

  // The same for a shard served elsewhere: asks its owner over NATS, in chunks.
  // (dataset_remote.cc)
  result<std::vector<feature_vector>> remote_pit(
      const view_def& v, uint32_t shard, const std::string& owner,
      const std::vector<dataset_detail::item>& items) const;

  // One shard's part, streaming over its log once: the log arrives entity by entity in time
  // order, so a view on the label's own entity kind is read from the entity's entries as they
  // pass (no second read); views on other kinds come from the shared cache of indexed logs, or
  // from their shards' owners (batched, after the scan). Feature values go into one flat table
  // of cells (examples x feature columns), written out as CSV at the end (dataset_part.cc).
  // Errors: errc::not_found when another node serves the shard (ask that node); `retryable`
  // set when the shard or a view's shard is moving or an owner did not answer.
  result<dataset_part> build_part(const label_def& label, uint32_t shard, int64_t from, int64_t to,
                                  bool& retryable) const;
};

}  // namespace tessera
