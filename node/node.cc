#include "tessera/node.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>
#include <caf/all.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "actors/features/features_service.h"
#include "actors/features/messages.h"
#include "actors/features/vector_cache.h"
#include "actors/inference/inference_service.h"
#include "actors/monitoring/quality_service.h"
#include "actors/training/dataset.h"
#include "actors/training/training_service.h"
#include "bridges.h"
#include "bus.h"
#include "cluster/agent.h"
#include "cluster/cluster_view.h"
#include "expectations.h"
#include "gateway.h"
#include "metrics.h"
#include "nats_server.h"
#include "store.h"

namespace tessera {

namespace fs = std::filesystem;

struct node::impl {
  node_config cfg;
  std::string node_id;
  int lock_fd = -1;
  std::unique_ptr<store> db;
  std::unique_ptr<embedded_nats> nats_server;
  std::unique_ptr<bus> nats;
  node_metrics metrics;
  log_limiter limiter;
  std::unique_ptr<cluster_view> view;
  std::unique_ptr<cluster_agent> agent;
  shard_directory directory;
  vector_cache cache;
  std::unique_ptr<stream_clocks> clocks;
  validation_ledger validation;  // what ingest saw of the streams' expectations
  // The families, started in this order and stopped in reverse. The features family's shard
  // host outlives the agent (its only caller): features is destroyed after the agent.
  std::unique_ptr<features_service> features;
  // Owns the definitions that entity actors point into: released only after every actor is
  // gone (an entity can still be running when its shard and the supervisor have exited).
  std::shared_ptr<const features_context> ctx;
  std::unique_ptr<gateway> gw;
  std::unique_ptr<dataset_service> datasets;   // training-set parts and point-in-time reads
  std::unique_ptr<training_service> training;  // training jobs and the model registry
  // What the gateway's training capability sees of `training`: set once the node has joined.
  std::atomic<training_service*> training_ptr{nullptr};
  // Inference: predictions, reaching features through the bridges (bridges.h).
  std::unique_ptr<reader_feature_source> online;
  std::unique_ptr<dataset_offline_source> offline;
  std::unique_ptr<inference_service> inference;
  std::atomic<inference_service*> inference_ptr{nullptr};
  // Monitoring: live quality of the models declared with `monitor`.
  std::unique_ptr<quality_service> quality;
  std::atomic<quality_service*> quality_ptr{nullptr};
  std::string nats_url;
  bool stopped = false;
};

namespace {

result<std::string> read_or_create(const fs::path& p, const std::string& fresh) {
  std::ifstream in(p);
  std::string v;
  if (in >> v && !v.empty()) return v;
  std::ofstream out(p);
  if (!(out << fresh << "\n")) return make_error("cannot write " + p.string());
  return fresh;
}

}  // namespace

result<std::unique_ptr<node>> node::start(const node_config& given) {
  auto im = std::make_unique<impl>();
  node_config cfg = given;
  if (cfg.shards == 0) {  // the data dir's count, else the default
    std::ifstream in(fs::path(cfg.data_dir) / "shard_count");
    if (!(in >> cfg.shards) || cfg.shards == 0) cfg.shards = kDefaultShards;
  }
  im->cfg = cfg;
  if (cfg.definitions.empty())
    return make_error("no definitions file given (--definitions FILE.lua)");
  auto defs = definitions::load_file(cfg.definitions);
  if (!defs) return make_error("invalid definitions: " + defs.error_message());
  if (cfg.shards > 4096) return make_error("shards must be between 1 and 4096");

  std::error_code ec;
  fs::create_directories(cfg.data_dir, ec);
  if (ec) return make_error("cannot create data dir " + cfg.data_dir + ": " + ec.message());
  std::string lock_path = (fs::path(cfg.data_dir) / "LOCK.node").string();
  im->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (im->lock_fd < 0 || ::flock(im->lock_fd, LOCK_EX | LOCK_NB) != 0)
    return make_error("data dir " + cfg.data_dir + " is in use by another node");

  std::random_device rd;
  char idbuf[16];
  std::snprintf(idbuf, sizeof idbuf, "n%08x", rd());
  auto id = cfg.node_id.empty() ? read_or_create(fs::path(cfg.data_dir) / "node_id", idbuf)
                                : result<std::string>(cfg.node_id);
  if (!id) return make_error(id.error_message());
  im->node_id = *id;
  for (char c : im->node_id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      return make_error("node id may hold letters, digits, - and _ only");
  auto shards = read_or_create(fs::path(cfg.data_dir) / "shard_count", std::to_string(cfg.shards));
  if (!shards) return make_error(shards.error_message());
  if (std::stoul(*shards) != cfg.shards)
    return make_error("data dir " + cfg.data_dir + " was created with " + *shards +
                      " shards; the shard count is fixed (got --shards " +
                      std::to_string(cfg.shards) + ")");

  auto db = store::open((fs::path(cfg.data_dir) / "rocksdb").string(), cfg.sync_writes);
  if (!db) return make_error(db.error_message());
  im->db = std::move(db.value());

  im->nats_url = cfg.nats_url;
  if (im->nats_url.empty()) {
    auto srv = embedded_nats::start(cfg.data_dir);
    if (!srv) return make_error(srv.error_message());
    im->nats_server = std::move(srv.value());
    im->nats_url = im->nats_server->url();
  }
  auto b = bus::connect({im->nats_url, im->node_id, cfg.replicas});
  if (!b) return make_error(b.error_message());
  im->nats = std::move(b.value());
  for (auto& s : (*defs)->streams()) {
    auto st = im->nats->ensure_stream(s);
    if (!st) return make_error(st.error_message());
  }
  if (auto st = im->nats->ensure_dlq_stream(); !st) return make_error(st.error_message());

  im->view = std::make_unique<cluster_view>(im->node_id, cfg.shards);
  auto ctx = std::make_shared<features_context>();
  ctx->defs = *defs;
  ctx->db = im->db.get();
  ctx->nats = im->nats.get();
  ctx->metrics = &im->metrics;
  ctx->limiter = &im->limiter;
  ctx->cluster = im->view.get();
  ctx->directory = &im->directory;
  ctx->cache = &im->cache;
  im->clocks = std::make_unique<stream_clocks>(**defs);
  ctx->clocks = im->clocks.get();
  ctx->validation = &im->validation;
  ctx->node_id = im->node_id;
  ctx->opts.shard_count = cfg.shards;
  ctx->opts.entity_idle = std::chrono::milliseconds(cfg.entity_idle_ms);

  im->datasets = std::make_unique<dataset_service>(ctx);
  im->ctx = ctx;
  features_service::options fo;
  fo.threads = cfg.threads;
  auto features = features_service::start(ctx, fo);
  if (!features) return make_error(features.error_message());
  im->features = std::move(features.value());

  gateway_options go;
  go.listen = cfg.rpc;
  go.nats_url = im->nats_url;
  go.training.defs = *defs;
  go.training.shard_count = cfg.shards;
  go.training.datasets = im->datasets.get();
  go.training.training = &im->training_ptr;
  go.inference = &im->inference_ptr;
  go.quality = &im->quality_ptr;
  auto gw = gateway::start(go, ctx, im->features->supervisor());
  if (!gw) return make_error(gw.error_message());  // ~impl stops the families
  im->gw = std::move(gw.value());
  if (auto st = im->features->serve_forwarded_reads(); !st) return make_error(st.error_message());
  if (auto st = im->datasets->serve(); !st) return make_error(st.error_message());

  // Join the cluster (alone, this node becomes the leader and owns every shard).
  agent_options ao;
  ao.node_id = im->node_id;
  ao.shard_count = cfg.shards;
  ao.replicas = cfg.replicas;
  ao.heartbeat = std::chrono::milliseconds(cfg.heartbeat_ms);
  ao.dead_after = std::chrono::milliseconds(cfg.dead_after_ms);
  ao.lease_ttl = std::chrono::milliseconds(cfg.dead_after_ms);
  ao.handoff_wait = std::chrono::milliseconds(cfg.handoff_wait_ms);
  ao.snapshot_every = std::chrono::seconds(cfg.snapshot_every_s);
  if (!cfg.advertise.empty()) {
    ao.rpc_address = cfg.advertise;
  } else {
    auto colon = cfg.rpc.rfind(':');
    std::string host = colon == std::string::npos ? cfg.rpc : cfg.rpc.substr(0, colon);
    if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
    ao.rpc_address = host + ":" + std::to_string(im->gw->port());
  }
  cluster_agent::deps deps;
  deps.nats = im->nats.get();
  deps.db = im->db.get();
  deps.defs = *defs;
  deps.hosts = {im->features->shards()};
  deps.view = im->view.get();
  deps.clocks = im->clocks.get();
  deps.metrics = &im->metrics;
  auto agent = cluster_agent::start(ao, deps);
  if (!agent) {
    im->gw.reset();
    return agent.failure();
  }
  im->agent = std::move(agent.value());
  if (!im->agent->wait_ready(std::chrono::seconds(20)))
    spdlog::warn(
        "node {}: not serving its shards after 20 s (the cluster is still forming); continuing",
        im->node_id);
  training_service::options to;
  to.data_dir = cfg.data_dir;
  to.replicas = cfg.replicas;
  to.datasets = im->datasets.get();
  auto training = training_service::start(ctx, to);
  if (!training)
    spdlog::error("node {}: training and the registry are unavailable: {}", im->node_id,
                  training.error_message());
  else {
    im->training = std::move(training.value());
    im->training_ptr = im->training.get();
  }
  im->online = std::make_unique<reader_feature_source>(im->features->reader());
  im->offline = std::make_unique<dataset_offline_source>(*im->datasets);
  inference_service::deps idp;
  idp.defs = *defs;
  idp.nats = im->nats.get();
  idp.cluster = im->view.get();
  idp.clocks = im->clocks.get();
  idp.features = im->online.get();
  idp.offline = im->offline.get();
  idp.node_id = im->node_id;
  idp.shard_count = cfg.shards;
  idp.replicas = cfg.replicas;
  inference_service::options iop;
  iop.log = cfg.prediction_log;
  iop.batching.max_batch = static_cast<size_t>(std::max(1, cfg.predict_max_batch));
  iop.batching.max_wait = std::chrono::microseconds(std::max<int64_t>(0, cfg.predict_max_wait_us));
  iop.default_deadline_ms = static_cast<uint32_t>(std::max<int64_t>(1, cfg.predict_deadline_ms));
  iop.follow.ack_wait_ms = std::max<int64_t>(500, cfg.follow_ack_wait_ms);
  auto inference = inference_service::start(idp, iop);
  if (!inference) {
    spdlog::error("node {}: inference is unavailable: {}", im->node_id, inference.error_message());
  } else {
    im->inference = std::move(inference.value());
    im->inference_ptr = im->inference.get();
  }
  quality_service::deps qd;
  qd.defs = *defs;
  qd.nats = im->nats.get();
  qd.node_id = im->node_id;
  qd.view = im->view.get();
  qd.replicas = cfg.replicas;
  qd.webhook = cfg.alert_webhook;
  qd.save_every = std::chrono::milliseconds(std::max<int64_t>(100, cfg.monitor_save_ms));
  if (inference_service* inf = im->inference.get()) {
    qd.skew = [inf](const std::string& model, size_t sample) { return inf->skew(model, sample); };
    qd.serving = [inf] { return served_counters(*inf); };
  }
  qd.freshness = [m = &im->metrics](double slow_us) {
    return std::pair<uint64_t, uint64_t>{m->stages.total.count(),
                                         m->stages.total.count_at_least_us(slow_us)};
  };
  auto quality = quality_service::start(qd);
  if (!quality) {
    spdlog::error("node {}: live quality is unavailable: {}", im->node_id, quality.error_message());
  } else {
    im->quality = std::move(quality.value());
    im->quality_ptr = im->quality.get();
  }
  spdlog::info("node {} ready: RPC on port {}, NATS {}, {} shards, data in {}", im->node_id,
               im->gw->port(), im->nats_url, cfg.shards, cfg.data_dir);
  return std::unique_ptr<node>(new node(std::move(im)));
}

node::node(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
node::~node() {
  stop();
}

void node::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  spdlog::info("node {} stopping", impl_->node_id);
  if (impl_->agent) impl_->agent->leave(std::chrono::milliseconds(impl_->cfg.leave_timeout_ms));
  impl_->gw.reset();  // no new calls
  impl_->quality_ptr = nullptr;
  impl_->quality.reset();
  impl_->inference_ptr = nullptr;
  impl_->inference.reset();  // drains calls in flight, writes the queued prediction log
  impl_->training_ptr = nullptr;
  impl_->training
      .reset();  // stops its runner; a running job is cancelled (another node re-runs it)
  impl_->datasets.reset();                       // joins its workers (they read RocksDB)
  if (impl_->features) impl_->features->stop();  // every actor gone: shards committed
  impl_->agent.reset();
  impl_->features.reset();  // after the agent, the only caller of its shard host
  impl_->ctx.reset();
  impl_->nats.reset();
  impl_->nats_server.reset();
  impl_->db.reset();
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
  spdlog::info("node stopped");
}

void node::TEST_stop_without_leaving() {
  if (impl_ && impl_->agent) impl_->agent->stop();
  stop();
}

std::vector<uint32_t> node::serving() const {
  return impl_->view ? impl_->view->serving() : std::vector<uint32_t>{};
}

int node::rpc_port() const {
  return impl_->gw ? impl_->gw->port() : 0;
}
const std::string& node::nats_url() const {
  return impl_->nats_url;
}
const std::string& node::node_id() const {
  return impl_->node_id;
}
uint64_t node::events_applied() const {
  return impl_->metrics.events_applied.load();
}

bool node::TEST_crash_entity(const std::string& stream, const std::string& kind,
                             const std::string& key) {
  return impl_->features && impl_->features->TEST_crash_entity(stream, kind, key);
}

std::shared_ptr<const features_context> node::TEST_features_context() const {
  return impl_->ctx;
}

void node::wait_for_stop_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
}

}  // namespace tessera
