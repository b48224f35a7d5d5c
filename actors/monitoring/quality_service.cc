#include "quality_service.h"

#include <nats/nats.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "alert_store.h"
#include "bus.h"
#include "checkpoint.h"
#include "cluster/cluster_view.h"
#include "cluster/nats_text.h"
#include "cluster/registry.h"
#include "codec.h"
#include "definitions.h"
#include "drift_monitor.h"
#include "expr.h"
#include "hash.h"
#include "logged_prediction.h"
#include "metrics.h"
#include "slo.h"
#include "state_store.h"
#include "time_util.h"
#include "verdicts.h"
#include "webhook.h"

namespace tessera {

namespace {

constexpr const char* kPredictionLog = "TSR_PREDICTIONS";  // prediction_log.h's stream

// An ephemeral push consumer of this node's own on `stream` for `filter`, from stream sequence
// `from` on, read synchronously (no acks: a message is handed to this node once; where to resume
// after a restart is the saved state's business, checkpoint.h). Pull fetches are not used here:
// libnats 3.4's natsSubscription_Fetch can hand back more messages than the array it allocated
// when earlier pull requests that timed out on the client are still served (a heap overflow
// seen under ASan with short fetch timeouts).
result<natsSubscription*> subscribe(bus& nats, const std::string& stream, const std::string& filter,
                                    uint64_t from) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = from;
  so.Config.AckPolicy = js_AckNone;
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_SubscribeSync(&sub, nats.jetstream(), filter.c_str(), nullptr, &so, &jerr);
  if (s != NATS_OK)
    return make_error("cannot read " + stream + " (" + filter + "): " + nats_text(s));
  natsSubscription_SetPendingLimits(sub, -1, -1);  // a burst waits here, never dropped
  return sub;
}

// The sequence of the last message `stream` holds (0: empty).
result<uint64_t> last_sequence(bus& nats, const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetStreamInfo(&si, nats.jetstream(), stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return make_error("cannot read " + stream + "'s state: " + nats_text(s));
  const uint64_t last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  return last;
}

uint64_t stream_sequence(natsMsg* msg) {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg) != NATS_OK || !meta) return 0;
  const uint64_t seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  return seq;
}

}  // namespace

struct quality_service::monitored {
  const model_def* model = nullptr;
  const label_def* label = nullptr;
  const stream_def* stream = nullptr;  // the label's
  const kind_plan* plan = nullptr;     // the label entity's
  std::vector<std::string> key_fields;
  natsSubscription* preds = nullptr;
  natsSubscription* labels = nullptr;
  std::thread thread;
  mutable std::mutex mu;  // what follows
  monitoring::label_join join;
  struct pair_row {
    double score, label;
    int64_t lag_us;
  };
  std::map<std::pair<std::string, uint32_t>, std::deque<pair_row>> windows;  // (stage, version)
  int64_t now = 0;  // latest label event time
  uint64_t verdicts = 0;
  std::vector<std::unique_ptr<monitoring::drift_monitor>> drifts;  // one per drift_window
  model_registry* registry = nullptr;                              // the versions' references
  int64_t predicted_until = 0;                                     // latest prediction time logged
  monitoring::logged_prediction parsed;                            // one line's, reused
  int64_t skew_at = 0;  // wall clock of the last skew sample (µs)
  uint64_t skew_compared = 0, skew_mismatched = 0;
  std::string skew_worst;
  // Objectives (slo.h): one burn-rate tracker per SLI declared.
  struct slo_tracker {
    std::string sli;
    monitoring::burn_rates rates;
  };
  std::vector<slo_tracker> slos;
  log_limiter limiter{std::chrono::seconds(10)};
  uint64_t bad = 0;
  // Saved state (checkpoint.h, state_store.h): the stream sequences of the last prediction-log
  // and label messages applied, when it was saved and restored (wall µs, 0: never).
  uint64_t plog_seq = 0, label_seq = 0;
  int64_t saved_at = 0, restored_at = 0;
  uint64_t saved_predictions = 0, saved_seq = 0;
  // Which node computes the model (owner_of); this one while `owned` (its consumers open).
  std::string owner;
  bool owned = false;

