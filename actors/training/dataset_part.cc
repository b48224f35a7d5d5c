// One shard's part of a dataset (dataset_impl.h, build_part): the examples of this node's
// offline log joined to the label's views, written as CSV (dataset_csv.h).
#include <spdlog/spdlog.h>

#include <cmath>

#include "dataset.h"
#include "dataset_csv.h"
#include "dataset_impl.h"
#include "example.h"

namespace tessera {

using dataset_csv::ensure;
using dataset_csv::kNumberChars;
using dataset_csv::put_cell;
using dataset_csv::put_double;
using dataset_csv::put_int;
using dataset_csv::put_quoted;
using dataset_csv::to_cell;
using dataset_detail::item;

result<dataset_part> dataset_service::impl::build_part(const label_def& label, uint32_t shard,
                                                       int64_t from, int64_t to,
                                                       bool& retryable) const {
  retryable = false;
  route r = ctx->cluster ? ctx->cluster->route_of(shard) : route{route::local, {}, {}};
  if (r.kind == route::unavailable) {
    retryable = true;
    return make_error(r.why, errc::retryable);
  }
  // Retryable for the caller: its shard map is older than ours; it reads the map again and asks
  // the owner (the CLI does).
  if (r.kind == route::remote) {
    retryable = true;
    return make_error("shard " + std::to_string(shard) + " is served by node " + r.owner +
                          "; ask that node (status lists every member's RPC address)",
                      errc::retryable);
  }
  dataset_part part;
  part.columns = {"prediction_time", "entity", "label"};
  for (auto& c : label.feature_columns()) part.columns.push_back(c);

  const size_t nv = label.views.size(), nod = label.on_demand.size();
  const uint32_t nshards = ctx->opts.shard_count;
  std::vector<size_t> col0(nv + 1, 0);  // each view's first cell in a row of cells
  // Prediction times, keys and on-demand features: derived as serving derives them.
  const example_deriver derive(*ctx->defs, label);
  std::vector<const kind_plan*> plans;
  std::vector<bool> own(nv);  // on the label's entity kind: read from the scanned entity's log
  bool any_own = false;
  for (size_t vi = 0; vi < nv; ++vi) {
    col0[vi + 1] = col0[vi] + label.views[vi]->features.size();
    plans.push_back(&derive.plan(vi));
    own[vi] = derive.own(vi);
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
  static thread_local std::vector<std::string>
      entities;  // the scanned entities with examples, in log order
  static thread_local std::vector<example> examples;
  static thread_local std::vector<number_cell> on_demand;  // examples x nod
  static thread_local std::vector<number_cell> cells;      // examples x nf
  static thread_local std::vector<value> boxed;            // the cells' values that are not numbers
  static thread_local std::vector<uint8_t>
      outside;  // per example: a window reaches before its view's retention
  entities.clear(), examples.clear(), on_demand.clear(), cells.clear(), boxed.clear(),
      outside.clear();
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
    si.rt = sh == shard    ? r
            : ctx->cluster ? ctx->cluster->route_of(sh)
                           : route{route::local, {}, {}};
    if (si.rt.kind != route::local) return si;
    const view_def& v = *label.views[vi];
    const shard_meta meta = ctx->db->load_meta(shard_id{v.stream, v.entity, sh});
    si.applied_seq = meta.applied_seq;
    // The log holds events with time > watermark - retention: a window reaching before that
    // would be silently incomplete.
    if (meta.watermark > 0)
      si.earliest = meta.watermark - ctx->defs->find_stream(v.stream)->offline_retention_us +
                    v.max_window_us();
    return si;
  };
  // The cells of view vi for example `row` from `idx`. Reads it refuses (something in the
  // window was known only after t) go to walk_at(t): the filtering walk over the log.
  auto fill = [&](size_t vi, const window_index& idx, window_index::cursor& cur, auto&& walk_at,
                  size_t row) {
    number_cell* out = &cells[row * nf + col0[vi]];
    const int64_t t = examples[row].feature_time;
    if (idx.supported() && idx.cells(t, out, nullptr, &cur)) return;
    result<feature_vector> walked = walk_at(t);
    if (!walked) {
      err = "view " + label.views[vi]->qualified() + ": " + walked.error_message();
      return;
    }
    feature_vector& fv = *walked;
    for (size_t f = 0; f < fv.values.size() && f < col0[vi + 1] - col0[vi]; ++f)
      out[f] = to_cell(std::move(fv.values[f].v), boxed);
  };
  // Views on other entity kinds: the last entity's log per view (a route's origin is always
  // the same airport), else the node-wide cache, else read and indexed now. Their reads are
  // deferred and made after the scan in (entity, time) order: one sweep forwards through each
  // index instead of one per label entity (a part's routes from one airport each start over
  // from January), which the caches and the prefetcher like better.
  struct read_later {
    uint32_t log;  // into used_logs
    uint32_t vi;
    size_t row;
  };
  std::vector<read_later> later;
  std::vector<std::shared_ptr<const indexed_log>> used_logs;
  std::vector<std::string> used_keys;
  std::vector<size_t> last_used(nv, SIZE_MAX);  // per view: its entity's entry in used_logs
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
    if (last_used[vi] == SIZE_MAX || used_keys[last_used[vi]] != key) {
      auto use = shared_log(v, *plans[vi], shard_id{v.stream, v.entity, sh}, key, si.applied_seq);
      if (!use) {
        err =
            "view " + v.qualified() + ", shard " + std::to_string(sh) + ": " + use.error_message();
        return;
      }
      last_used[vi] = used_logs.size();
      used_keys.push_back(std::move(key));
      used_logs.push_back(std::move(*use));
    }
    later.push_back({static_cast<uint32_t>(last_used[vi]), static_cast<uint32_t>(vi), row});
  };
  auto read_deferred = [&] {
    std::stable_sort(later.begin(), later.end(), [&](const read_later& a, const read_later& b) {
      if (a.log != b.log) return a.log < b.log;
      return examples[a.row].feature_time < examples[b.row].feature_time;
    });
    window_index::cursor cur;
    for (size_t i = 0; i < later.size() && err.empty(); ++i) {
      const read_later& r = later[i];
      if (i == 0 || r.log != later[i - 1].log) cur = {};
      const indexed_log& l = *used_logs[r.log];
      const view_def& v = *label.views[r.vi];
      fill(
          r.vi, *l.index, cur,
          [&](int64_t t) { return walk(v, *plans[r.vi], l, used_keys[r.log], t, scratch); }, r.row);
    }
  };

