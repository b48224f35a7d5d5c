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

struct pit_answer {
  std::vector<feature_vector> vectors;  // as_of == 0: outside the offline retention
};

void append_cell(std::string& out, const value& v, uint64_t& non_finite) {
  double d;
  switch (v.index()) {
    case 0: break;
    case 1: out += std::to_string(std::get<int64_t>(v)); break;
    case 2:
      d = std::get<double>(v);
      if (!std::isfinite(d)) {
        ++non_finite;
        break;
      }
      {
        // The shortest text that reads back as exactly this double.
        char buf[40];
        auto r = std::to_chars(buf, buf + sizeof buf, d);
        out.append(buf, r.ptr);
      }
      break;
    default: {
      // Text or lists: quoted, with quotes doubled (RFC 4180).
      std::string s = to_text(v);
      out += '"';
      for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
      out += '"';
    }
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
    projected_log log;
    std::unique_ptr<window_index> index;
    indexed_log(const view_def& v, const kind_plan& plan, const std::vector<log_entry>& entries) {
      log.assign(plan, entries);
      index = std::make_unique<window_index>(v, log);
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
      const std::string ck = sid.name() + "/" + v.qualified() + "/" + key;
      if (shared) use = cached(ck, meta.applied_seq);
      if (!use) {
        entries.clear();
        const int64_t lo = shared ? INT64_MIN : items[order[i]].t - v.max_window_us(), hi = shared ? INT64_MAX - 1 : items[order[j - 1]].t;
        if (auto st = ctx->db->scan_log(sid, key, lo, hi, entries); !st) return make_error(st.error_message());
        use = std::make_shared<const indexed_log>(v, *plan, entries);
        if (shared) remember(ck, meta.applied_seq, use);
      }
      for (size_t k = i; k < j; ++k) {
        const item& it = items[order[k]];
        if (it.t < earliest) {
          out[order[k]].as_of = 0;  // outside the retention
          continue;
        }
        out[order[k]] = vector_at(v, use->log, *use->index, it.t, key, scratch);
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
    const stream_def* s = ctx->defs->find_stream(label.stream);
    dataset_part part;
    part.columns = {"prediction_time", "entity", "label"};
    for (auto& c : label.feature_columns()) part.columns.push_back(c);

    // 1. The examples: this shard's log of the label's entity kind.
    struct example {
      std::string key;
      int64_t time;
      double label;
      std::vector<value> on_demand;
    };
    std::vector<example> examples;
    std::vector<std::vector<item>> lookups(label.views.size());
    std::vector<const kind_plan*> plans;
    for (const view_def* v : label.views) plans.push_back(ctx->defs->find_plan(v->stream, v->entity));
    size_t unusable = 0;
    auto st = ctx->db->for_each_log(shard_id{label.stream, label.entity, shard}, INT64_MIN, INT64_MAX,
                                    [&](const std::string& key, log_entry&& e) {
                                      double t;
                                      if (!as_number(label.time->eval(e.r.fields), t) || !std::isfinite(t)) {
                                        ++unusable;
                                        return;
                                      }
                                      const int64_t pt = static_cast<int64_t>(std::llround(t));
                                      if (pt < from || pt >= to) return;
                                      ++part.examples;
                                      value lv = label.value->eval(e.r.fields);
                                      double y;
                                      if (!as_number(lv, y) || !std::isfinite(y)) {
                                        ++part.unlabelled;
                                        return;
                                      }
                                      example ex{key, pt, y, {}};
                                      for (auto& od : label.on_demand) ex.on_demand.push_back(od.e->eval(e.r.fields));
                                      normalized_event ne{e.r.time, std::move(e.r.fields)};
                                      const int64_t ft = feature_time(label, pt);
                                      for (size_t vi = 0; vi < label.views.size(); ++vi) {
                                        event_error err;
                                        lookups[vi].push_back({entity_key(ne, *plans[vi], err), ft, examples.size()});
                                      }
                                      examples.push_back(std::move(ex));
                                    });
    if (!st) return make_error(st.error_message());
    (void)s;
    if (unusable)
      spdlog::warn("dataset {}: shard {}: {} log entries without a usable prediction time ({})", label.name, shard, unusable, label.time_src);

    // 2. Scatter each view's lookups to the shards (and owners) of its entities, gather.
    std::vector<std::vector<feature_vector>> values(label.views.size(), std::vector<feature_vector>(examples.size()));
    for (size_t vi = 0; vi < label.views.size(); ++vi) {
      const view_def& v = *label.views[vi];
      std::map<uint32_t, std::vector<item>> by_shard;
      for (auto& it : lookups[vi]) {
        if (it.key.empty()) continue;  // the example lacks this view's key: missing values
        by_shard[shard_of(it.key, ctx->opts.shard_count)].push_back(it);
      }
      for (auto& [sh, items] : by_shard) {
        route rr = ctx->cluster ? ctx->cluster->route_of(sh) : route{route::local, {}, {}};
        result<std::vector<feature_vector>> got = make_error("");
        if (rr.kind == route::local) got = local_pit(v, sh, items, /*shared=*/v.entity != label.entity);
        else if (rr.kind == route::remote) got = remote_pit(v, sh, rr.owner, items);
        else got = make_error(rr.why);
        if (!got) {
          retryable = rr.kind != route::local;
          return make_error("view " + v.qualified() + ", shard " + std::to_string(sh) + ": " + got.error_message());
        }
        for (size_t k = 0; k < items.size(); ++k) values[vi][items[k].row] = std::move((*got)[k]);
      }
    }

    // 3. Rows, in the log's order (entity, then event time): the same log gives the same bytes.
    for (size_t i = 0; i < examples.size(); ++i) {
      bool outside = false;
      for (size_t vi = 0; vi < label.views.size(); ++vi)
        if (!lookups[vi][i].key.empty() && values[vi][i].as_of == 0) outside = true;
      if (outside) {
        ++part.outside_retention;
        continue;
      }
      auto& ex = examples[i];
      std::string& out = part.csv;
      out += std::to_string(ex.time);
      out += ',';
      append_cell(out, std::string(ex.key), part.non_finite);
      out += ',';
      append_cell(out, ex.label, part.non_finite);
      for (auto& od : ex.on_demand) {
        out += ',';
        append_cell(out, od, part.non_finite);
      }
      for (size_t vi = 0; vi < label.views.size(); ++vi) {
        const feature_vector& fv = values[vi][i];
        for (size_t f = 0; f < label.views[vi]->features.size(); ++f) {
          out += ',';
          if (f < fv.values.size()) append_cell(out, fv.values[f].v, part.non_finite);
        }
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
