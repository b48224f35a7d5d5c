#include "dataset.h"

#include <capnp/message.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <list>
#include <unordered_map>
#include <cstring>
#include <string_view>
#include <chrono>

#include "actors/features/messages.h"
#include "cluster/cluster_view.h"
#include "codec.h"
#include "hash.h"
#include "point_in_time.h"

namespace tessera {

std::string node_pit_subject(const std::string& node_id) { return "tsr.node." + node_id + ".pit"; }
std::string node_part_subject(const std::string& node_id) { return "tsr.node." + node_id + ".part"; }

namespace {

constexpr size_t kItemsPerRequest = 1000;  // keeps replies well under NATS' 1 MiB payload limit
constexpr int64_t kPitTimeoutMs = 30000;
constexpr size_t kPartPageBytes = 512 * 1024;

std::string flat(capnp::MessageBuilder& mb) {
  auto words = capnp::messageToFlatArray(mb);
  auto b = words.asBytes();
  return std::string(reinterpret_cast<const char*>(b.begin()), b.size());
}

// A blocking NATS request (the caller is a worker thread).
result<std::string> request_sync(bus* nats, const std::string& subject, const std::string& data, int64_t timeout_ms) {
  auto holder = std::make_shared<std::promise<result<std::string>>>();
  auto f = holder->get_future();
  nats->request(subject, data, timeout_ms, [holder](result<std::string> r) { holder->set_value(std::move(r)); });
  return f.get();
}

// One feature lookup: an entity of a view's kind at a feature time, for row `row`.
struct item {
  std::string key;
  int64_t t;
  size_t row;
};

void append_int(std::string& out, int64_t x) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, r.ptr);
}

void append_double(std::string& out, double d, uint64_t& non_finite) {
  if (!std::isfinite(d)) {
    ++non_finite;  // an empty cell
    return;
  }
  // The shortest text that reads back as exactly this double. Integral values below 10^5 print
  // as the integer (never shorter in exponent form, and fixed wins ties): the same text, faster.
  if (d == std::trunc(d) && std::fabs(d) < 1e5 && !(d == 0 && std::signbit(d))) {
    append_int(out, static_cast<int64_t>(d));
    return;
  }
  char buf[40];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  out.append(buf, r.ptr);
}

// Quoted, with quotes doubled (RFC 4180).
void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0;;) {
    const size_t q = s.find('"', i);
    out.append(s.data() + i, (q == std::string_view::npos ? s.size() : q) - i);
    if (q == std::string_view::npos) break;
    out += "\"\"";
    i = q + 1;
  }
  out += '"';
}

void append_cell(std::string& out, const value& v, uint64_t& non_finite) {
  switch (v.index()) {
    case 0: break;
    case 1: append_int(out, std::get<int64_t>(v)); break;
    case 2: append_double(out, std::get<double>(v), non_finite); break;
    default: append_quoted(out, to_text(v));  // text or lists
  }
}

}  // namespace

struct dataset_service::impl {
  std::shared_ptr<const features_context> ctx;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> jobs;
  bool stopping = false;
  std::vector<std::thread> workers;
  // The last parts built for remote pages, by request (label/shard/from/to); guarded by mu.
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, std::shared_ptr<const dataset_part>>> part_cache;

