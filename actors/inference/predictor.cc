#include "predictor.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "bus.h"
#include "cluster/cluster_view.h"
#include "cluster/registry.h"
#include "codec.h"
#include "hash.h"
#include "inference_wire.h"
#include "metrics.h"
#include "model_table.h"
#include "prediction_log.h"
#include "rules.h"
#include "schemas/node.capnp.h"
#include "stream_clock.h"
#include "time_util.h"
#include "worker_pool.h"

namespace tessera {

std::string node_predict_subject(const std::string& node_id) {
  return "tsr.node." + node_id + ".predict";
}

namespace {

using steady = std::chrono::steady_clock;

std::string to_bytes(capnp::MallocMessageBuilder& mb) {
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// Whether to log a prediction, for a model logging `share` of them: by the request id's hash
// (the same request is logged on every retry or not at all), else by a counter.
bool sampled(const std::string& request_id, double share) {
  if (share >= 1) return true;
  if (share <= 0) return false;
  static std::atomic<uint64_t> counter{0};
  const uint64_t h = request_id.empty() ? (counter.fetch_add(1) + 1) * 0x9E3779B97F4A7C15ULL >> 11
                                        : stable_hash(request_id);
  return static_cast<double>(h % 1000000) < share * 1e6;
}

log_limiter rule_log;  // rule failures: one line per model per 5 s

bool retryable_kind(errc c) {
  return c == errc::overloaded || c == errc::retryable || c == errc::unavailable;
}

}  // namespace

struct predictor::call : std::enable_shared_from_this<predictor::call> {
  std::string model;
  model_table::served s;
  predict_options o;
  std::vector<example_in> ex;
  std::vector<prediction_out> out;
  std::vector<std::vector<value>> fields;
  std::vector<int64_t> feature_time;
  std::vector<std::vector<std::string>> keys;  // per example, per view of its arm's version
  // Per example, per upstream model of its arm's version (chained): that model's score.
  std::vector<std::vector<double>> upstream;
  // Per example: 0 the version asked for, k > 0 the arm s.arms[k - 1] (canary or A/B).
  std::vector<uint8_t> arm;
  const serving_model& version_of(uint8_t a) const { return a ? *s.arms[a - 1].model : *s.model; }
  bool forward = true;
  int64_t deadline_us = 0;  // the caller's, wall clock
  // The model's: the caller's less the fallback's reserve when the model has a fallback.
  steady::time_point deadline, final_deadline, start;
  std::mutex mu;
  size_t left = 0;
  done_fn done;
  std::function<void()> complete;  // set by the predictor: fallbacks, then done
  // Per example (entry calls of a model with rules): its arm's inputs as scored, for the rules.
  std::vector<std::vector<float>> vec;
  // The model's rules on every answered example, the fallback's answers too (entry calls).
  void decide();