  // Empty state, as at a first start (the caller holds mu or is the only one to touch it).
  void reset() {
    monitoring::label_join::options jo;
    jo.max_label_delay_us = model->monitor.max_label_delay_us;
    jo.label_grace_us = model->monitor.label_grace_us;
    join = monitoring::label_join(jo);
    monitoring::drift_monitor::options dopt;
    dopt.step_us = model->monitor.drift_step_us;
    dopt.config.false_alarm_rate = model->monitor.drift_false_alarm_rate;
    dopt.config.min_psi = model->monitor.drift_min_psi;
    drifts.clear();
    for (const int64_t w : model->monitor.drift_windows_us) {
      dopt.window_us = w;
      drifts.push_back(std::make_unique<monitoring::drift_monitor>(dopt));
    }
    windows.clear();
    plog_seq = label_seq = 0;
    now = predicted_until = 0;
    saved_at = restored_at = 0;
    saved_predictions = saved_seq = 0;
  }

  // The whole state with the sequences it covers (the caller holds mu).
  nlohmann::json save() const {
    nlohmann::json arms = nlohmann::json::array();
    for (auto& [k, w] : windows) {
      nlohmann::json rows = nlohmann::json::array();
      for (auto& r : w) rows.push_back({r.score, r.label, r.lag_us});
      arms.push_back({k.first, k.second, rows});
    }
    return {{"format", 1},
            {"model", model->name},
            {"plog_seq", plog_seq},
            {"label_seq", label_seq},
            {"now", now},
            {"predicted_until", predicted_until},
            {"join", join.save()},
            {"arms", arms},
            {"drifts", [&] {
               nlohmann::json all = nlohmann::json::array();
               for (auto& d : drifts) all.push_back(d->save());
               return all;
             }()}};
  }
  // Replaces the state with a saved one; throws (std::exception) on a malformed one, leaving
  // the join or the pairs half restored: the caller then starts afresh.
  void restore(const nlohmann::json& j) {
    if (j.at("format").get<int>() != 1 || j.at("model").get<std::string>() != model->name)
      throw std::runtime_error("another model's state, or another format");
    std::map<std::pair<std::string, uint32_t>, std::deque<pair_row>> w;
    for (const auto& a : j.at("arms")) {
      auto& rows = w[{a.at(0).get<std::string>(), a.at(1).get<uint32_t>()}];
      for (const auto& r : a.at(2))
        rows.push_back({r.at(0).get<double>(), r.at(1).get<double>(), r.at(2).get<int64_t>()});
      while (rows.size() > static_cast<size_t>(model->monitor.window)) rows.pop_front();
    }
    join.restore(j.at("join"));
    windows = std::move(w);
    plog_seq = j.at("plog_seq").get<uint64_t>();
    label_seq = j.at("label_seq").get<uint64_t>();
    now = j.at("now").get<int64_t>();
    predicted_until = j.at("predicted_until").get<int64_t>();
    // Each window restores from the saved one of its length (and step); a window the
    // definitions added since starts afresh.
    for (auto& d : drifts) {
      bool restored = false;
      for (const auto& saved : j.at("drifts")) restored = restored || d->restore(saved);
      if (!restored)
        warn(
            "no saved drift window of this length and step (the definitions changed): that "
            "window starts afresh");
    }
  }
  void add(const std::vector<monitoring::labelled_pair>& pairs) {
    for (auto& p : pairs) {
      auto& w = windows[{p.stage, p.version}];
      w.push_back({p.score, p.label, p.label_time - p.prediction_time});
      while (w.size() > static_cast<size_t>(model->monitor.window)) w.pop_front();
    }
  }
  void warn(const std::string& what) {
    ++bad;
    uint64_t suppressed = 0;
    if (limiter.allow(what.substr(0, 40), suppressed))
      spdlog::warn("quality {}: {}{}", model->name, what,
                   suppressed ? " (" + std::to_string(suppressed) + " more)" : "");
  }
  // One prediction-log message: JSON lines.
  void on_predictions(const std::string& data) {
    std::vector<monitoring::labelled_pair> out;
    std::istringstream lines(data);
    std::string line;
    std::lock_guard<std::mutex> l(mu);
    while (std::getline(lines, line)) {
      if (line.empty()) continue;
      monitoring::logged_prediction& r = parsed;
      if (!monitoring::parse_logged(line, r)) {
        warn("a prediction-log line that is not a record");
        continue;
      }
      on_vector(r);
      std::string key;
      for (auto& f : key_fields) {
        const auto it = std::find_if(r.fields.begin(), r.fields.end(),
                                     [&](const auto& kv) { return kv.first == f; });
        if (it == r.fields.end()) {
          key.clear();
          break;
        }
        key += (key.empty() ? "" : "-") + it->second;
      }
      if (key.empty()) continue;  // an example without the label entity's key: nothing to join
      key += "@" + std::to_string(r.prediction_time);
      join.prediction(key, model->name, r.version, r.stage, r.score, r.prediction_time, out);
    }
    for (auto& d : drifts) d->advance(predicted_until);
    add(out);
  }
  // The logged vector and score into the drift windows of its version (whose reference is read
  // from the registry the first time the version is seen).
  void on_vector(const monitoring::logged_prediction& r) {
    if (drifts.empty() || r.version == 0 || r.prediction_time <= 0) return;
    if (!drifts.front()->knows(r.version)) load_reference(r.version);
    for (auto& d : drifts) d->add(r.version, r.prediction_time, r.vector, r.score);
    predicted_until = std::max(predicted_until, r.prediction_time);
  }
  void load_reference(uint32_t version) {
    auto rec = registry->show(model->name, version);
    if (!rec) {
      // Not recorded as known: the next prediction of this version asks again.
      warn("cannot read the reference of version " + std::to_string(version) + ": " +
           rec.error_message());
      return;
    }
    const auto& ref = (*rec)["reference"];
    if (!ref.is_object() || !ref.contains("inputs") || !ref["inputs"].is_array()) {
      for (auto& d : drifts)
        d->set_no_reference(version, "no reference distributions recorded (imported?)");
      return;
    }
    std::vector<monitoring::drift_reference> inputs;
    for (auto& x : ref["inputs"]) {
      auto r = monitoring::reference_from_json(x);
      if (!r) {
        for (auto& d : drifts) d->set_no_reference(version, r.error_message());
        return;
      }
      inputs.push_back(std::move(r.value()));
    }
    std::optional<monitoring::drift_reference> score;
    if (ref.contains("predictions")) {
      auto r = monitoring::reference_from_json(ref["predictions"]);
      if (r) {
        score = std::move(r.value());
        score->name = "score";
      }
    }
    for (auto& d : drifts) d->set_reference(version, inputs, score);
  }
  // One event message of the label stream.
  void on_events(const std::string& data) {
    std::vector<monitoring::labelled_pair> out;
    std::lock_guard<std::mutex> l(mu);
    const bool ok = with_message<wire::EventBatch>(data, [&](wire::EventBatch::Reader b) {
      for (auto e : b.getEvents()) {
        normalized_event ne;
        event_error err;
        if (!normalize_event(e, *stream, ne, err)) continue;  // the shards dead-letter it
        double y = 0;
        const value v = label->value->eval(ne.fields);
        if (is_null(v) || !as_number(v, y)) continue;  // no label for this event
        const value t = label->time->eval(ne.fields);
        if (!std::holds_alternative<timestamp_value>(t)) continue;
        const std::string k = entity_key(ne, *plan, err);
        if (k.empty()) continue;
        const int64_t pt = std::get<timestamp_value>(t).micros;
        join.label(k + "@" + std::to_string(pt), y != 0 ? 1.0 : 0.0, ne.time, out);
        now = std::max(now, ne.time);
      }
    });
    if (!ok) warn("a malformed event message");
    join.advance(now);
    add(out);
  }
};

