// Core NATS request/reply between nodes, on the bus's connection (bus.h forwards to it).
//
// Requests: one wildcard reply subscription (<inbox prefix>.rpc.*) for every request of the
// process; an answer is matched to its request by the token ending its reply subject. Each
// request's callback runs exactly once: with the answer, with "no node is listening" (the server's
// 503 status), with "timed out" (a sweeper thread fails requests past their deadline, checking
// every 20 ms), or with the send error. An answer after that is dropped.
// Serving: a subscription per subject; its callback runs on a libnats thread and answers later
// with respond().
//
// Lifecycle: owned by the bus. open() after the connection; stop() before the connection closes
// (joins the sweeper, unsubscribes, forgets pending requests without calling them: their
// callers are gone by then); destroyed after the connection closed and before it is destroyed
// (libnats may touch a subscription until then).
// Threads: callbacks run on libnats threads, timeouts on the sweeper; every method is
// thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "tessera/result.h"

struct __natsConnection;
struct __natsSubscription;
struct __natsMsg;

namespace tessera {

class request_mux {
 public:
  using reply_fn = std::function<void(result<std::string>)>;
  using serve_fn = std::function<void(std::string data, std::string reply_subject)>;

  // Subscribes to `<inbox_prefix>.rpc.*` on `nc` (borrowed: it must outlive the mux) and starts
  // the sweeper.
  static result<std::unique_ptr<request_mux>> open(__natsConnection* nc,
                                                   const std::string& inbox_prefix);
  ~request_mux();

  // Sends `data` on `subject`; `reply` runs once (see above).
  void request(const std::string& subject, const std::string& data, int64_t timeout_ms,
               reply_fn reply);
  // Serves requests on `subject`: `fn(data, reply_subject)` runs on a libnats thread and must
  // not block. Messages without a reply subject are ignored.
  status serve(const std::string& subject, serve_fn fn);
  void respond(const std::string& reply_subject, const std::string& data);
  void stop();

 private:
  explicit request_mux(__natsConnection* nc) : nc_(nc) {}
  static void on_reply(__natsConnection*, __natsSubscription*, __natsMsg* msg, void* closure);
  static void on_serve(__natsConnection*, __natsSubscription*, __natsMsg* msg, void* closure);
  void sweep_loop();

  // Constant after open().
  __natsConnection* const nc_;
  std::string inbox_prefix_;
  __natsSubscription* reply_sub_ = nullptr;

  struct pending_request {
    reply_fn fn;
    std::chrono::steady_clock::time_point deadline;
  };
  std::mutex req_mu_;  // protects requests_
  std::unordered_map<uint64_t, pending_request> requests_;
  std::atomic<uint64_t> next_request_{1};

  std::mutex served_mu_;  // protects served_
  std::vector<std::pair<__natsSubscription*, serve_fn*>> served_;

  std::atomic<bool> stopping_{false};
  std::thread sweeper_;
};

}  // namespace tessera