  int64_t remaining_ms() const {
    return std::max<int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count());
  }
  // One part (local scoring, a forwarded node, the sending itself) answered.
  void finish_part() {
    {
      std::lock_guard<std::mutex> l(mu);
      if (--left) return;
    }
    complete();
  }
  void deliver() {
    if (forward && s.model && s.model->rules) decide();
    // Every example failed the same retryable way: the call fails so that clients retry it.
    bool all_same = !out.empty();
    for (auto& p : out) all_same = all_same && !p.error.empty() && p.code == out[0].code;
    if (all_same && retryable_kind(out[0].code))
      done(make_error(out[0].error, out[0].code));
    else
      done(std::move(out));
  }
};

void predictor::call::decide() {
  const serving_model& m = *s.model;
  const rule_set& rs = *m.rules;
  std::vector<size_t> order;
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].error.empty()) order.push_back(i);
  std::vector<int64_t> rank(out.size(), 0);
  if (rs.uses_rank()) {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return out[a].score > out[b].score; });
    for (size_t r = 0; r < order.size(); ++r) rank[order[r]] = static_cast<int64_t>(r);
  }
  // Where each slot's value comes from, per arm's version: an input (>= 0), a field of the
  // label stream (-2 - index), or nowhere (-1: null).
  const auto& slots = rs.slots();
  const stream_def* stream = m.defs->find_stream(m.label->stream);
  std::map<uint8_t, std::vector<int>> sources;
  auto source_of = [&](uint8_t a) -> const std::vector<int>& {
    auto it = sources.find(a);
    if (it != sources.end()) return it->second;
    const serving_model& am = version_of(a);
    std::vector<int> src(slots.size(), -1);
    for (size_t k = 2; k < slots.size(); ++k) {
      for (size_t j = 0; j < am.inputs.size() && src[k] < 0; ++j)
        if (am.inputs[j].name == slots[k]) src[k] = static_cast<int>(j);
      if (src[k] < 0 && stream)
        if (int f = stream->field_index(slots[k]); f >= 0) src[k] = -2 - f;
    }
    return sources.emplace(a, std::move(src)).first->second;
  };
  std::vector<value> v(slots.size());
  for (size_t i : order) {
    prediction_out& o = out[i];
    const std::vector<int>& src = source_of(i < arm.size() ? arm[i] : 0);
    v[0] = o.score;
    v[1] = rank[i];
    for (size_t k = 2; k < slots.size(); ++k) {
      v[k] = value{};
      if (src[k] >= 0) {
        const auto j = static_cast<size_t>(src[k]);
        if (i < vec.size() && j < vec[i].size() && std::isfinite(vec[i][j]))
          v[k] = static_cast<double>(vec[i][j]);
      } else if (src[k] <= -2) {
        const auto f = static_cast<size_t>(-2 - src[k]);
        if (i < fields.size() && f < fields[i].size()) v[k] = fields[i][f];
      }
    }
    auto d = rs.decide(v);
    o.decision = std::move(d.decision);
    o.rule = std::move(d.rule);
    if (d.error.empty()) continue;
    m.rule_failures.fetch_add(1);
    uint64_t suppressed = 0;
    if (rule_log.allow(m.name, suppressed))
      spdlog::warn("model {}: a rule failed, on_error answered: {} ({} more not logged)", m.name,
                   d.error, suppressed);
  }
}

void predictor::predict(const std::string& model, predict_options o,
                        std::vector<example_in> examples, bool forward, int64_t deadline_us,
                        done_fn done) const {
  gate_->inflight.fetch_add(1);
  if (gate_->stopping) {
    gate_->inflight.fetch_sub(1);
    return done(make_error("the node is stopping; retry", errc::unavailable));
  }
  auto c = std::make_shared<call>();
  c->start = steady::now();
  c->model = model;
  c->o = o;
  c->ex = std::move(examples);
  c->forward = forward;
  c->done = [g = gate_, done = std::move(done)](result<std::vector<prediction_out>> r) {
    done(std::move(r));
    g->inflight.fetch_sub(1);
  };
  const int64_t now = now_micros();
  c->deadline_us = deadline_us > 0
                       ? deadline_us
                       : now + 1000LL * (o.deadline_ms ? o.deadline_ms : d_.default_deadline_ms);
  c->deadline = c->start + std::chrono::microseconds(c->deadline_us - now);
  c->final_deadline = c->deadline;
  c->complete = [this, raw = c.get()] { finish(raw); };
  auto go = [this, c](bool may_load) {
    auto s = d_.models->acquire(c->model, c->o.version, may_load);
    if (!s && s.error_code() == errc::not_found && may_load) {
      // Registered or promoted a moment ago, before the watch brought it: ask the registry.
      d_.models->refresh(c->model);
      s = d_.models->acquire(c->model, c->o.version, may_load);
    }
    if (!s && s.error_code() == errc::not_found && !may_load && d_.loader) {
      auto again = [this, c] {
        d_.models->refresh(c->model);
        auto s = d_.models->acquire(c->model, c->o.version, true);
        if (!s) return c->done(s.failure());
        c->s = std::move(s.value());
        if (c->s.model->fallback.any())
          c->deadline -= std::chrono::microseconds(c->s.model->fallback.reserve_us);
        run(c);
      };
      if (!d_.loader->submit(again))
        c->done(make_error("the node is stopping; retry", errc::unavailable));
      return;
    }
    if (!s) return c->done(s.failure());
    c->s = std::move(s.value());
    if (c->s.model->fallback.any())  // keep the fallback's reserve out of the model's deadline
      c->deadline -= std::chrono::microseconds(c->s.model->fallback.reserve_us);
    run(c);
  };
  if (d_.loader && d_.models->needs_load(model, o.version)) {
    if (!d_.loader->submit([go] { go(true); }))
      c->done(make_error("the node is stopping; retry", errc::unavailable));
    return;
  }
  go(false);
}