  bool submit(std::function<void()> job) {
    std::lock_guard<std::mutex> g(mu);
    if (stopping) return false;
    jobs.push_back(std::move(job));
    cv.notify_one();
    return true;
  }
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return stopping || !jobs.empty(); });
        if (jobs.empty()) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job();
    }
  }

  // A log with its window index for one view (see window_index): built once, read many times.
  struct indexed_log {
    projected_log log;  // empty when `lean`: the index answers alone, a refused read reads the log again
    std::unique_ptr<window_index> index;
    bool has_log = true;
    indexed_log(const view_def& v, const kind_plan& plan, const std::vector<log_entry>& entries, bool lean = false) {
      log.assign(plan, entries);
      index = std::make_unique<window_index>(v, log);
      if (lean && index->supported()) {
        log = projected_log();  // about half the bytes: twice the entities fit in the cache
        has_log = false;
      }
    }
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

  std::shared_ptr<const indexed_log> cached(const std::string& k, uint64_t applied_seq) const {
    std::lock_guard<std::mutex> g(cache_mu);
    auto it = log_cache.find(k);
    if (it == log_cache.end() || it->second.applied_seq != applied_seq) return nullptr;
    lru.splice(lru.begin(), lru, it->second.lru);
    return it->second.log;
  }
  void remember(const std::string& k, uint64_t applied_seq, std::shared_ptr<const indexed_log> log) const {
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

  // The lean indexed log of an entity read by many parts, from the cache or read and indexed now.
  // One thread reads a given entity while others asking for it wait (parts in flight together
  // read the same airports in the same order; each used to read them all).
  static constexpr size_t kLoadStripes = 64;
  mutable std::mutex load_mu[kLoadStripes];
  result<std::shared_ptr<const indexed_log>> shared_log(const view_def& v, const kind_plan& plan, const shard_id& sid, const std::string& key,
                                                        uint64_t applied_seq) const {
    const std::string ck = sid.name() + "/" + v.qualified() + "/" + key;
    if (auto hit = cached(ck, applied_seq)) return hit;
    std::lock_guard<std::mutex> g(load_mu[stable_hash(ck) % kLoadStripes]);
    if (auto hit = cached(ck, applied_seq)) return hit;  // read by another thread meanwhile
    std::vector<log_entry> es;
    if (auto st = ctx->db->scan_log(sid, key, INT64_MIN, INT64_MAX - 1, es); !st) return make_error(st.error_message());
    auto use = std::make_shared<const indexed_log>(v, plan, es, /*lean=*/true);
    remember(ck, applied_seq, use);
    return std::shared_ptr<const indexed_log>(use);
  }

  // The filtering walk at t over an indexed log, for reads its index refuses (see vector_at);
  // a lean log is read again from the store.
  result<feature_vector> walk(const view_def& v, const kind_plan& plan, const indexed_log& l, const std::string& key, int64_t t,
                              std::deque<record>& scratch) const {
    if (l.has_log) return vector_at(v, l.log, t, key, scratch);
    std::vector<log_entry> es;
    if (auto st = ctx->db->scan_log(shard_id{v.stream, v.entity, shard_of(key, ctx->opts.shard_count)}, key, INT64_MIN, INT64_MAX - 1, es); !st)
      return make_error(st.error_message());
    projected_log reread;
    reread.assign(plan, es);
    return vector_at(v, reread, t, key, scratch);
  }

  // Point-in-time vectors of `v` for items of one shard this node serves (error otherwise).
  // `shared`: the entities are read by many parts (see cached_log), so whole logs are cached.
  result<std::vector<feature_vector>> local_pit(const view_def& v, uint32_t shard, std::vector<item> items, bool shared = true) const {
    route r = ctx->cluster ? ctx->cluster->route_of(shard) : route{route::local, {}, {}};
    if (r.kind != route::local) return make_error(r.kind == route::remote ? "shard " + std::to_string(shard) + " is served by node " + r.owner + "; retry" : r.why);
    const kind_plan* plan = ctx->defs->find_plan(v.stream, v.entity);
    const stream_def* s = ctx->defs->find_stream(v.stream);
    shard_id sid{v.stream, v.entity, shard};
    const shard_meta meta = ctx->db->load_meta(sid);
    // The log holds events with time > watermark - retention: a window reaching before that
    // would be silently incomplete.
    const int64_t earliest = meta.watermark > 0 ? meta.watermark - s->offline_retention_us + v.max_window_us() : INT64_MIN;
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
        if (auto st = ctx->db->scan_log(sid, key, items[order[i]].t - v.max_window_us(), items[order[j - 1]].t, entries); !st)
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

  // The same for a shard served elsewhere: asks its owner over NATS, in chunks.
  result<std::vector<feature_vector>> remote_pit(const view_def& v, uint32_t shard, const std::string& owner,
                                                 const std::vector<item>& items) const {
    std::vector<feature_vector> out;
    out.reserve(items.size());
    for (size_t off = 0; off < items.size(); off += kItemsPerRequest) {
      size_t n = std::min(kItemsPerRequest, items.size() - off);
      capnp::MallocMessageBuilder mb;
      auto req = mb.initRoot<wire::PitRead>();
      req.setView(v.qualified());
      req.setShard(shard);
      auto il = req.initItems(static_cast<unsigned>(n));
      for (size_t k = 0; k < n; ++k) {
        il[static_cast<unsigned>(k)].setEntity(items[off + k].key);
        il[static_cast<unsigned>(k)].setTime(items[off + k].t);
      }
      auto rep = request_sync(ctx->nats, node_pit_subject(owner), flat(mb), kPitTimeoutMs);
      if (!rep) return make_error("node " + owner + " did not answer a point-in-time read (" + rep.error_message() + "); retry");
      std::string err;
      size_t got = 0;
      bool ok = with_message<wire::ForwardedReadReply>(*rep, [&](wire::ForwardedReadReply::Reader r) {
        if (r.getError().size()) {
          err = std::string(r.getError().cStr()) + " (at node " + owner + ")";
          return;
        }
        for (auto fv : r.getVectors()) {
          out.push_back(read_vector(fv));
          ++got;
        }
      });
      if (!ok) return make_error("node " + owner + " sent a malformed point-in-time reply");
      if (!err.empty()) return make_error(err);
      if (got != n) return make_error("node " + owner + " answered " + std::to_string(got) + " vectors for " + std::to_string(n) + " items");
    }
    return out;
  }

  // One shard's part, streaming over its log once: the log arrives entity by entity in time
  // order, so a view on the label's own entity kind is read from the entity's entries as they
  // pass (no second read); views on other kinds come from the shared cache of indexed logs, or
  // from their shards' owners (batched, after the scan). Feature values go into one flat table
  // of cells (examples x feature columns), written out as CSV at the end.
  result<dataset_part> build_part(const label_def& label, uint32_t shard, int64_t from, int64_t to, bool& retryable) const {
    retryable = false;
    route r = ctx->cluster ? ctx->cluster->route_of(shard) : route{route::local, {}, {}};
    if (r.kind == route::unavailable) {
      retryable = true;
      return make_error(r.why);
    }
    if (r.kind == route::remote)
      return make_error("shard " + std::to_string(shard) + " is served by node " + r.owner +
                        "; ask that node (status lists every member's RPC address)");
    dataset_part part;
    part.columns = {"prediction_time", "entity", "label"};
    for (auto& c : label.feature_columns()) part.columns.push_back(c);

    const size_t nv = label.views.size(), nod = label.on_demand.size();
    const uint32_t nshards = ctx->opts.shard_count;
    std::vector<size_t> col0(nv + 1, 0);  // each view's first cell in a row of cells
    std::vector<const kind_plan*> plans;
    std::vector<bool> own(nv);  // on the label's entity kind: read from the scanned entity's log
    bool any_own = false;
    for (size_t vi = 0; vi < nv; ++vi) {
      const view_def* v = label.views[vi];
      col0[vi + 1] = col0[vi] + v->features.size();
      plans.push_back(ctx->defs->find_plan(v->stream, v->entity));
      own[vi] = v->stream == label.stream && v->entity == label.entity;
      any_own = any_own || own[vi];
    }
    const size_t nf = col0[nv];

    struct example {
      uint32_t entity;  // index into `entities`
      int64_t time, feature_time;
      double label;
    };
    // Per worker thread, reused by its next part: a part's tables are tens of MB, and fresh
    // ones cost a page fault per 4 KiB.
    static thread_local std::vector<std::string> entities;  // the scanned entities with examples, in log order
    static thread_local std::vector<example> examples;
    static thread_local std::vector<value> on_demand;  // examples x nod
    static thread_local std::vector<value> cells;      // examples x nf; monostate: missing
    static thread_local std::vector<uint8_t> outside;  // per example: a window reaches before its view's retention
    entities.clear(), examples.clear(), on_demand.clear(), cells.clear(), outside.clear();
    std::vector<std::vector<item>> remote(nv);
    std::string err;
    std::deque<record> scratch;

    // Shards of each view's entity kind, looked up once per part.
    struct shard_info {
      bool known = false;
      route rt;
      uint64_t applied_seq = 0;
      int64_t earliest = INT64_MIN;  // feature times before it read windows older than the log
    };
    std::vector<std::vector<shard_info>> infos(nv, std::vector<shard_info>(nshards));
    auto info = [&](size_t vi, uint32_t sh) -> shard_info& {
      shard_info& si = infos[vi][sh];
      if (si.known) return si;
      si.known = true;
      si.rt = sh == shard ? r : ctx->cluster ? ctx->cluster->route_of(sh) : route{route::local, {}, {}};
      if (si.rt.kind != route::local) return si;
      const view_def& v = *label.views[vi];
      const shard_meta meta = ctx->db->load_meta(shard_id{v.stream, v.entity, sh});
      si.applied_seq = meta.applied_seq;
      // The log holds events with time > watermark - retention: a window reaching before that
      // would be silently incomplete.
      if (meta.watermark > 0) si.earliest = meta.watermark - ctx->defs->find_stream(v.stream)->offline_retention_us + v.max_window_us();
      return si;
    };
    // The cells of view vi for example `row`, read from an indexed log of `key`.
    auto fill = [&](size_t vi, const indexed_log& l, window_index::cursor& cur, const std::string& key, size_t row) {
      value* out = &cells[row * nf + col0[vi]];
      const int64_t t = examples[row].feature_time;
      if (l.index->supported() && l.index->cells(t, out, nullptr, &cur)) return;
      // Something in the window was known only after t: the filtering walk, over the log.
      auto walked = walk(*label.views[vi], *plans[vi], l, key, t, scratch);
      if (!walked) {
        err = "view " + label.views[vi]->qualified() + ": " + walked.error_message();
        return;
      }
      feature_vector& fv = *walked;
      for (size_t f = 0; f < fv.values.size() && f < col0[vi + 1] - col0[vi]; ++f) out[f] = std::move(fv.values[f].v);
    };
    // Views on other entity kinds: the last entity's log per view (a route's origin is always
    // the same airport), else the node-wide cache, else read and indexed now.
    std::vector<std::string> last_key(nv);
    std::vector<std::shared_ptr<const indexed_log>> last_log(nv);
    std::vector<window_index::cursor> last_cursor(nv);
    auto lookup = [&](size_t vi, std::string key, size_t row) {
      const view_def& v = *label.views[vi];
      const uint32_t sh = shard_of(key, nshards);
      shard_info& si = info(vi, sh);
      if (si.rt.kind == route::remote) {
        remote[vi].push_back({std::move(key), examples[row].feature_time, row});
        return;
      }
      if (si.rt.kind != route::local) {
        retryable = true;
        err = "view " + v.qualified() + ", shard " + std::to_string(sh) + ": " + si.rt.why;
        return;
      }
      if (examples[row].feature_time < si.earliest) {
        outside[row] = 1;
        return;
      }
      if (!last_log[vi] || last_key[vi] != key) {
        auto use = shared_log(v, *plans[vi], shard_id{v.stream, v.entity, sh}, key, si.applied_seq);
        if (!use) {
          err = "view " + v.qualified() + ", shard " + std::to_string(sh) + ": " + use.error_message();
          return;
        }
        last_key[vi] = std::move(key);
        last_log[vi] = std::move(*use);
        last_cursor[vi] = {};
      }
      fill(vi, *last_log[vi], last_cursor[vi], last_key[vi], row);
    };

    // 1. The examples: this shard's log of the label's entity kind, one entity at a time.
    static thread_local std::vector<log_entry> group;  // the current entity's entries (when a view reads them)
    group.clear();
    size_t group_first = 0;        // its first example
    auto finish_entity = [&] {
      if (examples.size() > group_first && err.empty()) {
        const std::string& key = entities[examples[group_first].entity];
        for (size_t vi = 0; vi < nv; ++vi) {
          if (!own[vi]) continue;
          const shard_info& si = info(vi, shard);
          const indexed_log l(*label.views[vi], *plans[vi], group);
          window_index::cursor cur;
          for (size_t row = group_first; row < examples.size(); ++row) {
            if (examples[row].feature_time < si.earliest) outside[row] = 1;
            else fill(vi, l, cur, key, row);
          }
        }
      }
      group.clear();
      group_first = examples.size();
    };
    size_t unusable = 0;
    std::string current;
    bool first = true;
    auto st = ctx->db->for_each_log(shard_id{label.stream, label.entity, shard}, INT64_MIN, INT64_MAX,
                                    [&](const std::string& key, log_entry&& e) {
                                      if (!err.empty()) return;
                                      if (first || key != current) {
                                        finish_entity();
                                        current = key;
                                        first = false;
                                      }
                                      double t, y;
                                      if (!as_number(label.time->eval(e.r.fields), t) || !std::isfinite(t)) {
                                        ++unusable;
                                      } else if (const int64_t pt = static_cast<int64_t>(std::llround(t)); pt >= from && pt < to) {
                                        ++part.examples;
                                        if (!as_number(label.value->eval(e.r.fields), y) || !std::isfinite(y)) {
                                          ++part.unlabelled;
                                        } else {
                                          if (examples.size() == group_first) entities.push_back(key);
                                          const size_t row = examples.size();
                                          examples.push_back({static_cast<uint32_t>(entities.size() - 1), pt, feature_time(label, pt), y});
                                          for (auto& od : label.on_demand) on_demand.push_back(od.e->eval(e.r.fields));
                                          cells.resize(cells.size() + nf);
                                          outside.push_back(0);
                                          for (size_t vi = 0; vi < nv && err.empty(); ++vi) {
                                            if (own[vi]) continue;
                                            event_error kerr;
                                            std::string k = entity_key(e.r.fields, *plans[vi], kerr);
                                            if (!k.empty()) lookup(vi, std::move(k), row);  // else: no key, missing values
                                          }
                                        }
                                      }
                                      if (any_own) group.push_back(std::move(e));
                                    });
    if (!st) return make_error(st.error_message());
    finish_entity();
    if (!err.empty()) return make_error(err);
    if (unusable)
      spdlog::warn("dataset {}: shard {}: {} log entries without a usable prediction time ({})", label.name, shard, unusable, label.time_src);

    // 2. Views whose entities other nodes serve: asked of their owners, shard by shard.
    for (size_t vi = 0; vi < nv; ++vi) {
      if (remote[vi].empty()) continue;
      const view_def& v = *label.views[vi];
      std::map<uint32_t, std::vector<item>> by_shard;
      for (auto& it : remote[vi]) by_shard[shard_of(it.key, nshards)].push_back(std::move(it));
      for (auto& [sh, items] : by_shard) {
        auto got = remote_pit(v, sh, infos[vi][sh].rt.owner, items);
        if (!got) {
          retryable = true;
          return make_error("view " + v.qualified() + ", shard " + std::to_string(sh) + ": " + got.error_message());
        }
        for (size_t k = 0; k < items.size(); ++k) {
          feature_vector& fv = (*got)[k];
          if (fv.as_of == 0) {
            outside[items[k].row] = 1;
            continue;
          }
          value* out = &cells[items[k].row * nf + col0[vi]];
          for (size_t f = 0; f < fv.values.size() && f < v.features.size(); ++f) out[f] = std::move(fv.values[f].v);
        }
      }
    }

    // 3. Rows, in the log's order (entity, then event time): the same log gives the same bytes.
    std::string& out = part.csv;
    out.reserve(examples.size() * (24 + 12 * (nod + nf)));
    for (size_t i = 0; i < examples.size(); ++i) {
      if (outside[i]) {
        ++part.outside_retention;
        continue;
      }
      const example& ex = examples[i];
      append_int(out, ex.time);
      out += ',';
      append_quoted(out, entities[ex.entity]);
      out += ',';
      append_double(out, ex.label, part.non_finite);
      for (size_t k = 0; k < nod; ++k) {
        out += ',';
        append_cell(out, on_demand[i * nod + k], part.non_finite);
      }
      for (size_t c = 0; c < nf; ++c) {
        out += ',';
        append_cell(out, cells[i * nf + c], part.non_finite);
      }
      out += '\n';
      ++part.rows;
    }
    return part;
  }
};

result<dataset_part> dataset_service::fetch_part(const label_def& label, uint32_t shard, int64_t from, int64_t to, bool& retryable) {
  auto& ctx = impl_->ctx;
  route r = ctx->cluster ? ctx->cluster->route_of(shard) : route{route::local, {}, {}};
  if (r.kind != route::remote) return impl_->build_part(label, shard, from, to, retryable);
  dataset_part out;
  for (uint32_t page = 0, pages = 1; page < pages; ++page) {
    capnp::MallocMessageBuilder mb;
    auto q = mb.initRoot<wire::Gateway::DatasetShardParams>();
    q.setLabel(label.name);
    q.setShard(shard);
    q.setFrom(from);
    q.setTo(to);
    std::string req = flat(mb);
    req.append(reinterpret_cast<const char*>(&page), sizeof page);  // the page number follows the message
    auto rep = request_sync(ctx->nats, node_part_subject(r.owner), req, 120000);
    retryable = true;
    if (!rep) return make_error("node " + r.owner + " did not answer for shard " + std::to_string(shard) + " (" + rep.error_message() + "); retry");
    std::string err;
    bool ok = with_message<wire::DatasetPart>(*rep, [&](wire::DatasetPart::Reader p) {
      if (p.getError().size()) {
        err = p.getError().cStr();
        return;
      }
      pages = p.getPages();
      if (page == 0) {
        for (auto c : p.getColumns()) out.columns.emplace_back(c.cStr());
        out.rows = p.getRows(), out.examples = p.getExamples(), out.outside_retention = p.getOutsideRetention();
        out.unlabelled = p.getUnlabelled(), out.non_finite = p.getNonFinite();
      }
      out.csv.append(reinterpret_cast<const char*>(p.getCsv().begin()), p.getCsv().size());
    });
    if (!ok) return make_error("node " + r.owner + " sent a malformed dataset part");
    if (!err.empty()) return make_error(err + " (at node " + r.owner + ")");
  }
  retryable = false;
  return out;
}

dataset_service::dataset_service(std::shared_ptr<const features_context> ctx, int threads) : impl_(std::make_shared<impl>()) {
  impl_->ctx = std::move(ctx);
  for (int i = 0; i < threads; ++i) impl_->workers.emplace_back([im = impl_.get()] { im->run(); });
}

dataset_service::~dataset_service() {
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  for (auto& w : impl_->workers) w.join();
}

void dataset_service::shard_part(const label_def& label, uint32_t shard, int64_t from, int64_t to, part_fn done) {
  auto im = impl_;
  const label_def* l = &label;
  auto shared_done = std::make_shared<part_fn>(std::move(done));
  if (!im->submit([im, l, shard, from, to, shared_done] {
        bool retryable = false;
        auto r = im->build_part(*l, shard, from, to, retryable);
        (*shared_done)(std::move(r), retryable);
      }))
    (*shared_done)(make_error("the node is stopping"), true);
}

status dataset_service::serve() {
  if (!impl_->ctx->cluster) return ok_status();
  std::weak_ptr<impl> weak = impl_;
  auto* nats = impl_->ctx->nats;
  auto parts = nats->serve(node_part_subject(impl_->ctx->cluster->node_id()), [weak, nats](std::string data, std::string reply) {
    auto respond_error = [nats, reply](const std::string& e) {
      capnp::MallocMessageBuilder mb;
      mb.initRoot<wire::DatasetPart>().setError(e);
      nats->respond(reply, flat(mb));
    };
    auto im = weak.lock();
    if (!im) return respond_error("the node is stopping; retry");
    auto job = [im, nats, reply, data = std::move(data), respond_error]() mutable {
      uint32_t page = 0;
      if (data.size() < sizeof page) return respond_error("malformed dataset part request");
      std::memcpy(&page, data.data() + data.size() - sizeof page, sizeof page);
      data.resize(data.size() - sizeof page);
      std::string label_name;
      uint32_t shard = 0;
      int64_t from = 0, to = 0;
      if (!with_message<wire::Gateway::DatasetShardParams>(data, [&](wire::Gateway::DatasetShardParams::Reader q) {
            label_name = q.getLabel();
            shard = q.getShard();
            from = q.getFrom();
            to = q.getTo();
          }))
        return respond_error("malformed dataset part request");
      const label_def* l = im->ctx->defs->find_label(label_name);
      if (!l) return respond_error("unknown label '" + label_name + "' (the nodes run different definitions?)");
      const std::string key = label_name + "/" + std::to_string(shard) + "/" + std::to_string(from) + "/" + std::to_string(to);
      std::shared_ptr<const dataset_part> part;
      {
        std::lock_guard<std::mutex> g(im->mu);
        auto it = im->part_cache.find(key);
        if (it != im->part_cache.end() && page > 0) part = it->second.second;
      }
      if (!part) {
        bool retryable = false;
        auto built = im->build_part(*l, shard, from, to, retryable);
        if (!built) return respond_error(built.error_message());
        part = std::make_shared<const dataset_part>(std::move(built.value()));
        std::lock_guard<std::mutex> g(im->mu);
        auto now = std::chrono::steady_clock::now();
        for (auto it = im->part_cache.begin(); it != im->part_cache.end();)
          it = now - it->second.first > std::chrono::minutes(2) ? im->part_cache.erase(it) : std::next(it);
        im->part_cache[key] = {now, part};
      }
      const uint32_t pages = static_cast<uint32_t>(std::max<size_t>(1, (part->csv.size() + kPartPageBytes - 1) / kPartPageBytes));
      if (page >= pages) return respond_error("page " + std::to_string(page) + " of a part with " + std::to_string(pages));
      capnp::MallocMessageBuilder mb;
      auto p = mb.initRoot<wire::DatasetPart>();
      p.setPages(pages);
      if (page == 0) {
        auto cl = p.initColumns(static_cast<unsigned>(part->columns.size()));
        for (size_t i = 0; i < part->columns.size(); ++i) cl.set(static_cast<unsigned>(i), part->columns[i]);
        p.setRows(part->rows), p.setExamples(part->examples), p.setOutsideRetention(part->outside_retention);
        p.setUnlabelled(part->unlabelled), p.setNonFinite(part->non_finite);
      }
      const size_t off = static_cast<size_t>(page) * kPartPageBytes, len = std::min(kPartPageBytes, part->csv.size() - std::min(off, part->csv.size()));
      p.setCsv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(part->csv.data()) + off, len));
      nats->respond(reply, flat(mb));
    };
    if (!im->submit(std::move(job))) respond_error("the node is stopping; retry");
  });
  if (!parts) return parts;
  return nats->serve(node_pit_subject(impl_->ctx->cluster->node_id()), [weak, nats](std::string data, std::string reply) {
    auto respond_error = [nats, reply](const std::string& e, bool retryable) {
      capnp::MallocMessageBuilder mb;
      auto r = mb.initRoot<wire::ForwardedReadReply>();
      r.setError(e);
      r.setRetryable(retryable);
      auto words = capnp::messageToFlatArray(mb);
      auto b = words.asBytes();
      nats->respond(reply, std::string(reinterpret_cast<const char*>(b.begin()), b.size()));
    };
    auto im = weak.lock();
    if (!im) return respond_error("the node is stopping; retry", true);
    auto job = [im, nats, reply, data = std::move(data), respond_error] {
      std::string view;
      uint32_t shard = 0;
      std::vector<item> items;
      bool ok = with_message<wire::PitRead>(data, [&](wire::PitRead::Reader r) {
        view = r.getView();
        shard = r.getShard();
        size_t row = 0;
        for (auto it : r.getItems()) items.push_back({std::string(it.getEntity().cStr(), it.getEntity().size()), it.getTime(), row++});
      });
      if (!ok) return respond_error("malformed PitRead", false);
      const view_def* v = im->ctx->defs->find_view(view);
      if (!v) return respond_error("unknown view '" + view + "' (the nodes run different definitions?)", false);
      for (auto& it : items)
        if (!key_is_valid(it.key) || shard_of(it.key, im->ctx->opts.shard_count) != shard)
          return respond_error("invalid entity key for shard " + std::to_string(shard) + " in a point-in-time read", false);
      auto got = im->local_pit(*v, shard, std::move(items));
      if (!got) return respond_error(got.error_message(), true);
      capnp::MallocMessageBuilder mb;
      auto r = mb.initRoot<wire::ForwardedReadReply>();
      auto vl = r.initVectors(static_cast<unsigned>(got->size()));
      for (size_t k = 0; k < got->size(); ++k) write_vector(vl[static_cast<unsigned>(k)], (*got)[k]);
      auto words = capnp::messageToFlatArray(mb);
      auto b = words.asBytes();
      nats->respond(reply, std::string(reinterpret_cast<const char*>(b.begin()), b.size()));
    };
    if (!im->submit(std::move(job))) respond_error("the node is stopping; retry", true);
  });
}

}  // namespace tessera