  // 1. The examples: this shard's log of the label's entity kind, one entity at a time.
  // The current entity's entries (when a view reads them): group[0, group_n), swapped in from
  // the scan so that entries and their fields are reused, never allocated per entry.
  static thread_local std::vector<log_entry> group;
  size_t group_n = 0;
  size_t group_first = 0;  // its first example
  std::vector<value> fields;
  projected_log plog;
  auto finish_entity = [&] {
    if (examples.size() > group_first && err.empty()) {
      const std::string& key = entities[examples[group_first].entity];
      for (size_t vi = 0; vi < nv; ++vi) {
        if (!own[vi]) continue;
        const view_def& v = *label.views[vi];
        const shard_info& si = info(vi, shard);
        window_index idx(v);
        if (idx.supported()) {
          idx.reserve(group_n);
          for (size_t i = 0; i < group_n; ++i) idx.add(*plans[vi], group[i], fields);
          idx.finish();
        }
        bool projected = false;  // plog holds this entity's log (for refused reads only)
        auto walk_at = [&](int64_t t) -> result<feature_vector> {
          if (!projected) plog.assign(*plans[vi], group.data(), group_n), projected = true;
          return vector_at(v, plog, t, key, scratch);
        };
        window_index::cursor cur;
        for (size_t row = group_first; row < examples.size(); ++row) {
          if (examples[row].feature_time < si.earliest)
            outside[row] = 1;
          else
            fill(vi, idx, cur, walk_at, row);
        }
      }
    }
    group_n = 0;
    group_first = examples.size();
  };
  size_t unusable = 0;
  std::string current;
  bool first = true;
  auto st = ctx->db->for_each_log(
      shard_id{label.stream, label.entity, shard}, INT64_MIN, INT64_MAX,
      [&](const std::string& key, log_entry&& e) {
        if (!err.empty()) return;
        if (first || key != current) {
          finish_entity();
          current = key;
          first = false;
        }
        double y;
        const std::optional<int64_t> t = derive.prediction_time(e.r.fields);
        if (!t) {
          ++unusable;
        } else if (const int64_t pt = *t; pt >= from && pt < to) {
          ++part.examples;
          if (!as_number(label.value->eval(e.r.fields), y) || !std::isfinite(y)) {
            ++part.unlabelled;
          } else {
            if (examples.size() == group_first) entities.push_back(key);
            const size_t row = examples.size();
            examples.push_back(
                {static_cast<uint32_t>(entities.size() - 1), pt, derive.feature_time(pt), y});
            for (size_t k = 0; k < nod; ++k)
              on_demand.push_back(to_cell(derive.on_demand(k, e.r.fields), boxed));
            cells.resize(cells.size() + nf);
            outside.push_back(0);
            for (size_t vi = 0; vi < nv && err.empty(); ++vi) {
              if (own[vi]) continue;
              event_error kerr;
              std::string k = derive.key(vi, e.r.fields, kerr);
              if (!k.empty()) lookup(vi, std::move(k), row);  // else: no key, missing values
            }
          }
        }
        if (any_own) {
          if (group_n == group.size()) group.emplace_back();
          std::swap(group[group_n++], e);
        }
      });
  if (!st) return make_error(st.error_message());
  finish_entity();
  if (err.empty()) read_deferred();
  if (!err.empty()) return make_error(err);
  if (unusable)
    spdlog::warn("dataset {}: shard {}: {} log entries without a usable prediction time ({})",
                 label.name, shard, unusable, label.time_src);

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
        return make_error("view " + v.qualified() + ", shard " + std::to_string(sh) + ": " +
                          got.error_message());
      }
      for (size_t k = 0; k < items.size(); ++k) {
        feature_vector& fv = (*got)[k];
        if (fv.as_of == 0) {
          outside[items[k].row] = 1;
          continue;
        }
        number_cell* out = &cells[items[k].row * nf + col0[vi]];
        for (size_t f = 0; f < fv.values.size() && f < v.features.size(); ++f)
          out[f] = to_cell(std::move(fv.values[f].v), boxed);
      }
    }
  }

  // 3. Rows, in the log's order (entity, then event time): the same log gives the same bytes.
  std::string& out = part.csv;
  const size_t row_chars = (3 + nod + nf) * kNumberChars + 1;  // besides the quoted entity
  out.resize(examples.size() * (16 + 6 * (nod + nf)));         // a guess; grown as needed
  char* p = out.data();
  for (size_t i = 0; i < examples.size(); ++i) {
    if (outside[i]) {
      ++part.outside_retention;
      continue;
    }
    const example& ex = examples[i];
    const std::string& entity = entities[ex.entity];
    p = ensure(out, p, row_chars + 2 + 2 * entity.size());
    p = put_int(p, ex.time);
    *p++ = ',';
    p = put_quoted(p, entity);
    *p++ = ',';
    p = put_double(p, ex.label, part.non_finite);
    for (size_t k = 0; k < nod; ++k) {
      *p++ = ',';
      p = put_cell(out, p, on_demand[i * nod + k], boxed, row_chars, part.non_finite);
    }
    for (size_t c = 0; c < nf; ++c) {
      *p++ = ',';
      p = put_cell(out, p, cells[i * nf + c], boxed, row_chars, part.non_finite);
    }
    *p++ = '\n';
    ++part.rows;
  }
  out.resize(static_cast<size_t>(p - out.data()));
  return part;
}

}  // namespace tessera