result<std::unique_ptr<quality_service>> quality_service::start(deps d) {
  std::unique_ptr<quality_service> q(new quality_service());
  q->d_ = std::move(d);
  bool any = false;
  for (auto& m : q->d_.defs->models()) any = any || m.monitor.on;
  if (any) {
    auto reg = model_registry::open(q->d_.nats->jetstream(), q->d_.replicas);
    if (!reg) return make_error("monitor: the registry: " + reg.error_message());
    q->registry_ = std::move(reg.value());
    alert_store::options ao;
    ao.replicas = q->d_.replicas;
    auto al = alert_store::open(q->d_.nats->jetstream(), ao);
    if (!al) return make_error("monitor: alerts: " + al.error_message());
    q->alerts_ = std::move(al.value());
    auto states = monitor_state_store::open(q->d_.nats->jetstream(), q->d_.replicas);
    if (!states) return make_error("monitor: " + states.error_message());
    q->states_ = std::move(states.value());
    if (!q->d_.webhook.empty()) {
      auto wh = alert_webhook::start(q->d_.nats->jetstream(), q->d_.webhook);
      if (!wh) return make_error("monitor: " + wh.error_message());
      q->webhook_ = std::move(wh.value());
    }
  }
  for (auto& m : q->d_.defs->models()) {
    if (!m.monitor.on) continue;
    auto mm = std::make_unique<monitored>();
    mm->model = &m;
    mm->label = q->d_.defs->find_label(m.label);
    mm->stream = q->d_.defs->find_stream(mm->label->stream);
    mm->plan = q->d_.defs->find_plan(mm->label->stream, mm->label->entity);
    const entity_def* e = q->d_.defs->find_entity(mm->label->entity);
    if (!mm->plan || !e)
      return make_error("model " + m.name + ": monitor: the label's entity " + mm->label->entity +
                        " has no plan on stream " + mm->label->stream);
    mm->key_fields = e->key_fields;
    mm->reset();
    mm->registry = q->registry_.get();
    q->models_.push_back(std::move(mm));
  }
  for (auto& mm : q->models_)
    mm->thread = std::thread([raw = q.get(), m = mm.get()] { raw->run(m); });
  for (auto& mm : q->models_) {
    const auto& mon = mm->model->monitor;
    if (mon.slo_error_rate > 0)
      mm->slos.push_back({"errors", monitoring::burn_rates(mon.slo_error_rate)});
    if (mon.slo_latency_rate > 0)
      mm->slos.push_back({"latency", monitoring::burn_rates(mon.slo_latency_rate)});
    if (mon.slo_fallback_rate > 0)
      mm->slos.push_back({"fallback", monitoring::burn_rates(mon.slo_fallback_rate)});
    if (mon.slo_freshness_rate > 0)
      mm->slos.push_back({"freshness", monitoring::burn_rates(mon.slo_freshness_rate)});
  }
  if (q->alerts_) q->background_ = std::thread([raw = q.get()] { raw->background(); });
  return q;
}