void predictor::run(std::shared_ptr<call> c) const {
  const serving_model& m = *c->s.model;
  const label_def& label = *m.label;
  const stream_def* stream = m.defs->find_stream(label.stream);
  const size_t n = c->ex.size();
  // An arm of another label would route by another entity: it is not used (see README).
  auto& arms = c->s.arms;
  arms.erase(std::remove_if(arms.begin(), arms.end(),
                            [&](const model_table::arm& a) { return a.model->label != m.label; }),
             arms.end());
  if (arms.size() > 254) arms.resize(254);
  c->out.resize(n);
  c->fields.resize(n);
  c->feature_time.resize(n);
  c->keys.resize(n);
  c->upstream.resize(n);
  c->arm.assign(n, 0);
  if (c->forward && m.rules) c->vec.resize(n);
  std::vector<std::vector<size_t>> local(arms.size() + 1);                // by arm
  std::map<std::pair<std::string, uint8_t>, std::vector<size_t>> remote;  // (owner, arm)
  for (size_t i = 0; i < n; ++i) {
    prediction_out& o = c->out[i];
    example_in& e = c->ex[i];
    o.version = m.version;
    o.stage = c->s.stage;
    o.request_id = e.request_id;
    o.node = d_.node_id;
    auto f = example_fields(*stream, e.fields);
    if (!f) {
      o.fail(f.error_message(), errc::invalid);
      continue;
    }
    int64_t pt = e.as_of;
    if (pt <= 0) {
      if (auto t = m.derive->prediction_time(*f))
        pt = *t;
      else if (d_.clocks)
        pt = d_.clocks->read_time(label.stream);
    }
    if (pt <= 0) {
      o.fail("no prediction time: the example has no value for " + label.time_src + " and stream " +
                 label.stream + " has no clock yet (no events)",
             errc::invalid);
      continue;
    }
    o.prediction_time = pt;
    event_error err;
    const std::string key = entity_key(*f, *m.label_plan, err);
    if (key.empty()) {
      o.fail("field " + err.field + ": " + err.reason, errc::invalid);
      continue;
    }
    // Each arm serves the label entities whose slot it holds (a stable hash: sticky per entity).
    uint8_t arm = 0;
    if (!arms.empty()) {
      const uint64_t slot = entity_slot(m.name, key);
      for (size_t k = 0; k < arms.size() && !arm; ++k)
        if (in_ranges(arms[k].ranges, slot)) arm = static_cast<uint8_t>(k + 1);
    }
    c->arm[i] = arm;
    const serving_model& am = c->version_of(arm);
    if (arm) o.version = am.version, o.stage = arms[arm - 1].stage;
    const size_t nv = am.derive->views().size();
    c->keys[i].resize(nv);
    bool keys_ok = true;
    for (size_t v = 0; v < nv && keys_ok; ++v) {
      c->keys[i][v] = am.derive->key(v, *f, err);
      if (c->keys[i][v].empty()) {
        o.fail("field " + err.field + ": " + err.reason, errc::invalid);
        keys_ok = false;
      }
    }
    if (!keys_ok) continue;
    c->feature_time[i] = m.derive->feature_time(pt);
    c->fields[i] = std::move(*f);
    const route r = d_.cluster ? d_.cluster->route_of(shard_of(key, d_.shard_count))
                               : route{route::local, {}, {}};
    if (r.kind == route::local) {
      local[arm].push_back(i);
    } else if (r.kind == route::remote && c->forward) {
      remote[{r.owner, arm}].push_back(i);
    } else if (r.kind == route::remote) {
      o.fail("entity " + key + " is served by node " + r.owner + " now; retry", errc::retryable);
    } else {
      o.fail(r.why, errc::retryable);
    }
  }
  // +1: released once all is sent
  c->left = remote.size() + 1;
  for (auto& rows : local) c->left += !rows.empty();
  for (auto& [to, rows] : remote) forward_part(c, to.first, std::move(rows), to.second);
  for (size_t arm = 0; arm < local.size(); ++arm)
    if (!local[arm].empty()) score_local(c, std::move(local[arm]), static_cast<uint8_t>(arm));
  c->finish_part();
}

