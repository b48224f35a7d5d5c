#include "prediction_log.h"

#include "bus.h"
#include "cluster/nats_text.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

namespace tessera {
namespace {

nlohmann::json json_of(const value& v) {
  switch (v.index()) {
    case 1:
      return std::get<int64_t>(v);
    case 2:
      return std::get<double>(v);
    case 3:
      return std::get<std::string>(v);
    case 4:
      return std::get<bool>(v);
    case 5:
      return std::get<timestamp_value>(v).micros;
    case 6:
      return std::get<std::vector<std::string>>(v);
    default:
      return nullptr;
  }
}

}  // namespace

std::string prediction_record::to_json() const {
  nlohmann::json j{{"request_id", request_id},
                   {"time", time},
                   {"model", model},
                   {"version", version},
                   {"stage", stage},
                   {"path", path},
                   {"node", node},
                   {"prediction_time", prediction_time},
                   {"feature_time", feature_time},
                   {"score", score},
                   {"latency_us", latency_us}};
  if (!decision.empty()) {
    j["decision"] = decision;
    j["rule"] = rule;
  }
  auto& in = j["inputs"] = nlohmann::json::array();
  if (inputs)
    for (auto& n : *inputs) in.push_back(n);
  auto& vec = j["vector"] = nlohmann::json::array();
  for (double x : vector) vec.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json());
  auto& k = j["keys"] = nlohmann::json::object();
  for (auto& [view, key] : keys) k[view] = key;
  auto& f = j["fields"] = nlohmann::json::object();
  for (auto& [name, v] : fields) f[name] = json_of(v);
  return j.dump();
}

result<std::unique_ptr<prediction_log>> prediction_log::start(__jsCtx* js, options o) {
  std::unique_ptr<prediction_log> p(new prediction_log());
  p->js_ = js;
  p->opts_ = o;
  jetstream_spec spec;
  spec.name = kStream;
  spec.subject = "tsr.plog.>";
  spec.max_age_us = o.max_age_us;
  spec.max_bytes = o.max_bytes;
  spec.allow_direct = true;
  spec.replicas = o.replicas;
  if (auto st = ensure_jetstream(js, spec); !st)
    return make_error("cannot create the prediction log: " + st.error_message());
  p->writer_ = std::thread([raw = p.get()] { raw->run(); });
  return p;
}

prediction_log::~prediction_log() {
  stop();
}

void prediction_log::stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && !writer_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

bool prediction_log::append(prediction_record r) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ || queue_.size() >= opts_.max_records) {
      drops_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    queue_.push_back(std::move(r));
    appended_.fetch_add(1, std::memory_order_relaxed);
  }
  cv_.notify_one();
  return true;
}

bool prediction_log::flush(std::chrono::milliseconds timeout) {
  const uint64_t target = appended_.load();
  std::unique_lock<std::mutex> l(mu_);
  return flushed_.wait_for(l, timeout, [&] { return done_.load() >= target; });
}

void prediction_log::run() {
  std::deque<prediction_record> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      batch.swap(queue_);
    }
    // One message per model and flush, split at max_message_bytes.
    std::map<std::string, std::pair<std::string, size_t>> by_model;
    for (auto& r : batch) {
      const std::string& model = r.model;
      const std::string line = r.to_json();
      auto& [payload, n] = by_model[model];
      if (!payload.empty() && payload.size() + line.size() + 1 > opts_.max_message_bytes) {
        write(model, payload, n);
        payload.clear();
        n = 0;
      }
      if (!payload.empty()) payload += '\n';
      payload += line;
      ++n;
    }
    for (auto& [model, pn] : by_model)
      if (pn.second) write(model, pn.first, pn.second);
    {
      std::lock_guard<std::mutex> l(mu_);
      done_.fetch_add(batch.size());
    }
    flushed_.notify_all();
    batch.clear();
  }
}

void prediction_log::write(const std::string& model, const std::string& payload, size_t records) {
  jsPubAck* pa = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus st = js_Publish(&pa, js_, subject(model).c_str(), payload.data(),
                             static_cast<int>(payload.size()), nullptr, &jerr);
  if (pa) jsPubAck_Destroy(pa);
  if (st == NATS_OK) {
    written_.fetch_add(records, std::memory_order_relaxed);
    return;
  }
  drops_.fetch_add(records, std::memory_order_relaxed);
  static std::atomic<int64_t> last_log{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  if (last_log.exchange(now) != now)
    spdlog::warn("prediction log: {} records of {} dropped: {}", records, model, nats_text(st));
}

result<prediction_log::page> prediction_log::tail(const std::string& model, size_t limit,
                                                  uint64_t after_seq) const {
  const std::string subj = subject(model);
  page out;
  // Reads the messages of `subj` from sequence `from` on (direct gets, next by subject) until
  // `until` (0: the end), appending their records; returns the last sequence read.
  auto read_from = [&](uint64_t from, uint64_t until, std::vector<std::string>& recs,
                       size_t max_records) -> result<uint64_t> {
    uint64_t last = 0;
    for (uint64_t seq = from; recs.size() < max_records;) {
      jsDirectGetMsgOptions o;
      jsDirectGetMsgOptions_Init(&o);
      o.Sequence = seq;
      o.NextBySubject = subj.c_str();
      natsMsg* msg = nullptr;
      natsStatus st = js_DirectGetMsg(&msg, js_, kStream, nullptr, &o);
      if (st == NATS_NOT_FOUND) break;
      if (st != NATS_OK) return make_error("prediction log: " + nats_text(st), errc::retryable);
      uint64_t got = 0;
      if (const char* s = nullptr; natsMsgHeader_Get(msg, "Nats-Sequence", &s) == NATS_OK && s)
        got = std::strtoull(s, nullptr, 10);
      if (got == 0 || (until && got > until)) {
        natsMsg_Destroy(msg);
        break;
      }
      std::string data(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
      natsMsg_Destroy(msg);
      for (size_t b = 0; b < data.size();) {
        size_t e = data.find('\n', b);
        if (e == std::string::npos) e = data.size();
        recs.push_back(data.substr(b, e - b));
        b = e + 1;
      }
      last = got;
      seq = got + 1;
    }
    return last;
  };
  if (after_seq > 0) {
    auto last = read_from(after_seq + 1, 0, out.records, limit);
    if (!last) return last.failure();
    if (out.records.size() > limit) out.records.resize(limit);
    out.last_seq = *last ? *last : after_seq;
    return out;
  }
  natsMsg* lm = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus st = js_GetLastMsg(&lm, js_, kStream, subj.c_str(), nullptr, &jerr);
  if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return out;
  if (st != NATS_OK) return make_error("prediction log: " + nats_text(st), errc::retryable);
  const uint64_t last_seq = natsMsg_GetSequence(lm);
  natsMsg_Destroy(lm);
  // Backwards in growing windows of sequences (the stream interleaves models) until the window
  // holds `limit` records or reaches the stream's start.
  for (uint64_t window = 64;; window *= 4) {
    const uint64_t from = last_seq > window ? last_seq - window : 1;
    std::vector<std::string> recs;
    auto last = read_from(from, last_seq, recs, SIZE_MAX);
    if (!last) return last.failure();
    if (recs.size() >= limit || from == 1 || window >= (1u << 16)) {
      if (recs.size() > limit) recs.erase(recs.begin(), recs.end() - static_cast<long>(limit));
      out.records = std::move(recs);
      out.last_seq = last_seq;
      return out;
    }
  }
}

}  // namespace tessera
