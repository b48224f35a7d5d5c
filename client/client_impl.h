// Private to client/: the connection's event-loop side (connection::impl) and the conversions
// every call uses, shared by client.cc (lifecycle, features, training) and client_inference.cc.
#pragma once
#include "tessera/client.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/timer.h>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include "tessera/wire_error.h"

namespace tessera::client {

namespace detail {

// The open TCP connection and the capabilities asked of it (on the loop thread only).
struct session {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  wire::Gateway::Client gateway = nullptr;
  wire::Features::Client features = nullptr;
  wire::Training::Client training = nullptr;
  wire::Inference::Client inference = nullptr;
  wire::Monitoring::Client monitoring = nullptr;
};

inline error error_of(const kj::Exception& e, const std::string& address) {
  const auto t = e.getType();
  error r = parse_wire_error(e.getDescription().cStr(), t == kj::Exception::Type::OVERLOADED,
                             t == kj::Exception::Type::DISCONNECTED);
  if (r.code == errc::unavailable) r.message = "no answer from " + address + ": " + r.message;
  return r;
}

inline void write_value(wire::Value::Builder b, const value& v) {
  switch (v.index()) {
    case 0:
      b.setNull();
      break;
    case 1:
      b.setInt(std::get<int64_t>(v));
      break;
    case 2:
      b.setFloat(std::get<double>(v));
      break;
    case 3:
      b.setText(std::get<std::string>(v));
      break;
    case 4:
      b.setBool(std::get<bool>(v));
      break;
    case 5:
      b.setTimestamp(std::get<timestamp>(v).micros);
      break;
    case 6: {
      auto& l = std::get<std::vector<std::string>>(v);
      auto out = b.initTextList(static_cast<unsigned>(l.size()));
      for (size_t i = 0; i < l.size(); ++i) out.set(static_cast<unsigned>(i), l[i]);
      break;
    }
  }
}

inline value read_value(wire::Value::Reader r) {
  switch (r.which()) {
    case wire::Value::NULL_:
      return std::monostate{};
    case wire::Value::INT:
      return r.getInt();
    case wire::Value::FLOAT:
      return r.getFloat();
    case wire::Value::TEXT:
      return std::string(r.getText().cStr(), r.getText().size());
    case wire::Value::BOOL:
      return r.getBool();
    case wire::Value::TIMESTAMP:
      return timestamp{r.getTimestamp()};
    case wire::Value::TEXT_LIST: {
      std::vector<std::string> l;
      for (auto t : r.getTextList()) l.emplace_back(t.cStr(), t.size());
      return l;
    }
  }
  return std::monostate{};
}

// An event's or an example's fields, by name.
inline void write_fields(capnp::List<wire::Field>::Builder out,
                         const std::vector<std::pair<std::string, value>>& fields) {
  for (size_t f = 0; f < fields.size(); ++f) {
    out[static_cast<unsigned>(f)].setName(fields[f].first);
    write_value(out[static_cast<unsigned>(f)].initValue(), fields[f].second);
  }
}

inline vector_status read_status(wire::Status s) {
  switch (s) {
    case wire::Status::FRESH:
      return vector_status::fresh;
    case wire::Status::STALE:
      return vector_status::stale;
    default:
      return vector_status::missing;
  }
}

inline feature_vector read_vector(wire::FeatureVector::Reader r) {
  feature_vector v;
  v.view = r.getView();
  v.version = r.getVersion();
  v.entity = r.getEntity();
  v.as_of = r.getAsOf();
  v.event_time = r.getEventTime();
  v.status = read_status(r.getStatus());
  for (auto f : r.getValues())
    v.values.push_back({f.getName(), read_value(f.getValue()), f.getEventTime()});
  return v;
}

template <typename T>
owned<T> copy_out(typename T::Reader r) {
  auto m = std::make_shared<capnp::MallocMessageBuilder>();
  m->setRoot(r);
  typename T::Reader copy = m->getRoot<T>().asReader();
  return owned<T>(std::move(m), copy);
}

// Waits for a call's outcome. Answers on loopback take about 0.1 ms: the caller yields the CPU
// for up to 0.3 ms before it sleeps, so that a quick answer finds it awake (a sleeping thread's
// wake-up costs tens of microseconds on a busy machine).
template <typename T>
result<T> wait(std::future<result<T>> f) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(300);
  while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  return f.get();
}

}  // namespace detail
using namespace detail;