void predictor::score_local(std::shared_ptr<call> c, std::vector<size_t> rows, uint8_t arm) const {
  if (c->version_of(arm).upstream.empty())
    return read_and_score(std::move(c), std::move(rows), arm);
  score_upstream(std::move(c), std::move(rows), arm, 0);
}

void predictor::score_upstream(std::shared_ptr<call> c, std::vector<size_t> rows, uint8_t arm,
                               size_t u) const {
  const serving_model& m = c->version_of(arm);
  if (rows.empty()) return c->finish_part();
  if (u == m.upstream.size()) return read_and_score(std::move(c), std::move(rows), arm);
  const std::string& name = m.upstream[u];
  predict_options o;
  o.no_batch = c->o.no_batch;
  o.max_feature_age = c->o.max_feature_age;
  o.settled = c->o.settled;
  // Its production version (pinned: no canary or arm of its own), at the same prediction time.
  if (auto s = d_.models->acquire(name, 0, false)) o.version = s->model->version;
  std::vector<example_in> sub;
  for (size_t i : rows) {
    sub.push_back(c->ex[i]);
    sub.back().as_of = c->out[i].prediction_time;
  }
  const int64_t deadline_us =
      now_micros() +
      std::chrono::duration_cast<std::chrono::microseconds>(c->deadline - steady::now()).count();
  predict(
      name, o, std::move(sub), /*forward=*/true, deadline_us,
      [this, c, rows, arm, u, name](result<std::vector<prediction_out>> r) {
        const size_t nu = c->version_of(arm).upstream.size();
        std::vector<size_t> scored;
        for (size_t k = 0; k < rows.size(); ++k) {
          prediction_out& o = c->out[rows[k]];
          const bool ok = r && k < r->size() && (*r)[k].error.empty();
          if (!ok) {
            const errc code = !r ? r.error_code() : k < r->size() ? (*r)[k].code : errc::internal;
            o.fail("upstream model " + name + ": " +
                       (!r              ? r.error_message()
                        : k < r->size() ? (*r)[k].error
                                        : std::string("no answer")),
                   code, code == errc::invalid ? "" : "model error");
            continue;
          }
          c->upstream[rows[k]].resize(nu);
          c->upstream[rows[k]][u] = (*r)[k].score;
          scored.push_back(rows[k]);
        }
        score_upstream(c, std::move(scored), arm, u + 1);
      });
}

