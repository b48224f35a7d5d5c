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

#include "quality_monitored.h"

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

}  // namespace tessera
