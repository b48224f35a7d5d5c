// The monitoring family's RPC capability (schemas/monitoring.capnp): the cluster's alerts.
// Owner and thread: made by the gateway on its kj event-loop thread (node/gateway.h); the alert
// store's calls block on JetStream, so they run on this capability's worker thread and answer
// through cross-thread fulfillers. Until the node runs its monitoring (no quality service, or no
// model declared with `monitor`) calls fail retryable / not_found.
#pragma once
#include <kj/async.h>

#include <atomic>
#include <memory>

#include "schemas/monitoring.capnp.h"
#include "worker_pool.h"

namespace tessera {

class alert_store;
class quality_service;

class monitoring_rpc final : public wire::Monitoring::Server {
 public:
  explicit monitoring_rpc(const std::atomic<quality_service*>* service);
  ~monitoring_rpc();

  kj::Promise<void> alerts(AlertsContext call) override;
  kj::Promise<void> log(LogContext call) override;
  kj::Promise<void> acknowledge(AcknowledgeContext call) override;
  kj::Promise<void> silence(SilenceContext call) override;

 private:
  std::shared_ptr<alert_store> store() const;  // throws the RPC error when there is none
  template <typename T, typename Fn>
  kj::Promise<T> off_thread(Fn fn);
  const std::atomic<quality_service*>* service_;
  worker_pool workers_{{1, worker_pool::at_stop::drop}};
};

}  // namespace tessera