void predictor::read_and_score(std::shared_ptr<call> c, std::vector<size_t> rows,
                               uint8_t arm) const {
  const serving_model& m = c->version_of(arm);
  const size_t nv = m.derive->views().size();
  std::vector<feature_source::lookup> lookups;
  lookups.reserve(rows.size() * nv);
  for (size_t i : rows)
    for (size_t v = 0; v < nv; ++v)
      lookups.push_back({m.derive->views()[v], c->keys[i][v], c->feature_time[i], c->o.settled});
  m.batch->expect(1);
  d_.features->read(
      std::move(lookups), c->remaining_ms(),
      [this, c, rows = std::move(rows), nv, arm](std::vector<result<feature_vector>> got) {
        const serving_model& m = c->version_of(arm);
        const size_t d = m.inputs.size();
        std::vector<float> x;
        x.reserve(rows.size() * d);
        std::vector<size_t> scored;  // the rows in x, in order
        const bool late = steady::now() > c->deadline;
        for (size_t k = 0; k < rows.size(); ++k) {
          const size_t i = rows[k];
          prediction_out& o = c->out[i];
          // A read that failed says why (an owner that died answers nothing until the deadline:
          // retryable, not a deadline of the caller's making).
          bool ok = true;
          for (size_t v = 0; v < nv && ok; ++v)
            if (!got[k * nv + v]) {
              const auto& e = got[k * nv + v];
              o.fail("view " + m.view_names[v] + ": " + e.error_message(), e.error_code(),
                     e.error_code() == errc::invalid ? "" : "features unavailable");
              ok = false;
            }
          if (!ok) continue;
          if (late) {
            o.fail("deadline exceeded while reading features", errc::deadline, "deadline");
            continue;
          }
          const size_t at = x.size();
          x.resize(at + d);
          std::vector<feature_out> used;
          for (size_t j = 0; j < d && ok; ++j) {
            const serving_model::input& in = m.inputs[j];
            feature_out fo;
            fo.name = in.name;
            double val;
            if (in.upstream >= 0) {
              val = c->upstream[i][static_cast<size_t>(in.upstream)];
              fo.status = vector_status::fresh;
            } else if (in.on_demand >= 0) {
              if (!as_number(m.derive->on_demand(static_cast<size_t>(in.on_demand), c->fields[i]),
                             val))
                val = std::nan("");
              fo.status = vector_status::fresh;
            } else {
              const feature_vector& fv = *got[k * nv + static_cast<size_t>(in.view)];
              const feature_value* f = static_cast<size_t>(in.feature) < fv.values.size()
                                           ? &fv.values[static_cast<size_t>(in.feature)]
                                           : nullptr;
              if (!f || !as_number(f->v, val)) val = std::nan("");
              fo.event_time = f ? f->event_time : 0;
              fo.age = fo.event_time > 0 ? fv.as_of - fo.event_time : -1;
              fo.status = fv.status;
              const int64_t bound =
                  c->o.max_feature_age > 0 ? c->o.max_feature_age : m.max_feature_age_us;
              if (bound > 0 &&
                  (fv.status == vector_status::missing || (fo.event_time > 0 && fo.age > bound))) {
                o.fail("feature " + in.name + " is " +
                           (fo.event_time > 0 ? format_duration(fo.age) + " old"
                                              : std::string("missing")) +
                           ", over the bound " + format_duration(bound),
                       errc::invalid, fo.event_time > 0 ? "stale features" : "missing features");
                ok = false;
              }
            }
            x[at + j] = static_cast<float>(val);
            fo.value = static_cast<double>(x[at + j]);
            if (c->o.return_vector) used.push_back(std::move(fo));
          }
          if (!ok) {
            x.resize(at);
            continue;
          }
          o.features = std::move(used);
          scored.push_back(i);
        }
        m.batch->expect(-1);
        if (scored.empty()) return c->finish_part();
        if (c->forward && c->s.model->rules)  // the rules read the inputs as scored
          for (size_t k = 0; k < scored.size(); ++k)
            c->vec[scored[k]].assign(x.begin() + static_cast<long>(k * d),
                                     x.begin() + static_cast<long>((k + 1) * d));
        std::vector<float> logged;
        if (d_.log || (arm == 0 && !c->s.shadows.empty())) logged = x;
        auto on_scores = [this, c, scored, logged = std::move(logged), arm](status st,
                                                                            const float* scores) {
          const serving_model& m = c->version_of(arm);
          const size_t d = m.inputs.size();
          const auto now = steady::now();
          const int64_t wall = now_micros();
          for (size_t k = 0; k < scored.size(); ++k) {
            prediction_out& o = c->out[scored[k]];
            if (!st) {
              o.fail(st.error_message(), st.error_code(),
                     st.error_code() == errc::deadline ? "deadline" : "model error");
            } else if (now > c->deadline) {
              o.fail("deadline exceeded: scored " +
                         format_duration(std::chrono::duration_cast<std::chrono::microseconds>(
                                             now - c->deadline)
                                             .count()) +
                         " after it",
                     errc::deadline, "deadline");
            } else if (!std::isfinite(scores[k])) {
              o.fail("the model gave a non-finite score (" + std::to_string(scores[k]) + ")",
                     errc::internal, "model error");
            } else {
              o.score = static_cast<double>(scores[k]);
              m.record_score(o.score);
            }
            o.latency_us = static_cast<uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(now - c->start).count());
            m.record(o.latency_us, o.error.empty());
            if (!o.error.empty() || !d_.log || !sampled(o.request_id, m.log_sample)) continue;
            prediction_record r;
            r.model = m.name;
            r.version = m.version;
            r.stage = o.stage;
            r.path = o.path;
            r.node = o.node;
            r.request_id = o.request_id;
            r.time = wall;
            r.prediction_time = o.prediction_time;
            r.feature_time = c->feature_time[scored[k]];
            r.score = o.score;
            r.latency_us = o.latency_us;
            r.inputs = m.input_names;
            r.vector.assign(logged.begin() + static_cast<long>(k * d),
                            logged.begin() + static_cast<long>((k + 1) * d));
            for (size_t v = 0; v < m.view_names.size(); ++v)
              r.keys.emplace_back(m.view_names[v], c->keys[scored[k]][v]);
            r.fields = c->ex[scored[k]].fields;
            d_.log->append(std::move(r));
          }
          if (arm == 0 && st) shadow(c, scored, logged);
          c->finish_part();
        };
        status st =
            m.batch->submit(std::move(x), scored.size(), c->o.no_batch, c->deadline, on_scores);
        if (!st) {
          for (size_t i : scored) {
            c->out[i].fail(st.error_message(), st.error_code(), "model overloaded");
            m.record(0, false);
          }
          c->finish_part();
        }
      });
}