quality_service::~quality_service() {
  stop();
  for (auto& m : models_) close(*m);
}

void quality_service::stop() {
  stopping_ = true;
  if (webhook_) webhook_->stop();
  for (auto& m : models_)
    if (m->thread.joinable()) {
      m->thread.join();
      if (m->owned) save(*m);  // whoever computes it next resumes where it stopped
    }
  if (background_.joinable()) background_.join();
}

void quality_service::save(monitored& m) {
  if (!states_) return;
  std::string bytes;
  uint64_t predictions = 0, seq = 0;
  {
    std::lock_guard<std::mutex> l(m.mu);
    if (m.saved_at != 0 && m.plog_seq + m.label_seq == m.saved_seq) return;  // nothing new
    bytes = monitoring::encode_state(m.save());
    predictions = m.join.figures().predictions;
    seq = m.plog_seq + m.label_seq;
  }
  const auto s = states_->save(m.model->name, bytes, d_.node_id);
  std::lock_guard<std::mutex> l(m.mu);
  if (!s) {
    m.warn("cannot save the monitor's state: " + s.error_message());
    return;
  }
  m.saved_at = now_micros();
  m.saved_predictions = predictions;
  m.saved_seq = seq;
}

void quality_service::close(monitored& m) {
  if (m.preds) natsSubscription_Destroy(m.preds);
  if (m.labels) natsSubscription_Destroy(m.labels);
  m.preds = m.labels = nullptr;
}

tessera::status quality_service::acquire(monitored& m) {
  std::unique_lock<std::mutex> l(m.mu);
  m.reset();
  l.unlock();
  bool restored = false;
  auto bytes = states_ ? states_->load(m.model->name)
                       : result<std::optional<std::string>>(std::optional<std::string>());
  if (!bytes) return make_error("cannot read the saved state: " + bytes.error_message());
  if (bytes->has_value()) {
    auto doc = monitoring::decode_state(**bytes);
    l.lock();
    try {
      if (!doc) throw std::runtime_error(doc.error_message());
      m.restore(*doc);
      m.restored_at = m.saved_at = now_micros();
      m.saved_predictions = m.join.figures().predictions;
      m.saved_seq = m.plog_seq + m.label_seq;
      restored = true;
      spdlog::info(
          "quality {}: state restored ({} predictions, {} labels read; resuming after "
          "prediction-log message {} and label message {})",
          m.model->name, m.join.figures().predictions, m.join.figures().labels, m.plog_seq,
          m.label_seq);
    } catch (const std::exception& e) {
      m.reset();
      m.warn(std::string("the saved state does not restore (") + e.what() + "): starting afresh");
    }
    l.unlock();
  }
  const std::string label_stream = jetstream_name(m.label->stream);
  uint64_t from[2] = {m.plog_seq, m.label_seq};
  int i = 0;
  for (const std::string& stream : {std::string(kPredictionLog), label_stream}) {
    // No saved state: from the stream's end on (as of now; a saved state may hold 0: nothing
    // read yet). A saved sequence past the end: the stream was deleted and made again since;
    // its old messages are gone, go on from its end.
    auto last = last_sequence(*d_.nats, stream);
    if (!last) return make_error(last.error_message());
    uint64_t& seq = from[i++];
    if (restored && seq > *last)
      m.warn(stream + " ends at " + std::to_string(*last) + ", before the saved state's " +
             std::to_string(seq) + " (made again?): reading from its end");
    if (!restored || seq > *last) seq = *last;
  }
  auto p = subscribe(*d_.nats, kPredictionLog, "tsr.plog." + m.model->name, from[0] + 1);
  if (!p) return make_error(p.error_message());
  auto lb =
      subscribe(*d_.nats, label_stream,
                stream_subject_prefix(m.label->stream) + "." + m.label->entity + ".>", from[1] + 1);
  if (!lb) {
    natsSubscription_Destroy(*p);
    return make_error(lb.error_message());
  }
  l.lock();
  m.plog_seq = from[0];
  m.label_seq = from[1];
  m.preds = *p;
  m.labels = *lb;
  m.owned = true;
  return ok_status();
}

