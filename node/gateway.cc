#include "gateway.h"

#include <capnp/ez-rpc.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/timer.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "actors/features/features_rpc.h"
#include "actors/features/messages.h"
#include "actors/monitoring/monitoring_rpc.h"
#include "actors/monitoring/quality_service.h"
#include "actors/training/training_rpc.h"
#include "cluster/cluster_view.h"
#include "rpc_edge.h"
#include "schemas/gateway.capnp.h"

namespace tessera {

struct gateway::stop_signal {
  std::mutex mu;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller;
  bool stop_requested = false;
};

namespace {

// The root interface (schemas/gateway.capnp): hands out the families' capabilities and
// delegates its own methods @0-@11 (kept for older clients) to them; assembles the node status
// from the families' parts and the cluster's.
class gateway_impl final : public wire::Gateway::Server {
 public:
  gateway_impl(std::shared_ptr<const features_context> ctx, caf::actor sup,
               const gateway_options& opts)
      : ctx_(ctx), nats_url_(opts.nats_url), started_(std::chrono::steady_clock::now()) {
    auto f = kj::heap<features_rpc>(ctx, std::move(sup), opts.features);
    features_ = f.get();
    features_cap_ = kj::mv(f);
    auto t = kj::heap<training_rpc>(opts.training);
    training_ = t.get();
    training_cap_ = kj::mv(t);
    auto i = kj::heap<inference_rpc>(opts.inference);
    inference_ = i.get();
    inference_cap_ = kj::mv(i);
    quality_ = opts.quality;
    monitoring_cap_ = kj::heap<monitoring_rpc>(opts.quality);
  }

  // The server's timer, set right after the server is built (before any call).
  void set_timer(kj::Timer& t) { features_->set_timer(t); }

  kj::Promise<void> features(FeaturesContext call) override {
    call.getResults().setFeatures(features_cap_);
    return kj::READY_NOW;
  }
  kj::Promise<void> training(TrainingContext call) override {
    call.getResults().setTraining(training_cap_);
    return kj::READY_NOW;
  }
  kj::Promise<void> inference(InferenceContext call) override {
    call.getResults().setInference(inference_cap_);
    return kj::READY_NOW;
  }
  kj::Promise<void> monitoring(MonitoringContext call) override {
    call.getResults().setMonitoring(monitoring_cap_);
    return kj::READY_NOW;
  }

  kj::Promise<void> ingest(IngestContext call) override { return features_->ingest_call(call); }
  kj::Promise<void> getFeatures(GetFeaturesContext call) override {
    return features_->get_features_call(call);
  }
  kj::Promise<void> datasetShard(DatasetShardContext call) override {
    return training_->dataset_shard(call);
  }
  kj::Promise<void> train(TrainContext call) override { return training_->train_call(call); }
  kj::Promise<void> job(JobContext call) override { return training_->job_call(call); }
  kj::Promise<void> listModels(ListModelsContext call) override {
    return training_->list_models_json(call);
  }
  kj::Promise<void> showModel(ShowModelContext call) override {
    return training_->show_model_json(call);
  }
  kj::Promise<void> promoteModel(PromoteModelContext call) override {
    return training_->promote(call);
  }
  kj::Promise<void> rollbackModel(RollbackModelContext call) override {
    return training_->rollback(call);
  }
  kj::Promise<void> importModel(ImportModelContext call) override {
    return training_->import_call(call);
  }
  kj::Promise<void> exportModel(ExportModelContext call) override {
    return training_->export_call(call);
  }