void predictor::forward_part(std::shared_ptr<call> c, const std::string& owner,
                             std::vector<size_t> rows, uint8_t arm) const {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<wire::ForwardedPredict>();
  r.setModel(c->model);
  const uint32_t version = c->version_of(arm).version;  // the arm's version, decided here
  r.setVersion(version);
  predict_options o = c->o;
  o.version = version;
  if (c->s.model->rules) o.return_vector = true;  // the rules read the inputs, applied here
  write_options(r.initOptions(), o);
  r.setDeadline(c->deadline_us);
  auto el = r.initExamples(static_cast<unsigned>(rows.size()));
  for (size_t k = 0; k < rows.size(); ++k)
    write_example(el[static_cast<unsigned>(k)], c->ex[rows[k]]);
  d_.nats->request(
      node_predict_subject(owner), to_bytes(mb), c->remaining_ms(),
      [c, owner, rows = std::move(rows), arm](result<std::string> rep) {
        auto fail_all = [&](const std::string& why, errc code) {
          const bool model_side = code != errc::invalid && code != errc::not_found;
          for (size_t i : rows) c->out[i].fail(why, code, model_side ? "node unavailable" : "");
        };
        if (!rep) {
          fail_all("node " + owner + " did not answer (" + rep.error_message() + "); retry",
                   errc::retryable);
        } else {
          bool ok = with_message<wire::ForwardedPredictReply>(
              *rep, [&](wire::ForwardedPredictReply::Reader r) {
                if (r.getError().size()) {
                  fail_all(std::string(r.getError().cStr()) + " (at node " + owner + ")",
                           static_cast<errc>(r.getCode()));
                  return;
                }
                auto pl = r.getPredictions();
                if (pl.size() != rows.size()) {
                  fail_all("node " + owner + " answered " + std::to_string(pl.size()) +
                               " predictions for " + std::to_string(rows.size()) + " examples",
                           errc::internal);
                  return;
                }
                for (size_t k = 0; k < rows.size(); ++k) {
                  const std::string stage = c->out[rows[k]].stage;
                  c->out[rows[k]] = read_prediction(pl[static_cast<unsigned>(k)]);
                  if (arm) c->out[rows[k]].stage = stage;  // "canary" or "ab", as decided here
                  prediction_out& p = c->out[rows[k]];
                  if (c->s.model->rules) {
                    for (auto& f : p.features)
                      c->vec[rows[k]].push_back(static_cast<float>(f.value));
                    if (!c->o.return_vector) p.features.clear();
                  }
                  if (!p.error.empty() && p.code != errc::invalid && p.code != errc::not_found)
                    p.fallback_why = p.code == errc::deadline ? "deadline" : "model error";
                }
              });
          if (!ok) fail_all("node " + owner + " sent a malformed reply", errc::internal);
        }
        c->finish_part();
      });
}

