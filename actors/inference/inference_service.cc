#include "inference_service.h"

#include <spdlog/spdlog.h>

#include "actors/training/trainer.h"
#include "bus.h"
#include "cluster/registry.h"
#include "predictor.h"
#include "worker_pool.h"

namespace tessera {

result<std::unique_ptr<inference_service>> inference_service::start(deps d, options o) {
  std::unique_ptr<inference_service> s(new inference_service());
  s->d_ = std::move(d);
  s->o_ = o;
  auto reg = model_registry::open(s->d_.nats->jetstream(), s->d_.replicas);
  if (!reg) return make_error("the model registry: " + reg.error_message());
  s->registry_ = std::move(reg.value());
  s->models_ = std::make_unique<model_table>(s->d_.defs, s->registry_.get(), o.batching);
  if (o.log) {
    o.log_options.replicas = s->d_.replicas;
    auto log = prediction_log::start(s->d_.nats->jetstream(), o.log_options);
    if (!log) return log.failure();
    s->log_ = std::move(log.value());
  }
  s->workers_ = std::make_unique<worker_pool>(worker_pool::options{2, worker_pool::at_stop::drain});
  predictor::deps pd;
  pd.defs = s->d_.defs;
  pd.cluster = s->d_.cluster;
  pd.clocks = s->d_.clocks;
  pd.features = s->d_.features;
  pd.log = s->log_.get();
  pd.nats = s->d_.nats;
  pd.models = s->models_.get();
  pd.loader = s->workers_.get();
  pd.node_id = s->d_.node_id;
  pd.shard_count = s->d_.shard_count;
  pd.default_deadline_ms = o.default_deadline_ms;
  s->predictor_ = std::make_unique<predictor>(pd);
  // Serving: one intra-op thread per forward pass (batches are small; the batchers are the
  // parallelism), set before the first model loads.
  torchscript_model::set_threads(1);
  if (auto st = s->models_->start(); !st) return st.failure();
  if (auto st = s->predictor_->serve(); !st) return st.failure();
  follower::deps fd;
  fd.defs = s->d_.defs;
  fd.nats = s->d_.nats;
  fd.predict = s->predictor_.get();
  fd.node_id = s->d_.node_id;
  fd.replicas = s->d_.replicas;
  auto fol = follower::start(fd, o.follow);
  if (!fol) return fol.failure();
  s->follower_ = std::move(fol.value());
  return s;
}

inference_service::~inference_service() {
  stop();
}

void inference_service::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (follower_) follower_->stop();  // before the predictor: its calls in flight finish
  if (predictor_ && !predictor_->drain(std::chrono::seconds(5)))
    spdlog::warn("inference: calls still in flight after 5 s at stop");
  if (models_) models_->stop();
  if (workers_) workers_->stop();
  if (log_) {
    log_->flush(std::chrono::seconds(3));
    log_->stop();
  }
}

void inference_service::predict(const std::string& model, const predict_options& o,
                                std::vector<example_in> examples, predict_fn done) const {
  predictor_->predict(model, o, std::move(examples), /*forward=*/true, 0, std::move(done));
}

bool inference_service::run(std::function<void()> job) const {
  return workers_->submit(std::move(job));
}

result<prediction_log::page> inference_service::tail(const std::string& model, size_t limit,
                                                     uint64_t after_seq) const {
  if (!log_) return make_error("this node keeps no prediction log", errc::not_found);
  return log_->tail(model, limit, after_seq);
}

std::vector<model_table::status_entry> inference_service::serving() const {
  return models_->serving();
}

std::vector<follower::status_entry> inference_service::follows() const {
  return follower_ ? follower_->status() : std::vector<follower::status_entry>{};
}

uint64_t inference_service::log_drops() const {
  return log_ ? log_->drops() : 0;
}

}  // namespace tessera
