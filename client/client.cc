// The client's lifecycle and the features and training calls; the connection's loop side is in
// client_impl.h, the inference calls in client_inference.cc.
#include "client_impl.h"

namespace tessera::client {

const value* feature_vector::find(const std::string& name) const {
  for (auto& f : values)
    if (f.name == name) return &f.v;
  return nullptr;
}

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
          write_fields(b.initFields(static_cast<unsigned>(e.fields.size())), e.fields);
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
                    for (auto a : m.getAb()) ms.ab.emplace_back(a.getVersion(), a.getShare());
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

tessera::status connection::set_ab_arms(const std::string& name,
                                        const std::vector<std::pair<uint32_t, double>>& arms) {
  return impl_
      ->start<ok_t>(
          [name, arms](session& s) {
            auto req = s.training.setArmsRequest();
            req.setName(name);
            auto l = req.initArms(static_cast<unsigned>(arms.size()));
            for (size_t i = 0; i < arms.size(); ++i) {
              l[static_cast<unsigned>(i)].setVersion(arms[i].first);
              l[static_cast<unsigned>(i)].setShare(arms[i].second);
            }
            return req.send().then(
                [](capnp::Response<wire::Training::SetArmsResults>) { return ok_t{}; });
          },
          true)
      .get();
}

result<std::string> connection::describe_model_json(const std::string& name) {
  return impl_
      ->start<std::string>(
          [name](session& s) {
            auto req = s.training.describeModelRequest();
            req.setName(name);
            return req.send().then([](capnp::Response<wire::Training::DescribeModelResults> r) {
              return std::string(r.getJson().cStr(), r.getJson().size());
            });
          },
          true)
      .get();
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

}  // namespace tessera::client
