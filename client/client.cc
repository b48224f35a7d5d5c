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

namespace {

// The open TCP connection and the capabilities asked of it (on the loop thread only).
struct session {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  wire::Gateway::Client gateway = nullptr;
  wire::Features::Client features = nullptr;
  wire::Training::Client training = nullptr;
  wire::Inference::Client inference = nullptr;
};

error error_of(const kj::Exception& e, const std::string& address) {
  const auto t = e.getType();
  error r = parse_wire_error(e.getDescription().cStr(), t == kj::Exception::Type::OVERLOADED,
                             t == kj::Exception::Type::DISCONNECTED);
  if (r.code == errc::unavailable) r.message = "no answer from " + address + ": " + r.message;
  return r;
}

void write_value(wire::Value::Builder b, const value& v) {
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

value read_value(wire::Value::Reader r) {
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

feature_vector read_vector(wire::FeatureVector::Reader r) {
  feature_vector v;
  v.view = r.getView();
  v.version = r.getVersion();
  v.entity = r.getEntity();
  v.as_of = r.getAsOf();
  v.event_time = r.getEventTime();
  switch (r.getStatus()) {
    case wire::Status::MISSING:
      v.status = vector_status::missing;
      break;
    case wire::Status::FRESH:
      v.status = vector_status::fresh;
      break;
    case wire::Status::STALE:
      v.status = vector_status::stale;
      break;
  }
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

}  // namespace

const value* feature_vector::find(const std::string& name) const {
  for (auto& f : values)
    if (f.name == name) return &f.v;
  return nullptr;
}

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

std::unique_ptr<connection> connection::open(options o) {
  auto i = std::make_unique<impl>();
  i->opts = std::move(o);
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  impl* raw = i.get();
  i->thread = std::thread([raw, &mu, &cv, &ready] {
    auto io = kj::setupAsyncIo();
    raw->io = io.provider.get();
    raw->timer = &io.provider->getTimer();
    raw->tasks = kj::heap<kj::TaskSet>(raw->on_task_error);
    auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
    raw->stop = kj::mv(stop.fulfiller);
    raw->tasks->add(raw->serve_inbox());
    {
      std::lock_guard<std::mutex> l(mu);
      ready = true;
    }
    cv.notify_all();
    stop.promise.wait(io.waitScope);
    // Cancel what is in flight (each call answers "closed"), then close the connection.
    raw->tasks = nullptr;
    raw->connecting = nullptr;
    raw->live = nullptr;
  });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return ready; });
  return std::unique_ptr<connection>(new connection(std::move(i)));
}

connection::connection(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

connection::~connection() {
  {
    std::lock_guard<std::mutex> l(impl_->inbox_mu);
    impl_->closed = true;  // later calls answer "closed"; posted ones too (see answer)
    impl_->wake = nullptr;
  }
  impl_->stop->fulfill();
  impl_->thread.join();
}

const options& connection::settings() const {
  return impl_->opts;
}

std::future<result<ingest_result>> connection::ingest_async(const std::string& stream,
                                                            std::vector<event> events,
                                                            const std::string& batch_id) {
  auto ev = std::make_shared<std::vector<event>>(std::move(events));
  return impl_->start<ingest_result>(
      [stream, ev, batch_id](session& s) {
        auto req = s.features.ingestRequest();
        req.setStream(stream);
        req.setBatchId(batch_id);
        auto out = req.initEvents(static_cast<unsigned>(ev->size()));
        for (size_t i = 0; i < ev->size(); ++i) {
          const event& e = (*ev)[i];
          auto b = out[static_cast<unsigned>(i)];
          b.setEventTime(e.event_time);
          b.setKnownTime(e.known_time);
          auto fl = b.initFields(static_cast<unsigned>(e.fields.size()));
          for (size_t f = 0; f < e.fields.size(); ++f) {
            fl[static_cast<unsigned>(f)].setName(e.fields[f].first);
            write_value(fl[static_cast<unsigned>(f)].initValue(), e.fields[f].second);
          }
        }
        return req.send().then([](capnp::Response<wire::Features::IngestResults> r) {
          ingest_result out;
          out.accepted = r.getAccepted();
          out.duplicates = r.getDuplicates();
          out.late = r.getLate();
          for (auto j : r.getRejected())
            out.rejected.push_back({j.getIndex(), j.getField(), j.getReason()});
          return out;
        });
      },
      /*idempotent=*/!batch_id.empty());
}

result<ingest_result> connection::ingest(const std::string& stream,
                                         const std::vector<event>& events,
                                         const std::string& batch_id) {
  return wait(ingest_async(stream, events, batch_id));
}

std::future<result<std::vector<feature_vector>>> connection::features_async(
    const std::string& view, std::vector<std::string> entities, int64_t as_of) {
  auto keys = std::make_shared<std::vector<std::string>>(std::move(entities));
  return impl_->start<std::vector<feature_vector>>(
      [view, keys, as_of](session& s) {
        auto req = s.features.getFeaturesRequest();
        req.setView(view);
        req.setAsOf(as_of);
        auto l = req.initEntities(static_cast<unsigned>(keys->size()));
        for (size_t i = 0; i < keys->size(); ++i) l.set(static_cast<unsigned>(i), (*keys)[i]);
        return req.send().then([](capnp::Response<wire::Features::GetFeaturesResults> r) {
          std::vector<feature_vector> out;
          out.reserve(r.getVectors().size());
          for (auto v : r.getVectors()) out.push_back(read_vector(v));
          return out;
        });
      },
      true);
}

result<std::vector<feature_vector>> connection::features(const std::string& view,
                                                         const std::vector<std::string>& entities,
                                                         int64_t as_of) {
  return wait(features_async(view, entities, as_of));
}

result<owned<wire::NodeStatus>> connection::status() {
  return impl_
      ->start<owned<wire::NodeStatus>>(
          [](session& s) {
            return s.gateway.statusRequest().send().then(
                [](capnp::Response<wire::Gateway::StatusResults> r) {
                  return copy_out<wire::NodeStatus>(r.getStatus());
                });
          },
          true)
      .get();
}

result<owned<wire::DatasetPart>> connection::dataset_shard(const std::string& label, uint32_t shard,
                                                           int64_t from, int64_t to) {
  return wait(dataset_shard_async(label, shard, from, to));
}

std::future<result<owned<wire::DatasetPart>>> connection::dataset_shard_async(
    const std::string& label, uint32_t shard, int64_t from, int64_t to) {
  return impl_->start<owned<wire::DatasetPart>>(
      [label, shard, from, to](session& s) {
        auto req = s.training.datasetShardRequest();
        req.setLabel(label);
        req.setShard(shard);
        req.setFrom(from);
        req.setTo(to);
        return req.send().then([](capnp::Response<wire::Training::DatasetShardResults> r) {
          return copy_out<wire::DatasetPart>(r.getPart());
        });
      },
      true);
}

result<std::string> connection::train(const std::string& model) {
  return impl_
      ->start<std::string>(
          [model](session& s) {
            auto req = s.training.trainRequest();
            req.setModel(model);
            return req.send().then([](capnp::Response<wire::Training::TrainResults> r) {
              return std::string(r.getJobId().cStr(), r.getJobId().size());
            });
          },
          false)
      .get();
}

result<owned<wire::JobStatus>> connection::job(const std::string& job_id) {
  return impl_
      ->start<owned<wire::JobStatus>>(
          [job_id](session& s) {
            auto req = s.training.jobRequest();
            req.setJobId(job_id);
            return req.send().then([](capnp::Response<wire::Training::JobResults> r) {
              return copy_out<wire::JobStatus>(r.getJob());
            });
          },
          true)
      .get();
}

result<std::vector<model_summary>> connection::list_models() {
  return impl_
      ->start<std::vector<model_summary>>(
          [](session& s) {
            return s.training.listModelsRequest().send().then(
                [](capnp::Response<wire::Training::ListModelsResults> r) {
                  std::vector<model_summary> out;
                  for (auto m : r.getModels()) {
                    model_summary ms{m.getName(), m.getProduction(), {}};
                    for (auto v : m.getVersions())
                      ms.versions.push_back(
                          {v.getVersion(), v.getStage(), v.getCreated(), v.getShare()});
                    out.push_back(std::move(ms));
                  }
                  return out;
                });
          },
          true)
      .get();
}

result<owned<wire::ModelVersion>> connection::show_model(const std::string& name,
                                                         uint32_t version) {
  return impl_
      ->start<owned<wire::ModelVersion>>(
          [name, version](session& s) {
            auto req = s.training.showModelRequest();
            req.setName(name);
            req.setVersion(version);
            return req.send().then([](capnp::Response<wire::Training::ShowModelResults> r) {
              return copy_out<wire::ModelVersion>(r.getModel());
            });
          },
          true)
      .get();
}

result<std::string> connection::list_models_json() {
  return impl_
      ->start<std::string>(
          [](session& s) {
            return s.gateway.listModelsRequest().send().then(
                [](capnp::Response<wire::Gateway::ListModelsResults> r) {
                  return std::string(r.getJson().cStr(), r.getJson().size());
                });
          },
          true)
      .get();
}

result<std::string> connection::show_model_json(const std::string& name, uint32_t version) {
  return impl_
      ->start<std::string>(
          [name, version](session& s) {
            auto req = s.gateway.showModelRequest();
            req.setName(name);
            req.setVersion(version);
            return req.send().then([](capnp::Response<wire::Gateway::ShowModelResults> r) {
              return std::string(r.getJson().cStr(), r.getJson().size());
            });
          },
          true)
      .get();
}

tessera::status connection::promote_model(const std::string& name, uint32_t version,
                                          const std::string& stage, double share) {
  auto r =
      impl_
          ->start<ok_t>(
              [name, version, stage, share](session& s) {
                auto req = s.training.promoteModelRequest();
                req.setName(name);
                req.setVersion(version);
                req.setStage(stage);
                req.setShare(share);
                return req.send().then(
                    [](capnp::Response<wire::Training::PromoteModelResults>) { return ok_t{}; });
              },
              true)
          .get();
  return r;
}

result<uint32_t> connection::rollback_model(const std::string& name) {
  return impl_
      ->start<uint32_t>(
          [name](session& s) {
            auto req = s.training.rollbackModelRequest();
            req.setName(name);
            return req.send().then([](capnp::Response<wire::Training::RollbackModelResults> r) {
              return r.getVersion();
            });
          },
          false)
      .get();
}

result<uint32_t> connection::import_model(const std::string& name, const std::string& label,
                                          const std::string& torchscript) {
  return impl_
      ->start<uint32_t>(
          [name, label, torchscript](session& s) {
            auto req = s.training.importModelRequest();
            req.setName(name);
            req.setLabel(label);
            req.setArtifact(kj::arrayPtr(reinterpret_cast<const kj::byte*>(torchscript.data()),
                                         torchscript.size()));
            return req.send().then([](capnp::Response<wire::Training::ImportModelResults> r) {
              return r.getVersion();
            });
          },
          false)
      .get();
}

result<exported_model> connection::export_model(const std::string& name, uint32_t version) {
  return impl_
      ->start<exported_model>(
          [name, version](session& s) {
            auto req = s.training.exportModelRequest();
            req.setName(name);
            req.setVersion(version);
            return req.send().then([](capnp::Response<wire::Training::ExportModelResults> r) {
              auto a = r.getArtifact();
              return exported_model{std::string(reinterpret_cast<const char*>(a.begin()), a.size()),
                                    r.getVersion()};
            });
          },
          true)
      .get();
}

namespace {

void write_example(wire::Example::Builder b, const example& e) {
  b.setAsOf(e.as_of);
  b.setRequestId(e.request_id);
  auto fl = b.initFields(static_cast<unsigned>(e.fields.size()));
  for (size_t f = 0; f < e.fields.size(); ++f) {
    fl[static_cast<unsigned>(f)].setName(e.fields[f].first);
    write_value(fl[static_cast<unsigned>(f)].initValue(), e.fields[f].second);
  }
}

void write_examples(capnp::List<wire::Example>::Builder out, const std::vector<example>& ex) {
  for (size_t i = 0; i < ex.size(); ++i) write_example(out[static_cast<unsigned>(i)], ex[i]);
}

void write_options(wire::PredictOptions::Builder b, const predict_options& o) {
  b.setVersion(o.version);
  b.setDeadlineMs(static_cast<uint32_t>(o.deadline.count()));
  b.setMaxFeatureAge(o.max_feature_age_us);
  b.setReturnVector(o.return_vector);
  b.setNoBatch(o.no_batch);
}

vector_status read_status(wire::Status s) {
  switch (s) {
    case wire::Status::FRESH:
      return vector_status::fresh;
    case wire::Status::STALE:
      return vector_status::stale;
    default:
      return vector_status::missing;
  }
}

std::vector<prediction> read_predictions(capnp::List<wire::Prediction>::Reader l) {
  std::vector<prediction> out;
  out.reserve(l.size());
  for (auto p : l) {
    prediction x;
    x.score = p.getScore();
    x.version = p.getVersion();
    x.stage = p.getStage();
    x.path = p.getPath();
    x.node = p.getNode();
    x.request_id = p.getRequestId();
    x.prediction_time = p.getPredictionTime();
    x.latency_us = p.getLatencyUs();
    x.error = p.getError();
    x.code = static_cast<errc>(p.getCode());
    for (auto f : p.getFeatures())
      x.features.push_back(
          {f.getName(), f.getValue(), f.getEventTime(), f.getAge(), read_status(f.getStatus())});
    out.push_back(std::move(x));
  }
  return out;
}

}  // namespace

std::future<result<std::vector<prediction>>> connection::predict_async(
    const std::string& model, std::vector<example> examples, const predict_options& o) {
  auto ex = std::make_shared<std::vector<example>>(std::move(examples));
  return impl_->start<std::vector<prediction>>(
      [model, ex, o](session& s) {
        auto req = s.inference.predictRequest();
        req.setModel(model);
        write_options(req.initOptions(), o);
        write_examples(req.initExamples(static_cast<unsigned>(ex->size())), *ex);
        return req.send().then([](capnp::Response<wire::Inference::PredictResults> r) {
          return read_predictions(r.getPredictions());
        });
      },
      true);
}

result<std::vector<prediction>> connection::predict(const std::string& model,
                                                    const std::vector<example>& examples,
                                                    const predict_options& o) {
  return wait(predict_async(model, examples, o));
}

result<std::vector<model_predictions>> connection::predict_models(
    const std::vector<model_request>& models, const std::vector<example>& examples) {
  return wait(impl_->start<std::vector<model_predictions>>(
      [models, examples](session& s) {
        auto req = s.inference.predictModelsRequest();
        auto ml = req.initModels(static_cast<unsigned>(models.size()));
        for (size_t i = 0; i < models.size(); ++i) {
          ml[static_cast<unsigned>(i)].setModel(models[i].model);
          write_options(ml[static_cast<unsigned>(i)].initOptions(), models[i].options);
        }
        write_examples(req.initExamples(static_cast<unsigned>(examples.size())), examples);
        return req.send().then([](capnp::Response<wire::Inference::PredictModelsResults> r) {
          std::vector<model_predictions> out;
          for (auto m : r.getResults())
            out.push_back({m.getModel(), read_predictions(m.getPredictions()), m.getError(),
                           static_cast<errc>(m.getCode())});
          return out;
        });
      },
      true));
}

result<prediction_log_page> connection::tail_predictions(const std::string& model, uint32_t limit,
                                                         uint64_t after_seq) {
  return impl_
      ->start<prediction_log_page>(
          [model, limit, after_seq](session& s) {
            auto req = s.inference.tailPredictionsRequest();
            req.setModel(model);
            req.setLimit(limit);
            req.setAfterSeq(after_seq);
            return req.send().then([](capnp::Response<wire::Inference::TailPredictionsResults> r) {
              prediction_log_page page;
              for (auto t : r.getRecords()) page.records.emplace_back(t.cStr(), t.size());
              page.last_seq = r.getLastSeq();
              return page;
            });
          },
          true)
      .get();
}

result<std::string> connection::skew(const std::string& model, uint32_t sample) {
  return impl_
      ->start<std::string>(
          [model, sample](session& s) {
            auto req = s.inference.skewRequest();
            req.setModel(model);
            req.setSample(sample);
            return req.send().then([](capnp::Response<wire::Inference::SkewResults> r) {
              return std::string(r.getJson().cStr(), r.getJson().size());
            });
          },
          true)
      .get();
}

}  // namespace tessera::client