void quality_service::release(monitored& m) {
  save(m);
  close(m);
  std::lock_guard<std::mutex> l(m.mu);
  m.owned = false;
  m.reset();
}

std::string quality_service::owner_of(const std::string& model) const {
  if (!d_.view) return d_.node_id;
  // Rendezvous hashing over the live members: each model has one owner, and a member's death
  // moves only its own models.
  std::string best;
  uint64_t best_h = 0;
  for (const auto& mi : d_.view->members()) {
    if (!mi.alive || mi.leaving) continue;
    const uint64_t h = stable_hash(model + "/" + mi.id);
    if (best.empty() || h > best_h) best = mi.id, best_h = h;
  }
  return best;
}

void quality_service::run(monitored* m) {
  pthread_setname_np(pthread_self(), "tsr-monitor");  // its CPU is told apart (bench_predict)
  // Predictions first each round (a label finds its prediction waiting); at most 1000 messages
  // of each side per round, so that neither starves the other.
  // One node computes each model (owner_of): it reads both streams, judges once a second and
  // saves the state; the others wait for the model to become theirs.
  auto next_verdict = std::chrono::steady_clock::now();
  auto next_save = next_verdict + d_.save_every;
  auto next_owner_check = next_verdict;
  while (!stopping_) {
    if (std::chrono::steady_clock::now() >= next_owner_check) {
      next_owner_check = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
      const std::string owner = owner_of(m->model->name);
      {
        std::lock_guard<std::mutex> l(m->mu);
        m->owner = owner;
      }
      if (owner == d_.node_id && !m->owned) {
        if (auto a = acquire(*m); !a) m->warn("cannot take the model over: " + a.error_message());
      } else if (owner != d_.node_id && m->owned) {
        spdlog::info("quality {}: now computed by {}", m->model->name,
                     owner.empty() ? "nobody (no live member)" : owner);
        release(*m);
      }
    }
    if (!m->owned) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (std::chrono::steady_clock::now() >= next_verdict) {
      next_verdict += std::chrono::seconds(1);
      judge(*m);
    }
    bool any = false;
    for (natsSubscription* sub : {m->preds, m->labels}) {
      for (int k = 0; k < 1000 && !stopping_; ++k) {
        natsMsg* msg = nullptr;
        const natsStatus s = natsSubscription_NextMsg(&msg, sub, 20);
        if (s == NATS_TIMEOUT) break;
        if (s != NATS_OK) {
          m->warn("read failed: " + nats_text(s));
          break;
        }
        any = true;
        const std::string data(natsMsg_GetData(msg),
                               static_cast<size_t>(natsMsg_GetDataLength(msg)));
        const uint64_t seq = stream_sequence(msg);
        natsMsg_Destroy(msg);
        uint64_t& applied = sub == m->preds ? m->plog_seq : m->label_seq;
        if (seq != 0 && seq <= applied) continue;  // covered by the restored state
        if (sub == m->preds)
          m->on_predictions(data);
        else
          m->on_events(data);
        std::lock_guard<std::mutex> l(m->mu);
        if (seq != 0) applied = seq;
      }
    }
    if (std::chrono::steady_clock::now() >= next_save) {
      next_save = std::chrono::steady_clock::now() + d_.save_every;
      save(*m);
    }
    if (!any) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<quality_service::model_status> quality_service::status() const {
  std::vector<model_status> out;
  for (auto& m : models_) out.push_back(status_of(*m));
  return out;
}

void quality_service::judge(monitored& m) {
  if (!registry_ || !alerts_) return;
  const auto forget = monitoring::judge(*m.model, status_of(m), *registry_, *alerts_, now_micros());
  std::lock_guard<std::mutex> l(m.mu);
  for (auto& k : forget) m.windows.erase(k);
  ++m.verdicts;
}

void quality_service::background() {
  pthread_setname_np(pthread_self(), "tsr-monitor-bg");
  std::vector<int64_t> next(models_.size(), 0);
  auto next_slo = std::chrono::steady_clock::now();
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if ((d_.serving || d_.freshness) && std::chrono::steady_clock::now() >= next_slo) {
      next_slo += std::chrono::seconds(10);
      evaluate_slos();
    }
    if (d_.skew && (!d_.view || d_.view->leader() == d_.node_id)) sample_skew(next);
  }
}

void quality_service::evaluate_slos() {
  const int64_t now = now_micros();
  const auto served = d_.serving ? d_.serving() : std::vector<deps::served_counters>{};
  for (auto& mp : models_) {
    monitored& m = *mp;
    if (m.slos.empty()) continue;
    const auto& mon = m.model->monitor;
    std::map<std::string, std::pair<uint64_t, uint64_t>> errors, slow, fallbacks, stale;
    if (mon.slo_freshness_ms > 0 && d_.freshness)
      stale[d_.node_id] = d_.freshness(mon.slo_freshness_ms * 1000);
    for (auto& c : served) {
      if (c.model != m.model->name) continue;
      errors[c.source] = {c.requests, c.errors};
      fallbacks[c.source] = {c.requests, c.fallbacks};
      if (mon.slo_latency_ms > 0 && c.at_least)
        slow[c.source] = {c.requests, c.at_least(mon.slo_latency_ms * 1000)};
    }
    for (auto& t : m.slos) {
      std::lock_guard<std::mutex> l(m.mu);
      t.rates.observe(now, t.sli == "errors"      ? errors
                           : t.sli == "latency"   ? slow
                           : t.sli == "freshness" ? stale
                                                  : fallbacks);
    }
    for (auto& t : m.slos) {
      monitoring::burn_rates::level level;
      double b5, b60;
      {
        std::lock_guard<std::mutex> l(m.mu);
        level = t.rates.judge(now);
        b5 = t.rates.burn(now, 5 * 60 * kMicrosPerSecond);
        b60 = t.rates.burn(now, 3600 * kMicrosPerSecond);
      }
      for (auto lv : {monitoring::burn_rates::level::ticket, monitoring::burn_rates::level::page}) {
        monitoring::alert_spec spec;
        spec.name = "slo_" + t.sli;
        spec.severity = monitoring::level_name(lv);
        spec.key = spec.name + "." + m.model->name + "." + d_.node_id + "." + spec.severity;
        spec.group = m.model->name;
        const std::string what =
            t.sli == "errors"      ? "predictions that failed"
            : t.sli == "latency"   ? "predictions that took longer than the objective"
            : t.sli == "freshness" ? "event batches readable later than the objective"
                                   : "predictions answered by the fallback";
        char summary[320];
        std::snprintf(summary, sizeof summary,
                      "%s on node %s: %s burn the %s budget (%.4g) %.1fx over the last hour, "
                      "%.1fx over 5 minutes",
                      m.model->name.c_str(), d_.node_id.c_str(), what.c_str(), t.sli.c_str(),
                      t.rates.budget(), b60, b5);
        if (auto a = alerts_->observe(spec, level == lv, now, summary,
                                      {{"sli", t.sli}, {"burn_1h", b60}, {"burn_5m", b5}});
            !a)
          m.warn("slo alert: " + a.error_message());
      }
    }
  }
}

void quality_service::sample_skew(std::vector<int64_t>& next) {
  {
    const int64_t now = now_micros();
    for (size_t i = 0; i < models_.size() && !stopping_; ++i) {
      monitored& m = *models_[i];
      const auto& mon = m.model->monitor;
      if (mon.skew_every_us <= 0) continue;
      if (next[i] == 0) next[i] = now + mon.skew_every_us;  // the first a period after start
      if (now < next[i]) continue;
      next[i] = now + mon.skew_every_us;
      auto report = d_.skew(m.model->name, static_cast<size_t>(mon.skew_sample));
      if (!report) {
        if (report.error_code() != errc::not_found) m.warn("skew: " + report.error_message());
        continue;
      }
      auto j = nlohmann::json::parse(*report, nullptr, false);
      if (!j.is_object()) continue;
      const uint64_t compared = j.value("compared", uint64_t{0});
      const uint64_t mismatched = j.value("mismatched_examples", uint64_t{0});
      std::string worst;
      uint64_t worst_n = 0;
      nlohmann::json features = nlohmann::json::array();
      if (j.contains("features") && j["features"].is_array())
        for (auto& f : j["features"]) {
          const uint64_t n = f.value("mismatches", uint64_t{0});
          if (n > worst_n) worst_n = n, worst = f.value("name", "");
          if (n) features.push_back({{"name", f.value("name", "")}, {"mismatches", n}});
        }
      {
        std::lock_guard<std::mutex> l(m.mu);
        m.skew_at = now;
        m.skew_compared = compared;
        m.skew_mismatched = mismatched;
        m.skew_worst = worst;
      }
      const bool skewed =
          compared > 0 &&
          static_cast<double>(mismatched) / static_cast<double>(compared) > mon.max_skew_share;
      monitoring::alert_spec spec;
      spec.key = "skew." + m.model->name;
      spec.name = "skew";
      spec.severity = "ticket";
      spec.group = m.model->name;
      const std::string summary =
          std::to_string(mismatched) + " of " + std::to_string(compared) + " logged vectors of " +
          m.model->name + " differ from the offline recomputation (most often " + worst + ")";
      if (auto a = alerts_->observe(
              spec, skewed, now, summary,
              {{"compared", compared}, {"mismatched", mismatched}, {"features", features}});
          !a)
        m.warn("skew alert: " + a.error_message());
    }
  }
}

quality_service::model_status quality_service::status_of(const monitored& m) const {
  model_status ms;
  ms.model = m.model->name;
  std::lock_guard<std::mutex> l(m.mu);
  ms.counts = m.join.figures();
  ms.waiting = m.join.waiting_predictions();
  ms.verdicts = m.verdicts;
  ms.saved_at_us = m.saved_at;
  ms.restored_at_us = m.restored_at;
  ms.saved_predictions = m.saved_predictions;
  ms.owner = m.owner;
  ms.owned = m.owned;
  ms.skew_at_us = m.skew_at;
  ms.skew_compared = m.skew_compared;
  ms.skew_mismatched = m.skew_mismatched;
  ms.skew_worst = m.skew_worst;
  const int64_t wall = now_micros();
  for (auto& t : m.slos) {
    model_status::slo_state x;
    x.sli = t.sli;
    x.budget = t.rates.budget();
    x.burn5m = t.rates.burn(wall, 300 * kMicrosPerSecond);
    x.burn30m = t.rates.burn(wall, 1800 * kMicrosPerSecond);
    x.burn1h = t.rates.burn(wall, 3600 * kMicrosPerSecond);
    x.burn6h = t.rates.burn(wall, 6 * 3600 * kMicrosPerSecond);
    x.events1h = t.rates.events(wall, 3600 * kMicrosPerSecond);
    x.level = monitoring::level_name(t.rates.judge(wall));
    ms.slos.push_back(std::move(x));
  }
  for (auto& d : m.drifts) {
    for (auto& v : d->status()) ms.drift.push_back(std::move(v));
    ms.drift_mismatched = d->mismatched();
  }
  const arm* production = nullptr;
  const arm* canary = nullptr;
  for (auto& [k, w] : m.windows) {
    arm a;
    a.stage = k.first;
    a.version = k.second;
    a.pairs = w.size();
    std::vector<float> p, y;
    std::vector<int64_t> lags;
    for (auto& r : w) {
      p.push_back(static_cast<float>(r.score));
      y.push_back(static_cast<float>(r.label));
      lags.push_back(r.lag_us);
    }
    a.q = monitoring::assess(p, y);
    if (!lags.empty()) {
      std::sort(lags.begin(), lags.end());
      a.lag_p50_ms = static_cast<double>(lags[lags.size() / 2]) / 1e3;
      a.lag_p99_ms =
          static_cast<double>(lags[std::min(lags.size() - 1, lags.size() * 99 / 100)]) / 1e3;
    }
    ms.arms.push_back(std::move(a));
  }
  for (auto& a : ms.arms) {
    if (a.stage == "production" && (!production || a.pairs > production->pairs)) production = &a;
    if (a.stage == "canary" && (!canary || a.pairs > canary->pairs)) canary = &a;
  }
  const auto min_pairs = static_cast<uint64_t>(m.model->monitor.min_pairs);
  if (production && canary && production->pairs >= min_pairs && canary->pairs >= min_pairs) {
    ms.compared = true;
    ms.canary = monitoring::compare(canary->q, production->q, m.model->monitor.alpha);
  }
  return ms;
}

void quality_service::fill_status(wire::NodeStatus::Builder st) const {
  auto all = status();
  auto ql = st.initQuality(static_cast<unsigned>(all.size()));
  for (size_t i = 0; i < all.size(); ++i) {
    auto b = ql[static_cast<unsigned>(i)];
    const auto& m = all[i];
    b.setModel(m.model);
    b.setPredictions(m.counts.predictions);
    b.setLabels(m.counts.labels);
    b.setJoined(m.counts.joined);
    b.setUnlabelled(m.counts.unlabelled);
    b.setLate(m.counts.late);
    b.setUnmatched(m.counts.unmatched);
    b.setDuplicateLabels(m.counts.duplicate_labels);
    b.setDuplicatePredictions(m.counts.duplicate_predictions);
    b.setWaiting(m.waiting);
    b.setCompared(m.compared);
    b.setCanaryWorse(m.canary.worse);
    b.setCanaryLogLossP(m.canary.log_loss_p);
    b.setCanaryAucP(m.canary.auc_p);
    b.setVerdicts(m.verdicts);
    b.setSavedAt(m.saved_at_us);
    b.setRestoredAt(m.restored_at_us);
    b.setSavedPredictions(m.saved_predictions);
    b.setOwner(m.owner);
    b.setOwned(m.owned);
    b.setDriftMismatched(m.drift_mismatched);
    b.setSkewAt(m.skew_at_us);
    b.setSkewCompared(m.skew_compared);
    b.setSkewMismatched(m.skew_mismatched);
    b.setSkewWorst(m.skew_worst);
    auto sl = b.initSlos(static_cast<unsigned>(m.slos.size()));
    for (size_t k = 0; k < m.slos.size(); ++k) {
      auto x = sl[static_cast<unsigned>(k)];
      const auto& y = m.slos[k];
      x.setSli(y.sli);
      x.setBudget(y.budget);
      x.setBurn5m(y.burn5m);
      x.setBurn30m(y.burn30m);
      x.setBurn1h(y.burn1h);
      x.setBurn6h(y.burn6h);
      x.setEvents1h(y.events1h);
      x.setLevel(y.level);
    }
    auto dl = b.initDrift(static_cast<unsigned>(m.drift.size()));
    for (size_t k = 0; k < m.drift.size(); ++k) {
      auto d = dl[static_cast<unsigned>(k)];
      const auto& x = m.drift[k];
      d.setVersion(x.version);
      d.setReference(x.has_reference);
      d.setWhy(x.why);
      d.setAt(x.at_us);
      d.setPredictions(x.n);
      d.setTests(x.tests);
      d.setWindow(x.window_us);
      auto vl = d.initValues(static_cast<unsigned>(x.values.size()));
      for (size_t i = 0; i < x.values.size(); ++i) {
        auto v = vl[static_cast<unsigned>(i)];
        const auto& r = x.values[i].result;
        v.setName(r.name);
        v.setTested(r.tested);
        v.setPsi(r.psi);
        v.setThreshold(r.threshold);
        v.setPValue(r.p_value);
        v.setJs(r.js);
        v.setMeanShiftSd(r.mean_shift_sd);
        v.setDrifted(r.drifted);
        v.setAlarming(std::find(x.alarming.begin(), x.alarming.end(), r.name) != x.alarming.end());
        v.setContribution(x.values[i].contribution);
      }
    }
    auto al = b.initArms(static_cast<unsigned>(m.arms.size()));
    for (size_t k = 0; k < m.arms.size(); ++k) {
      auto a = al[static_cast<unsigned>(k)];
      const arm& x = m.arms[k];
      a.setStage(x.stage);
      a.setVersion(x.version);
      a.setPairs(x.pairs);
      a.setPositives(x.q.positives);
      a.setAuc(x.q.point.auc);
      a.setAucLow(x.q.auc.low);
      a.setAucHigh(x.q.auc.high);
      a.setLogLoss(x.q.point.log_loss);
      a.setLogLossLow(x.q.log_loss.low);
      a.setLogLossHigh(x.q.log_loss.high);
      a.setAccuracy(x.q.point.accuracy);
      a.setAccuracyLow(x.q.accuracy.low);
      a.setAccuracyHigh(x.q.accuracy.high);
      a.setEce(x.q.point.ece);
      a.setLabelLagP50Ms(x.lag_p50_ms);
      a.setLabelLagP99Ms(x.lag_p99_ms);
    }
  }
}

}  // namespace tessera