void predictor::finish(call* c) const {
  const model_def::fallback_def* fb = c->s.model ? &c->s.model->fallback : nullptr;
  std::vector<size_t> need;
  if (fb && fb->any())
    for (size_t i = 0; i < c->out.size(); ++i)
      if (!c->out[i].error.empty() && !c->out[i].fallback_why.empty()) need.push_back(i);
  if (need.empty()) return c->deliver();
  const serving_model& m = *c->s.model;
  m.fallbacks.fetch_add(need.size());
  if (fb->has_constant) {
    for (size_t i : need) {
      prediction_out& o = c->out[i];
      o.path = "fallback: " + o.fallback_why + " (constant)";
      o.stage = "fallback";
      o.version = 0;
      o.score = fb->constant;
      o.error.clear();
      o.code = errc::internal;
    }
    return c->deliver();
  }
  // Another model answers for these examples, within what is left of the caller's deadline.
  std::vector<example_in> sub;
  for (size_t i : need) sub.push_back(c->ex[i]);
  predict_options o;
  o.return_vector = c->o.return_vector;
  o.no_batch = c->o.no_batch;
  o.settled = c->o.settled;
  predict(
      fb->model, o, std::move(sub), /*forward=*/true, c->deadline_us,
      [c = c->shared_from_this(), need, name = fb->model](result<std::vector<prediction_out>> r) {
        for (size_t k = 0; k < need.size(); ++k) {
          prediction_out& o = c->out[need[k]];
          if (!r || !(*r)[k].error.empty()) {
            o.error +=
                "; fallback " + name + " failed too: " + (r ? (*r)[k].error : r.error_message());
            continue;
          }
          const std::string why = o.fallback_why;
          o = std::move((*r)[k]);
          o.path = "fallback: " + why + " (model " + name + ")";
          o.stage = "fallback";
        }
        c->deliver();
      });
}

void predictor::shadow(const std::shared_ptr<call>& c, const std::vector<size_t>& rows,
                       const std::vector<float>& x) const {
  if (c->s.shadows.empty() || x.empty()) return;
  const serving_model& m = *c->s.model;
  const size_t d = m.inputs.size();
  // How long a shadow's rows may wait for its worker: past it they are skipped, never queued
  // without bound behind a slow shadow.
  constexpr auto kBudget = std::chrono::milliseconds(100);
  for (const auto& sh : c->s.shadows) {
    std::vector<size_t> from;  // shadow input j is production input from[j]
    for (auto& in : sh->inputs) {
      size_t j = 0;
      while (j < d && m.inputs[j].name != in.name) ++j;
      from.push_back(j);
    }
    if (sh->label != m.label || std::find(from.begin(), from.end(), d) != from.end()) {
      sh->shadow_skipped.fetch_add(rows.size());  // not the same vector: it cannot shadow
      continue;
    }
    std::vector<size_t> pick;  // indices into rows (and x's rows)
    for (size_t k = 0; k < rows.size(); ++k)
      if (sampled(c->out[rows[k]].request_id, m.shadow_sample)) pick.push_back(k);
    if (pick.empty()) continue;
    const size_t sd = from.size();
    std::vector<float> sx(pick.size() * sd);
    for (size_t r = 0; r < pick.size(); ++r)
      for (size_t j = 0; j < sd; ++j) sx[r * sd + j] = x[pick[r] * d + from[j]];
    // What the log needs of each row, copied now: the call's answers are handed over (moved)
    // once it finishes, which is before the shadow scores.
    struct row_info {
      std::string request_id;
      int64_t prediction_time, feature_time;
      std::vector<std::string> keys;
      std::vector<std::pair<std::string, value>> fields;
    };
    auto info = std::make_shared<std::vector<row_info>>();
    if (d_.log)
      for (size_t k : pick) {
        const size_t i = rows[k];
        info->push_back({c->out[i].request_id, c->out[i].prediction_time, c->feature_time[i],
                         c->keys[i], c->ex[i].fields});
      }
    gate_->inflight.fetch_add(1);
    auto on_scores = [this, g = gate_, sh, info, n = pick.size(), sx, node = d_.node_id](
                         status st, const float* scores) {
      struct release {
        gate* g;
        ~release() { g->inflight.fetch_sub(1); }
      } held{g.get()};
      if (!st) {
        sh->shadow_skipped.fetch_add(n);
        return;
      }
      const int64_t wall = now_micros();
      const size_t sd = sh->inputs.size();
      for (size_t r = 0; r < n; ++r) {
        if (!std::isfinite(scores[r])) {
          sh->shadow_skipped.fetch_add(1);
          continue;
        }
        sh->record(0, true);
        sh->record_score(static_cast<double>(scores[r]));
        if (!d_.log || !sampled((*info)[r].request_id, sh->log_sample)) continue;
        const row_info& ri = (*info)[r];
        prediction_record rec;
        rec.model = sh->name;
        rec.version = sh->version;
        rec.stage = "shadow";
        rec.path = "shadow";
        rec.node = node;
        rec.request_id = ri.request_id;
        rec.time = wall;
        rec.prediction_time = ri.prediction_time;
        rec.feature_time = ri.feature_time;
        rec.score = static_cast<double>(scores[r]);
        rec.inputs = sh->input_names;
        rec.vector.assign(sx.begin() + static_cast<long>(r * sd),
                          sx.begin() + static_cast<long>((r + 1) * sd));
        for (size_t v = 0; v < sh->view_names.size() && v < ri.keys.size(); ++v)
          rec.keys.emplace_back(sh->view_names[v], ri.keys[v]);
        rec.fields = ri.fields;
        d_.log->append(std::move(rec));
      }
    };
    status st = sh->batch->submit(std::move(sx), pick.size(), false, steady::now() + kBudget,
                                  std::move(on_scores));
    if (!st) {
      sh->shadow_skipped.fetch_add(pick.size());
      gate_->inflight.fetch_sub(1);
    }
  }
}