// The loop thread and what lives on it. Calls reach it through the inbox (any thread); every
// field below `io` is touched on the loop thread only.
struct connection::impl {
  options opts;
  std::thread thread;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;

  // Calls handed over by other threads. A caller appends and, if the loop sleeps on `wake`,
  // fulfils it; it does not wait for the loop to take the call (one thread wake-up per call,
  // not the two of kj::Executor::executeSync).
  std::mutex inbox_mu;
  std::vector<std::function<void()>> inbox;             // guarded by inbox_mu
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;  // guarded by inbox_mu
  bool closed = false;                                  // guarded by inbox_mu

  bool post(std::function<void()> job) {
    std::lock_guard<std::mutex> l(inbox_mu);
    if (closed) return false;
    inbox.push_back(std::move(job));
    if (wake) {
      wake->fulfill();
      wake = nullptr;
    }
    return true;
  }
  // On the loop: runs what was posted, then sleeps until more is.
  kj::Promise<void> serve_inbox() {
    std::vector<std::function<void()>> jobs;
    kj::Maybe<kj::Promise<void>> sleep;
    {
      std::lock_guard<std::mutex> l(inbox_mu);
      jobs.swap(inbox);
      if (jobs.empty()) {
        auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
        wake = kj::mv(paf.fulfiller);
        sleep = kj::mv(paf.promise);
      }
    }
    for (auto& j : jobs) j();
    KJ_IF_MAYBE (p, sleep) {
      return p->then([this] { return serve_inbox(); });
    }
    return kj::evalLater([this] { return serve_inbox(); });
  }