  kj::Promise<void> status(StatusContext call) override {
    auto st = call.getResults().initStatus();
    st.setNodeId(ctx_->node_id);
    st.setNatsUrl(nats_url_);
    st.setShardCount(ctx_->opts.shard_count);
    return features_->fill_status(st).then([this, st]() mutable {
      training_->fill_status(st);
      inference_->fill_status(st);
      if (quality_service* q = quality_ ? quality_->load() : nullptr) q->fill_status(st);
      st.setUptimeSeconds(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
      if (ctx_->cluster) fill_cluster(st, *ctx_->cluster);
    });
  }

 private:
  static void fill_cluster(wire::NodeStatus::Builder st, const cluster_view& cluster) {
    auto members = cluster.members();
    auto ml = st.initMembers(static_cast<unsigned>(members.size()));
    for (size_t i = 0; i < members.size(); ++i) {
      auto m = ml[static_cast<unsigned>(i)];
      m.setNodeId(members[i].id);
      m.setRpc(members[i].rpc);
      m.setAlive(members[i].alive);
      m.setLeaving(members[i].leaving);
      m.setShardsServed(members[i].shards_served);
      m.setSilentSeconds(members[i].silent_s);
      m.setEventsApplied(members[i].events_applied);
      m.setEventWire(members[i].event_wire);
    }
    st.setLeader(cluster.leader());
    st.setMapEpoch(cluster.epoch());
    auto owners = cluster.owners();
    auto ol = st.initShardOwners(static_cast<unsigned>(owners.size()));
    for (size_t i = 0; i < owners.size(); ++i) ol.set(static_cast<unsigned>(i), owners[i]);
    auto& cm = cluster.metrics;
    st.setSnapshotsWritten(cm.snapshots_written.load());
    st.setSnapshotsRestored(cm.snapshots_restored.load());
    st.setSnapshotsRefused(cm.snapshots_refused.load());
    st.setShardsAcquired(cm.shards_acquired.load());
    st.setShardsReleased(cm.shards_released.load());
    st.setMapConflicts(cm.map_conflicts.load());
    st.setSnapshotsUnchanged(cm.snapshots_unchanged.load());
  }

  std::shared_ptr<const features_context> ctx_;
  std::string nats_url_;
  std::chrono::steady_clock::time_point started_;
  features_rpc* features_;    // owned by features_cap_
  training_rpc* training_;    // owned by training_cap_
  inference_rpc* inference_;  // owned by inference_cap_
  const std::atomic<quality_service*>* quality_ = nullptr;
  wire::Features::Client features_cap_ = nullptr;
  wire::Training::Client training_cap_ = nullptr;
  wire::Inference::Client inference_cap_ = nullptr;
  wire::Monitoring::Client monitoring_cap_ = nullptr;
};

}  // namespace

result<std::unique_ptr<gateway>> gateway::start(const gateway_options& o,
                                                std::shared_ptr<const features_context> ctx,
                                                caf::actor supervisor) {
  std::unique_ptr<gateway> g(new gateway());
  g->stop_ = std::make_shared<stop_signal>();
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  g->thread_ = std::thread([&, gp = g.get()] {
    try {
      capnp::ReaderOptions ro;
      ro.traversalLimitInWords = 64 * 1024 * 1024;  // 512 MiB per message at most
      ro.nestingLimit = 32;
      auto impl = kj::heap<gateway_impl>(ctx, supervisor, o);
      gateway_impl* raw = impl.get();
      capnp::EzRpcServer server(kj::mv(impl), o.listen, 7400, ro);
      raw->set_timer(server.getIoProvider().getTimer());
      auto& ws = server.getWaitScope();
      gp->port_ = static_cast<int>(server.getPort().wait(ws));
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard<std::mutex> l(gp->stop_->mu);
        gp->stop_->fulfiller = kj::mv(paf.fulfiller);
      }
      {
        std::lock_guard<std::mutex> l(mu);
        ready = true;
        gp->started_ = true;
      }
      cv.notify_all();
      paf.promise.wait(ws);
    } catch (const kj::Exception& e) {
      std::lock_guard<std::mutex> l(mu);
      gp->start_error_ = e.getDescription().cStr();
      ready = true;
      cv.notify_all();
    }
  });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return ready; });
  if (!g->started_) {
    l.unlock();
    g->thread_.join();
    return make_error("cannot serve RPC on " + o.listen + ": " + g->start_error_);
  }
  return g;
}

gateway::~gateway() {
  {
    std::lock_guard<std::mutex> l(stop_->mu);
    if (stop_->fulfiller) stop_->fulfiller->fulfill();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace tessera