bool predictor::drain(std::chrono::milliseconds max) const {
  gate_->stopping = true;
  const auto until = steady::now() + max;
  while (gate_->inflight.load() > 0 && steady::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return gate_->inflight.load() == 0;
}

status predictor::serve() const {
  if (!d_.cluster || !d_.nats) return ok_status();
  bus* nats = d_.nats;
  return nats->serve(
      node_predict_subject(d_.node_id),
      [self = this, g = gate_, nats](std::string data, std::string reply_subject) {
        auto respond = [nats, reply_subject](result<std::vector<prediction_out>> res) {
          capnp::MallocMessageBuilder mb;
          auto r = mb.initRoot<wire::ForwardedPredictReply>();
          if (res) {
            auto pl = r.initPredictions(static_cast<unsigned>(res->size()));
            for (size_t i = 0; i < res->size(); ++i)
              write_prediction(pl[static_cast<unsigned>(i)], (*res)[i]);
          } else {
            r.setError(res.error_message());
            r.setCode(static_cast<uint8_t>(res.error_code()));
          }
          nats->respond(reply_subject, to_bytes(mb));
        };
        // Counted in flight before `self` is used: drain() waits for it, or it sees the stop.
        g->inflight.fetch_add(1);
        struct release {
          gate* g;
          ~release() { g->inflight.fetch_sub(1); }
        } held{g.get()};
        if (g->stopping) return respond(make_error("node stopping; retry", errc::unavailable));
        std::string model;
        predict_options o;
        std::vector<example_in> examples;
        int64_t deadline = 0;
        bool ok = with_message<wire::ForwardedPredict>(data, [&](wire::ForwardedPredict::Reader r) {
          model = r.getModel();
          o = read_options(r.getOptions());
          o.version = r.getVersion();
          deadline = r.getDeadline();
          for (auto e : r.getExamples()) examples.push_back(read_example(e));
        });
        if (!ok || o.version == 0)
          return respond(make_error("malformed ForwardedPredict", errc::invalid));
        self->predict(model, o, std::move(examples), /*forward=*/false, deadline, respond);
      });
}

}  // namespace tessera
