// The alert webhook: every transition on the alert log (alert_store.h, TSR_ALERT_LOG) POSTed as
// JSON to a URL (http://host:port/path), retried with back-off until the receiver answers 2xx.
//
// How: one durable push consumer of the cluster ("tsr_alert_webhook", from the transitions
// published after it was first created on), read by every node that has a webhook through a
// queue group, so that each transition is delivered to one node at a time. A transition is
// acknowledged once POSTed with a 2xx answer; otherwise it is negatively acknowledged with a delay
// of 1 s, 2 s, 4 s ... up to 5 min, and JetStream redelivers it (to any node) up to 30 times,
// then gives up (counted: failed). A node SIGKILLed mid-POST leaves the transition unacknowledged:
// it is redelivered after the ack wait (a receiver may see it twice then; the body's "key" and
// "transition" identify it).
// Lifecycle: start() subscribes and starts the thread; stop() joins it.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "tessera/result.h"

struct __jsCtx;
struct __natsSubscription;

namespace tessera {

// One HTTP/1.1 POST of `body` (application/json) to an http:// URL with a timeout; the status
// code, or an error (unreachable, timed out, not HTTP).
result<int> http_post(const std::string& url, const std::string& body, int timeout_ms);

class alert_webhook {
 public:
  static result<std::unique_ptr<alert_webhook>> start(__jsCtx* js, const std::string& url);
  ~alert_webhook();
  void stop();
  struct figures {
    uint64_t delivered = 0;  // POSTed with a 2xx answer
    uint64_t retried = 0;    // failed attempts (negatively acknowledged for a later retry)
    uint64_t failed = 0;     // given up after the last attempt
  };
  figures counts() const;

 private:
  alert_webhook() = default;
  void run();
  std::string url_;
  __natsSubscription* sub_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> delivered_{0}, retried_{0}, failed_{0};
};

}  // namespace tessera
