#include "follower.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <nlohmann/json.hpp>

#include "bus.h"
#include "cluster/nats_text.h"
#include "codec.h"
#include "definitions.h"
#include "prediction_log.h"
#include "predictor.h"
#include "schemas/tessera.capnp.h"
#include "time_util.h"

namespace tessera {

namespace {

// Failures another delivery may not repeat: a node or shard away, overload, time.
bool transient(errc c) {
  return c == errc::retryable || c == errc::unavailable || c == errc::overloaded ||
         c == errc::deadline;
}

std::string consumer_of(const std::string& model) {
  return "follow_" + model;
}

}  // namespace

struct follower::model_follow {
  const model_def* model = nullptr;
  const stream_def* stream = nullptr;
  // The followed stream's fields that make an example: (index in the stream, name), the label
  // stream's own non-derived fields that the followed stream has too.
  std::vector<std::pair<int, std::string>> take;
  natsSubscription* sub = nullptr;
  std::thread fetcher;
  std::mutex mu;  // protects in_flight's waiters
  std::condition_variable cv;
  std::atomic<int> in_flight{0};
  std::atomic<uint64_t> predicted{0}, skipped{0}, dead{0}, retried{0}, duplicates{0}, pending{0};
  latency_histogram lag;
};

struct follower::message {
  natsMsg* msg = nullptr;
  uint64_t seq = 0, delivered = 1;
  int64_t stored_ns = 0;
  std::vector<example_in> examples;
  std::vector<uint32_t> index;  // each example's index in the message
  std::vector<std::string> lines;
  struct dead_letter {
    uint32_t index;
    std::string reason;
    nlohmann::json event;
  };
  std::vector<dead_letter> dead;
  void dead_example(size_t k, std::string why) {
    nlohmann::json ev = nlohmann::json::object();
    for (auto& [name, v] : event_fields[k]) ev[name] = to_text(v);
    dead.push_back({index[k], std::move(why), std::move(ev)});
  }
  // Per example: the event's fields (its line's `fields`, or its dead letter's `event`).
  std::vector<std::vector<std::pair<std::string, value>>> event_fields;
  uint64_t skipped = 0;
  ~message() {
    if (msg) natsMsg_Destroy(msg);
  }
};

result<std::unique_ptr<follower>> follower::start(deps d, options o) {
  std::unique_ptr<follower> f(new follower());
  f->d_ = std::move(d);
  f->o_ = o;
  bool any = false;
  for (auto& m : f->d_.defs->models()) any = any || m.follow.any();
  if (!any) return f;
  jetstream_spec spec;
  spec.name = kStream;
  spec.subject = "tsr.pred.>";
  spec.max_age_us = 7LL * 86400 * 1000000;
  spec.max_bytes = 2LL << 30;
  spec.duplicate_window_us = o.duplicate_window_us;
  spec.allow_direct = true;
  spec.replicas = f->d_.replicas;
  if (auto st = ensure_jetstream(f->d_.nats->jetstream(), spec); !st) return st.failure();
  if (auto st = f->d_.nats->ensure_dlq_stream(); !st) return st.failure();
  for (auto& m : f->d_.defs->models()) {
    if (!m.follow.any()) continue;
    auto mf = std::make_unique<model_follow>();
    mf->model = &m;
    mf->stream = f->d_.defs->find_stream(m.follow.stream);
    const label_def* label = f->d_.defs->find_label(m.label);
    const stream_def* ls = f->d_.defs->find_stream(label->stream);
    for (auto& fd : ls->fields) {
      const int at = mf->stream->field_index(fd.name);
      if (fd.derive_src.empty() && at >= 0) mf->take.emplace_back(at, fd.name);
    }
    // The consumer is created explicitly and then bound, so that no node's stop deletes it.
    const std::string sname = jetstream_name(m.follow.stream), cname = consumer_of(m.name);
    const std::string filter = stream_subject_prefix(m.follow.stream) + "." +
                               f->d_.defs->plans_for_stream(m.follow.stream).front()->entity + ".>";
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = cname.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = o.ack_wait_ms * 1000000;
    cc.MaxAckPending = static_cast<int64_t>(o.max_in_flight) * 16;
    cc.DeliverPolicy = m.follow.from_start ? js_DeliverAll : js_DeliverNew;
    cc.FilterSubject = filter.c_str();
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddConsumer(&ci, f->d_.nats->jetstream(), sname.c_str(), &cc, nullptr, &jerr);
    if (ci) jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK)  // it exists (another node, an earlier run): bind to it as it is
      spdlog::debug("follow {}: add consumer: {} (JetStream error {})", m.name, nats_text(s),
                    static_cast<int>(jerr));
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = sname.c_str();
    so.Consumer = cname.c_str();
    s = js_PullSubscribe(&mf->sub, f->d_.nats->jetstream(), filter.c_str(), cname.c_str(), nullptr,
                         &so, &jerr);
    if (s != NATS_OK)
      return make_error("model " + m.name + ": cannot follow stream " + m.follow.stream + ": " +
                        nats_text(s) +
                        (jerr ? " (JetStream error " + std::to_string(jerr) + ")" : std::string()));
    f->follows_.push_back(std::move(mf));
  }
  for (auto& mf : f->follows_)
    mf->fetcher = std::thread([raw = f.get(), mfp = mf.get()] { raw->run(mfp); });
  return f;
}