  kj::AsyncIoProvider* io = nullptr;
  kj::Timer* timer = nullptr;
  kj::Own<session> live;
  kj::Maybe<kj::ForkedPromise<void>> connecting;
  kj::Own<kj::TaskSet> tasks;
  struct error_handler final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}  // each task reports through its own promise
  } on_task_error;

  // The session, opening it first when there is none.
  kj::Promise<session*> ensure_session() {
    if (live) return live.get();
    KJ_IF_MAYBE (c, connecting) {
      return c->addBranch().then([this]() -> kj::Promise<session*> { return ensure_session(); });
    }
    auto p = io->getNetwork()
                 .parseAddress(opts.address, 7400)
                 .then([](kj::Own<kj::NetworkAddress> a) { return a->connect(); })
                 .then([this](kj::Own<kj::AsyncIoStream> stream) {
                   auto s = kj::heap<session>();
                   s->stream = kj::mv(stream);
                   capnp::ReaderOptions ro;
                   ro.traversalLimitInWords = opts.max_message_words;
                   s->network = kj::heap<capnp::TwoPartyVatNetwork>(
                       *s->stream, capnp::rpc::twoparty::Side::CLIENT, ro);
                   s->rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
                       capnp::makeRpcClient(*s->network));
                   capnp::word scratch[4];
                   memset(scratch, 0, sizeof scratch);
                   capnp::MallocMessageBuilder vat(scratch);
                   auto host = vat.getRoot<capnp::rpc::twoparty::VatId>();
                   host.setSide(capnp::rpc::twoparty::Side::SERVER);
                   s->gateway = s->rpc->bootstrap(host).castAs<wire::Gateway>();
                   // Pipelined: the first call on a capability needs no extra round trip.
                   s->features = s->gateway.featuresRequest().send().getFeatures();
                   s->training = s->gateway.trainingRequest().send().getTraining();
                   s->inference = s->gateway.inferenceRequest().send().getInference();
                   s->monitoring = s->gateway.monitoringRequest().send().getMonitoring();
                   live = kj::mv(s);
                 })
                 .eagerlyEvaluate(nullptr)
                 .fork();
    auto branch = p.addBranch();
    connecting = kj::mv(p);
    return branch.then(
        [this]() -> kj::Promise<session*> {
          connecting = nullptr;
          return ensure_session();
        },
        [this](kj::Exception&& e) -> kj::Promise<session*> {
          connecting = nullptr;
          return kj::mv(e);
        });
  }

  // Forgets a broken session (only if it is still the current one: calls failing late on an
  // old session must not drop a new one). It is destroyed on a later turn of the loop, not
  // inside a continuation of its own RPC system.
  void drop(session* broken) {
    if (!broken || live.get() != broken) return;
    tasks->add(kj::evalLater([old = kj::mv(live)]() mutable { old = nullptr; }));
  }

  // One call with its retries. `attempt` runs on the loop thread and turns the answer into T
  // there (so no Cap'n Proto reader crosses threads).
  template <typename T>
  kj::Promise<result<T>> attempt_loop(std::function<kj::Promise<T>(session&)> attempt,
                                      bool idempotent, int n, std::chrono::milliseconds backoff) {
    auto used = std::make_shared<session*>(nullptr);
    auto one = ensure_session()
                   .then([attempt, used](session* s) {
                     *used = s;
                     return attempt(*s);
                   })
                   .then([](T v) { return result<T>(std::move(v)); },
                         [this, used](kj::Exception&& e) {
                           if (e.getType() == kj::Exception::Type::DISCONNECTED) drop(*used);
                           return result<T>(error_of(e, opts.address));
                         });
    auto timeout = opts.timeout;
    auto bounded =
        one.exclusiveJoin(timer->afterDelay(timeout.count() * kj::MILLISECONDS).then([timeout] {
          return result<T>(make_error(
              "no answer within " + std::to_string(timeout.count()) + " ms (the call's timeout)",
              errc::deadline));
        }));
    return bounded.then(
        [this, attempt, idempotent, n, backoff](result<T> r) mutable -> kj::Promise<result<T>> {
          const bool repeat = !r && (r.error_code() == errc::overloaded ||
                                     (idempotent && (r.error_code() == errc::retryable ||
                                                     r.error_code() == errc::unavailable)));
          if (!repeat || n + 1 >= opts.retry.attempts) return kj::mv(r);
          auto next = std::min(backoff * 2, opts.retry.max_backoff);
          return timer->afterDelay(backoff.count() * kj::MILLISECONDS)
              .then([this, attempt = std::move(attempt), idempotent, n, next]() mutable {
                return attempt_loop<T>(std::move(attempt), idempotent, n + 1, next);
              });
        });
  }

  // Starts a call from any thread; the future holds its outcome.
  template <typename T>
  std::future<result<T>> start(std::function<kj::Promise<T>(session&)> attempt, bool idempotent) {
    auto done = std::make_shared<std::promise<result<T>>>();
    auto fut = done->get_future();
    // Answers once: with the outcome, or when the loop is torn down first.
    struct answer {
      std::shared_ptr<std::promise<result<T>>> p;
      bool set = false;
      void operator()(result<T> r) {
        if (set) return;
        set = true;
        p->set_value(std::move(r));
      }
      ~answer() {
        if (!set) p->set_value(make_error("the connection was closed", errc::internal));
      }
    };
    auto a = std::make_shared<answer>();
    a->p = done;
    const bool posted = post([this, attempt = std::move(attempt), idempotent, a]() mutable {
      tasks->add(attempt_loop<T>(std::move(attempt), idempotent, 0, opts.retry.first_backoff)
                     .then([a](result<T> r) { (*a)(std::move(r)); }));
    });
    if (!posted) (*a)(make_error("the connection is closed", errc::internal));
    return fut;
  }
};

}  // namespace tessera::client
