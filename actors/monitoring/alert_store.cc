#include "alert_store.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "bus.h"
#include "cluster/kv.h"
#include "cluster/nats_text.h"

namespace tessera {

using monitoring::alert;

namespace {

constexpr int kCasAttempts = 20;
constexpr int64_t kHourUs = 3600LL * 1000000;

}  // namespace

result<std::unique_ptr<alert_store>> alert_store::open(__jsCtx* js, const options& o) {
  std::unique_ptr<alert_store> s(new alert_store());
  s->js_ = js;
  kv_bucket::options ko;
  ko.name = kBucket;
  ko.replicas = o.replicas;
  auto kv = kv_bucket::open(js, ko);
  if (!kv) return kv.failure();
  s->kv_ = std::move(kv.value());
  jetstream_spec spec;
  spec.name = kLog;
  spec.subject = "tsr.alert.>";
  spec.max_age_us = 30 * 24 * kHourUs;
  spec.duplicate_window_us = kHourUs;
  spec.allow_direct = true;
  spec.replicas = o.replicas;
  if (auto st = ensure_jetstream(js, spec); !st) return st.failure();
  return s;
}

alert_store::~alert_store() = default;

result<alert> alert_store::observe(const monitoring::alert_spec& spec, bool condition,
                                   int64_t now_us, const std::string& summary,
                                   const nlohmann::json& details) {
  if (!monitoring::valid_alert_key(spec.key))
    return make_error("invalid alert key '" + spec.key + "'", errc::invalid);
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    auto e = kv_->get(spec.key);
    if (!e) return e.failure();
    alert a;
    uint64_t rev = 0;
    if (e->has_value()) {
      auto parsed = alert::from_json(nlohmann::json::parse((*e)->value, nullptr, false));
      if (!parsed) return make_error("alert " + spec.key + ": " + parsed.error_message());
      a = std::move(parsed.value());
      rev = (*e)->revision;
    } else if (!condition) {
      return a;  // nothing recorded, nothing holds
    }
    a.spec = spec;
    const std::string said = a.summary;
    const bool moved = monitoring::observe(a, condition, now_us, summary, details);
    // A pending or firing alert's summary and details follow the evidence (e.g. which inputs
    // drift now, not only those of the window that raised it), rewritten at most every
    // kSummaryRefreshUs; the log keeps transitions only.
    const bool refresh =
        !moved && condition && summary != said && now_us - a.updated_us >= kSummaryRefreshUs;
    if (refresh) a.updated_us = now_us;
    if (moved || refresh) {
      auto w = rev ? kv_->update(spec.key, a.to_json().dump(), rev)
                   : kv_->create(spec.key, a.to_json().dump());
      if (w.conflict) continue;  // another node moved it: observe what it recorded
      if (!w.ok) return make_error("cannot record alert " + spec.key + ": " + w.error);
      rev = w.revision;
    }
    publish_due(a, rev, now_us);
    return a;
  }
  return make_error("alert " + spec.key + " kept changing under concurrent writers",
                    errc::retryable);
}

void alert_store::publish_due(alert a, uint64_t rev, int64_t now_us) {
  const std::string due = monitoring::notification_due(a);
  if (due.empty() || rev == 0) return;
  if (monitoring::notifies(a, now_us)) {
    nlohmann::json j = a.to_json();
    j["transition"] = due;
    const std::string data = j.dump();
    const std::string subject = "tsr.alert." + a.spec.severity + "." + a.spec.name;
    const std::string id = a.spec.key + ":" + due;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id.c_str();
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_Publish(&pa, js_, subject.c_str(), data.data(),
                                    static_cast<int>(data.size()), &po, &jerr);
    if (pa) jsPubAck_Destroy(pa);
    if (s != NATS_OK) {
      spdlog::warn("alert {}: cannot publish {} ({}); the next observation retries", a.spec.key,
                   due, nats_text(s));
      return;
    }
    spdlog::warn("alert {} {}: {}", a.spec.key, due, a.summary);
  }
  a.notified = due;
  // A conflict means another node changed the record since: it will see what is due itself.
  (void)kv_->update(a.spec.key, a.to_json().dump(), rev);
}

template <typename Fn>
status alert_store::change(const std::string& key, Fn&& fn) {
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    auto e = kv_->get(key);
    if (!e) return e.failure();
    if (!e->has_value()) return make_error("no alert '" + key + "'", errc::not_found);
    auto a = alert::from_json(nlohmann::json::parse((*e)->value, nullptr, false));
    if (!a) return make_error("alert " + key + ": " + a.error_message());
    if (auto st = fn(*a); !st) return st;
    auto w = kv_->update(key, a->to_json().dump(), (*e)->revision);
    if (w.ok) return ok_status();
    if (!w.conflict) return make_error("cannot change alert " + key + ": " + w.error);
  }
  return make_error("alert " + key + " kept changing under concurrent writers", errc::retryable);
}

status alert_store::acknowledge(const std::string& key, const std::string& by, int64_t now_us) {
  return change(key, [&](alert& a) -> status {
    if (a.state != monitoring::alert_state::firing)
      return make_error("alert " + key + " is " + monitoring::state_name(a.state) +
                            ": only a firing alert is acknowledged",
                        errc::invalid);
    a.acked_by = by;
    a.acked_us = now_us;
    return ok_status();
  });
}

status alert_store::silence(const std::string& key, const std::string& by, int64_t until_us) {
  return change(key, [&](alert& a) -> status {
    a.silenced_by = until_us ? by : std::string();
    a.silenced_until_us = until_us;
    return ok_status();
  });
}

result<std::vector<alert>> alert_store::list(bool include_inactive) const {
  auto keys = kv_->keys();
  if (!keys) return keys.failure();
  std::vector<alert> out;
  for (auto& k : *keys) {
    auto e = kv_->get(k);
    if (!e) return e.failure();
    if (!e->has_value()) continue;
    auto a = alert::from_json(nlohmann::json::parse((*e)->value, nullptr, false));
    if (!a) continue;  // not ours to list
    if (!include_inactive && a->state == monitoring::alert_state::inactive) continue;
    out.push_back(std::move(a.value()));
  }
  std::sort(out.begin(), out.end(),
            [](const alert& x, const alert& y) { return x.updated_us > y.updated_us; });
  return out;
}

result<std::pair<std::vector<nlohmann::json>, uint64_t>> alert_store::log(uint64_t after,
                                                                          size_t limit) const {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, kLog, nullptr, &jerr);
  if (s != NATS_OK) return make_error("cannot read the alert log: " + nats_text(s));
  const uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  std::vector<nlohmann::json> out;
  uint64_t seq = std::max(after + 1, first);
  for (; seq <= last && out.size() < limit; ++seq) {
    natsMsg* m = nullptr;
    s = js_GetMsg(&m, js_, kLog, seq, nullptr, &jerr);
    if (s == NATS_NOT_FOUND) continue;
    if (s != NATS_OK) return make_error("cannot read the alert log: " + nats_text(s));
    auto j = nlohmann::json::parse(
        std::string(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m))), nullptr,
        false);
    if (j.is_object()) {
      j["seq"] = seq;
      j["subject"] = natsMsg_GetSubject(m);
      out.push_back(std::move(j));
    }
    natsMsg_Destroy(m);
  }
  return std::make_pair(std::move(out), seq - 1);
}

}  // namespace tessera