follower::~follower() {
  stop();
}

void follower::stop() {
  stopping_ = true;
  for (auto& f : follows_)
    if (f->fetcher.joinable()) f->fetcher.join();
  // What is in flight finishes (or is delivered again elsewhere after ack_wait).
  for (auto& f : follows_) {
    std::unique_lock<std::mutex> l(f->mu);
    if (!f->cv.wait_for(l, std::chrono::seconds(5), [&] { return f->in_flight.load() == 0; }))
      spdlog::warn("follow {}: {} event messages still in flight at stop", f->model->name,
                   f->in_flight.load());
  }
  for (auto& f : follows_)
    if (f->sub && f->in_flight.load() == 0) {
      natsSubscription_Destroy(f->sub);  // keeps the durable consumer
      f->sub = nullptr;
    }
}

void follower::run(model_follow* f) {
  while (!stopping_) {
    const int room = o_.max_in_flight - f->in_flight.load();
    if (room <= 0) {
      std::unique_lock<std::mutex> l(f->mu);
      f->cv.wait_for(l, std::chrono::milliseconds(100));
      continue;
    }
    natsMsgList list{nullptr, 0};
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s =
        natsSubscription_Fetch(&list, f->sub, std::min(room, o_.fetch_batch), 500, &jerr);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK) {
      uint64_t suppressed = 0;
      if (limiter_.allow("fetch " + f->model->name, suppressed))
        spdlog::warn("follow {}: fetch from {} failed: {}{}", f->model->name,
                     f->model->follow.stream, nats_text(s),
                     suppressed ? " (" + std::to_string(suppressed) + " more)" : "");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    for (int i = 0; i < list.Count; ++i) {
      auto m = std::make_shared<message>();
      m->msg = list.Msgs[i];
      list.Msgs[i] = nullptr;  // owned by `m` now
      f->in_flight.fetch_add(1);
      handle(f, std::move(m));
    }
    natsMsgList_Destroy(&list);
  }
}

void follower::handle(model_follow* f, std::shared_ptr<message> m) {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, m->msg) == NATS_OK && meta) {
    m->seq = meta->Sequence.Stream;
    m->delivered = meta->NumDelivered;
    m->stored_ns = meta->Timestamp;
    f->pending.store(meta->NumPending);
    jsMsgMetaData_Destroy(meta);
  }
  if (m->delivered > 1) f->retried.fetch_add(1);
  const stream_def& s = *f->stream;
  const std::string data(natsMsg_GetData(m->msg),
                         static_cast<size_t>(natsMsg_GetDataLength(m->msg)));
  const bool ok = with_message<wire::EventBatch>(data, [&](wire::EventBatch::Reader b) {
    uint32_t i = 0;
    const std::vector<int> positional = positional_fields(b, s);
    for (auto e : b.getEvents()) {
      normalized_event ne;
      event_error err;
      if (!normalize_event(e, s, ne, err, &positional)) {
        m->dead.push_back({i++, (err.field.empty() ? "" : "field " + err.field + ": ") + err.reason,
                           nlohmann::json()});
        continue;
      }
      if (f->model->follow.when_expr && !f->model->follow.when_expr->test(ne.fields)) {
        ++m->skipped;
        ++i;
        continue;
      }
      example_in ex;
      for (auto& [at, name] : f->take) {
        const value& v = ne.fields[static_cast<size_t>(at)];
        if (!is_null(v)) ex.fields.emplace_back(name, v);
      }
      std::vector<std::pair<std::string, value>> all;
      for (size_t k = 0; k < s.fields.size(); ++k)
        if (!is_null(ne.fields[k])) all.emplace_back(s.fields[k].name, ne.fields[k]);
      ex.as_of = ne.time;
      ex.request_id = s.name + ":" + std::to_string(m->seq) + ":" + std::to_string(i);
      m->examples.push_back(std::move(ex));
      m->event_fields.push_back(std::move(all));
      m->index.push_back(i++);
    }
  });
  if (!ok) m->dead.push_back({0, "malformed EventBatch message", nlohmann::json()});
  if (m->examples.empty()) return finish(f, m);
  predict_options po;
  po.deadline_ms = o_.deadline_ms;
  po.settled = true;            // see what the point-in-time dataset of the label sees
  auto examples = m->examples;  // kept for the lines and dead letters
  d_.predict->predict(
      f->model->name, po, std::move(examples), /*forward=*/true, 0,
      [this, f, m](result<std::vector<prediction_out>> r) {
        const bool last = m->delivered >= static_cast<uint64_t>(o_.max_attempts);
        auto retry_later = [&] {
          const int64_t delay_ms =
              std::min<int64_t>(30000, 250LL << std::min<uint64_t>(m->delivered - 1, 7));
          natsMsg_NakWithDelay(m->msg, delay_ms, nullptr);
          f->in_flight.fetch_sub(1);
          f->cv.notify_all();
        };
        if (!r) {
          // The model cannot serve at all (no production version yet, stopping, ...): the
          // whole message waits, up to the last attempt.
          if (!last && (transient(r.error_code()) || r.error_code() == errc::not_found))
            return retry_later();
          for (size_t k = 0; k < m->examples.size(); ++k)
            m->dead_example(
                k, r.error_message() +
                       (last ? " (after " + std::to_string(m->delivered) + " attempts)" : ""));
          return finish(f, m);
        }
        for (auto& p : *r)
          if (!p.error.empty() && transient(p.code) && !last) return retry_later();
        const int64_t wall = now_micros();
        for (size_t k = 0; k < r->size(); ++k) {
          prediction_out& p = (*r)[k];
          if (!p.error.empty()) {
            m->dead_example(k, p.error);
            continue;
          }
          prediction_record rec;
          rec.model = f->model->name;
          rec.version = p.version;
          rec.stage = p.stage;
          rec.path = p.path;
          rec.decision = p.decision;
          rec.rule = p.rule;
          rec.node = p.node;
          rec.request_id = p.request_id;
          rec.time = wall;
          rec.prediction_time = p.prediction_time;
          rec.score = p.score;
          rec.latency_us = p.latency_us;
          rec.fields = std::move(m->event_fields[k]);
          m->lines.push_back(rec.to_json());
        }
        finish(f, m);
      });
}

