#include "monitoring_rpc.h"

#include "alert_store.h"
#include "quality_service.h"
#include "rpc_edge.h"
#include "time_util.h"

namespace tessera {

monitoring_rpc::monitoring_rpc(const std::atomic<quality_service*>* service) : service_(service) {}

monitoring_rpc::~monitoring_rpc() {
  workers_.stop();
}

std::shared_ptr<alert_store> monitoring_rpc::store() const {
  quality_service* q = service_ ? service_->load() : nullptr;
  if (!q) throw_rpc_error("monitoring is not running on this node yet; retry", errc::retryable);
  auto s = q->alerts();
  if (!s)
    throw_rpc_error(
        "no model is monitored (declare one with monitor = { ... }): there are no alerts",
        errc::not_found);
  return s;
}

template <typename T, typename Fn>
kj::Promise<T> monitoring_rpc::off_thread(Fn fn) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
  auto f = std::make_shared<xthread<T>>();
  f->f = kj::mv(paf.fulfiller);
  if (!workers_.submit([f, fn = std::move(fn)]() mutable { f->f->fulfill(fn()); }))
    throw_rpc_error("the node is stopping", errc::unavailable);
  return kj::mv(paf.promise);
}

kj::Promise<void> monitoring_rpc::alerts(AlertsContext call) {
  return off_thread<result<std::string>>([s = store()]() -> result<std::string> {
           auto all = s->list(false);
           if (!all) return all.failure();
           nlohmann::json out = nlohmann::json::array();
           for (auto& a : *all) out.push_back(a.to_json());
           return out.dump();
         })
      .then([call](result<std::string> r) mutable {
        call.getResults().setJson(value_or_throw(std::move(r)));
      });
}

kj::Promise<void> monitoring_rpc::log(LogContext call) {
  const uint64_t after = call.getParams().getAfter();
  const uint32_t limit = call.getParams().getLimit();
  using page = std::pair<std::string, uint64_t>;
  return off_thread<result<page>>([s = store(), after, limit]() -> result<page> {
           auto l = s->log(after, limit ? std::min<uint32_t>(limit, 10000) : 1000);
           if (!l) return l.failure();
           return page{nlohmann::json(l->first).dump(), l->second};
         })
      .then([call](result<page> r) mutable {
        auto p = value_or_throw(std::move(r));
        call.getResults().setJson(p.first);
        call.getResults().setLast(p.second);
      });
}

kj::Promise<void> monitoring_rpc::acknowledge(AcknowledgeContext call) {
  std::string key = call.getParams().getKey(), by = call.getParams().getBy();
  return off_thread<status>([s = store(), key, by] {
           return s->acknowledge(key, by.empty() ? "someone" : by, now_micros());
         })
      .then([](status st) { value_or_throw(std::move(st)); });
}

kj::Promise<void> monitoring_rpc::silence(SilenceContext call) {
  std::string key = call.getParams().getKey(), by = call.getParams().getBy();
  const uint32_t seconds = call.getParams().getSeconds();
  return off_thread<status>([s = store(), key, by, seconds] {
           const int64_t until = seconds ? now_micros() + int64_t{seconds} * kMicrosPerSecond : 0;
           return s->silence(key, by.empty() ? "someone" : by, until);
         })
      .then([](status st) { value_or_throw(std::move(st)); });
}

}  // namespace tessera