void follower::finish(model_follow* f, const std::shared_ptr<message>& m) {
  struct publishes {
    std::atomic<int> left{0};
    std::atomic<bool> failed{false};
    std::atomic<bool> duplicate{false};
  };
  auto p = std::make_shared<publishes>();
  std::vector<std::pair<std::string, std::string>> out;  // (subject, payload) with msg ids below
  std::vector<std::string> ids;
  if (!m->lines.empty()) {
    std::string payload;
    for (auto& l : m->lines) payload += l + "\n";
    out.emplace_back(subject(f->model->name), std::move(payload));
    ids.push_back(f->model->name + ":" + std::to_string(m->seq));
  }
  for (auto& dl : m->dead) {
    nlohmann::json j{{"model", f->model->name}, {"stream", f->stream->name}, {"seq", m->seq},
                     {"index", dl.index},       {"reason", dl.reason},       {"time", now_micros()},
                     {"event", dl.event}};
    out.emplace_back("tsr.dlq.pred." + f->model->name, j.dump());
    ids.push_back("pred." + f->model->name + ":" + std::to_string(m->seq) + ":" +
                  std::to_string(dl.index));
  }
  uint64_t suppressed = 0;
  if (!m->dead.empty() && limiter_.allow("dead " + f->model->name, suppressed))
    spdlog::warn(
        "follow {}: {} event(s) of message {} dead-lettered, first: {}{}", f->model->name,
        m->dead.size(), m->seq, m->dead[0].reason,
        suppressed ? " (" + std::to_string(suppressed) + " similar lines suppressed)" : "");
  auto done = [this, f, m, p] {
    if (p->failed) {
      natsMsg_NakWithDelay(m->msg, 1000, nullptr);
    } else {
      natsMsg_Ack(m->msg, nullptr);
      if (p->duplicate)
        f->duplicates.fetch_add(1);
      else
        f->predicted.fetch_add(m->lines.size());
      f->dead.fetch_add(m->dead.size());
      f->skipped.fetch_add(m->skipped);
      if (m->stored_ns > 0)
        f->lag.record_us(static_cast<double>(now_micros() - m->stored_ns / 1000));
    }
    f->in_flight.fetch_sub(1);
    f->cv.notify_all();
  };
  if (out.empty()) return done();
  p->left = static_cast<int>(out.size());
  for (size_t i = 0; i < out.size(); ++i)
    d_.nats->publish(
        out[i].first, out[i].second.data(), out[i].second.size(), ids[i],
        [p, done, first = i == 0 && !m->lines.empty()](const std::string& err, bool dup) {
          if (!err.empty()) p->failed = true;
          if (dup && first) p->duplicate = true;
          if (p->left.fetch_sub(1) == 1) done();
        });
}

std::vector<follower::status_entry> follower::status() const {
  std::vector<status_entry> out;
  for (auto& f : follows_) {
    status_entry e;
    e.model = f->model->name;
    e.stream = f->stream->name;
    e.predicted = f->predicted.load();
    e.skipped = f->skipped.load();
    e.dead_lettered = f->dead.load();
    e.retried = f->retried.load();
    e.duplicates = f->duplicates.load();
    e.pending = f->pending.load();
    e.lag_p50_ms = f->lag.quantile_us(0.5) / 1000;
    e.lag_p99_ms = f->lag.quantile_us(0.99) / 1000;
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace tessera
