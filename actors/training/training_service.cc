#include "training_service.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "actors/features/messages.h"
#include "cluster/cluster_view.h"
#include "cluster/kv.h"
#include "cluster/registry.h"
#include "dataset.h"
#include "hash.h"
#include "time_util.h"
#include "trainer.h"
#include "worker_pool.h"

namespace tessera {
namespace {

constexpr auto kTick = std::chrono::milliseconds(300);
constexpr auto kRewatch = std::chrono::seconds(30);
constexpr int64_t kDeadAfterUs =
    3'000'000;  // a claimant whose progress stopped this long, and who is not a live member

}  // namespace

job_info job_info::from_json(const nlohmann::json& j) {
  job_info i;
  i.id = j.value("id", "");
  i.model = j.value("model", "");
  i.state = j.value("state", "");
  i.node = j.value("node", "");
  i.error = j.value("error", "");
  i.attempt = j.value("attempt", 0u);
  i.version = j.value("version", 0u);
  i.test_auc = j.value("test_auc", 0.0);
  if (j.contains("progress")) {
    auto& p = j["progress"];
    i.phase = p.value("phase", "");
    i.epoch = p.value("epoch", 0u);
    i.epochs = p.value("epochs", 0u);
    i.fraction = p.value("fraction", 0.0);
    i.loss = p.value("loss", 0.0);
  }
  return i;
}

struct training_service::impl {
  std::shared_ptr<const features_context> ctx;
  options opts;
  std::unique_ptr<kv_bucket> jobs_kv;
  std::unique_ptr<model_registry> registry;

  std::atomic<bool> stopping{false};
  std::thread runner;

  // The job this node runs (at most one), written by the job thread, read by the runner.
  struct running {
    std::string id;
    nlohmann::json spec;
    std::mutex mu;
    nlohmann::json progress;
    bool finished = false;
    std::string error;
    uint32_t version = 0;
    double test_auc = 0;
    std::atomic<bool> cancel{false};
    std::thread thread;
  };
  std::unique_ptr<running> current;

  mutable std::mutex jobs_mu;
  std::vector<job_info> seen;

  // One worker for blocking registry calls of the gateway. Stopped last in the destructor, and
  // drains: each queued call has a caller waiting for its answer.
  worker_pool worker{{1, worker_pool::at_stop::drain}};

  bool member_alive(const std::string& node) const {
    if (node == ctx->node_id) return true;
    if (!ctx->cluster) return false;
    for (auto& m : ctx->cluster->members())
      if (m.id == node) return m.alive;
    return false;
  }

  // Builds the dataset, trains, registers. Runs on the job thread.
  void run_job(running* r) {
    auto set_progress = [r](nlohmann::json p) {
      std::lock_guard<std::mutex> g(r->mu);
      r->progress = std::move(p);
    };
    auto finish = [r](std::string error, uint32_t version = 0, double auc = 0) {
      std::lock_guard<std::mutex> g(r->mu);
      r->finished = true;
      r->error = std::move(error);
      r->version = version;
      r->test_auc = auc;
    };
    const std::string model_name = r->spec["model"].get<std::string>();
    const model_def* m = ctx->defs->find_model(model_name);
    if (!m) return finish("model " + model_name + " is not in this node's definitions");
    const label_def* l = ctx->defs->find_label(m->label);
    const auto started = std::chrono::steady_clock::now();
    // 1. The dataset, from every shard's owner, in shard order (the same bytes as `dataset build`).
    std::filesystem::create_directories(opts.data_dir + "/datasets");
    const std::string path = opts.data_dir + "/datasets/" + r->id + ".csv";
    uint64_t hash = kFnvOffsetBasis, rows = 0, outside = 0;
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      bool header = false;
      // One part is fetched ahead while the previous one is written (two cores, two parts).
      auto fetch = [this, r, l, m](uint32_t s) {
        result<dataset_part> part = make_error("cancelled");
        for (int attempt = 0; !r->cancel; ++attempt) {
          bool retryable = false;
          part = opts.datasets->fetch_part(*l, s, m->train_from, m->test_to, retryable);
          if (part || !retryable || attempt >= 40) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
        return part;
      };
      std::future<result<dataset_part>> next = std::async(std::launch::async, fetch, 0u);
      for (uint32_t s = 0; s < ctx->opts.shard_count; ++s) {
        if (r->cancel) return finish("cancelled");
        set_progress(
            {{"phase", "dataset"}, {"fraction", static_cast<double>(s) / ctx->opts.shard_count}});
        result<dataset_part> part = next.get();
        if (s + 1 < ctx->opts.shard_count) next = std::async(std::launch::async, fetch, s + 1);
        if (!part)
          return finish("dataset, shard " + std::to_string(s) + ": " + part.error_message());
        if (!header) {
          std::string h;
          for (auto& c : part->columns) h += (h.empty() ? "" : ",") + c;
          h += '\n';
          out << h;
          hash = fnv1a_update(hash, std::string_view(h.data(), h.size()));
          header = true;
        }
        out << part->csv;
        hash = fnv1a_update(hash, std::string_view(part->csv.data(), part->csv.size()));
        rows += part->rows;
        outside += part->outside_retention;
      }
    }
    struct remove_file {
      std::string p;
      ~remove_file() { std::filesystem::remove(p); }
    } cleanup{path};
    if (rows == 0)
      return finish("empty dataset: no example of label " + l->name + " between " +
                    format_timestamp(m->train_from) + " and " + format_timestamp(m->test_to) +
                    (outside ? " within the offline retention" : ""));
    auto t = read_dataset_csv(path, m->features);
    if (!t) return finish(t.error_message());
    // 2. Training.
    auto res = train_model(
        *m, *t,
        [&](int epoch, double fraction, double loss) {
          set_progress({{"phase", "training"},
                        {"epoch", epoch},
                        {"epochs", m->epochs},
                        {"fraction", fraction},
                        {"loss", loss}});
        },
        &r->cancel);
    if (!res) return finish(res.error_message());
    // 3. The registry, with lineage.
    set_progress({{"phase", "registering"}, {"fraction", 1.0}});
    char hex[20];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
    nlohmann::json views = nlohmann::json::array();
    for (const view_def* v : l->views) views.push_back(v->qualified());
    auto epochs = nlohmann::json::array();
    for (auto& e : res->epochs)
      epochs.push_back({{"epoch", e.epoch},
                        {"train_loss", e.train_loss},
                        {"valid_log_loss", e.valid_log_loss},
                        {"valid_auc", e.valid_auc}});
    auto inputs_ref = nlohmann::json::array();
    for (auto& d : res->input_reference) inputs_ref.push_back(to_json(d));
    nlohmann::json meta{
        {"kind", m->kind},
        {"inputs", res->inputs},
        {"lineage",
         {{"label", l->name},
          {"label_value", l->value_src},
          {"prediction_time", l->time_src},
          {"snapshot_seconds", l->snapshot_us / 1000000},
          {"views", views},
          {"dataset",
           {{"rows", rows},
            {"dropped_outside_retention", outside},
            {"fnv1a64", hex},
            {"from", format_timestamp(m->train_from)},
            {"to", format_timestamp(m->test_to)}}},
          {"config",
           {{"kind", m->kind},
            {"hidden", m->hidden},
            {"epochs", m->epochs},
            {"batch_size", m->batch_size},
            {"learning_rate", m->learning_rate},
            {"weight_decay", m->weight_decay},
            {"seed", m->seed},
            {"features", res->inputs},
            {"split",
             {{"train", {format_timestamp(m->train_from), format_timestamp(m->valid_from)}},
              {"validation", {format_timestamp(m->valid_from), format_timestamp(m->test_from)}},
              {"test", {format_timestamp(m->test_from), format_timestamp(m->test_to)}}}}}},
          {"job", r->id},
          {"node", ctx->node_id}}},
        {"metrics",
         {{"train", to_json(res->train)},
          {"validation", to_json(res->validation)},
          {"test", to_json(res->test)}}},
        {"rows",
         {{"train", res->train_rows}, {"validation", res->valid_rows}, {"test", res->test_rows}}},
        {"epochs", epochs},
        {"best_epoch", res->best_epoch},
        {"reference",
         {{"inputs", inputs_ref}, {"predictions", to_json(res->prediction_reference)}}},
        {"training_seconds", res->seconds},
        {"examples_per_second", res->examples_per_second},
        {"job_seconds",
         std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()}};
    auto v = registry->register_version(m->name, std::move(meta), res->artifact);
    if (!v) return finish("registering " + m->name + ": " + v.error_message());
    spdlog::info("training job {}: {} version {} registered (test AUC {:.4f}, {:.0f} examples/s)",
                 r->id, m->name, *v, res->test.auc, res->examples_per_second);
    finish("", *v, res->test.auc);
  }

  // The jobs as TSR_JOBS holds them, followed through a watcher (one long-lived ordered
  // consumer per node: listing the keys every tick created a consumer per tick, which on a
  // NATS cluster is a meta-layer operation and swamped it when a server died). Our own writes
  // go in at once, so the next tick compares against the revision we wrote.
  std::map<std::string, kv_entry> jobs;
  kv_write write_job(const std::string& key, const nlohmann::json& j, uint64_t expected_revision) {
    const std::string v = j.dump();
    kv_write w = jobs_kv->update(key, v, expected_revision);
    if (w.ok) jobs[key] = kv_entry{v, w.revision, 0};
    return w;
  }

  void runner_loop() {
    std::unique_ptr<kv_bucket::watcher> w;
    auto watching_since = std::chrono::steady_clock::now();
    while (!stopping) {
      const auto tick_at = std::chrono::steady_clock::now() + kTick;
      // A watcher silently cut off (its NATS server died) would miss changes: renew it now
      // and then, which costs one consumer per kRewatch.
      if (w && std::chrono::steady_clock::now() - watching_since > kRewatch) w.reset();
      if (!w) {
        auto nw = jobs_kv->watch_all();
        if (!nw) {
          std::this_thread::sleep_for(kTick);
          continue;
        }
        w = std::move(nw.value());
        watching_since = std::chrono::steady_clock::now();
        jobs.clear();
      }
      for (auto now = std::chrono::steady_clock::now(); now < tick_at;
           now = std::chrono::steady_clock::now()) {
        auto u = w->next(std::max<int64_t>(
            1, std::chrono::duration_cast<std::chrono::milliseconds>(tick_at - now).count()));
        if (!u) {
          w.reset();
          break;
        }
        if (!u->has_value()) continue;  // a timeout, or the end of the current values
        auto& up = **u;
        if (up.deleted)
          jobs.erase(up.key);
        else if (jobs[up.key].revision < up.entry.revision)
          jobs[up.key] = std::move(up.entry);
      }
      if (w) tick();
    }
  }

  // One pass over the jobs: claim, watch, re-queue, publish progress.
  void tick() {
    std::vector<job_info> now_seen;
    const int64_t now = now_micros();
    const auto snapshot = jobs;  // tick() writes into `jobs`
    for (auto& [key, e] : snapshot) {
      nlohmann::json j = nlohmann::json::parse(e.value, nullptr, false);
      if (j.is_discarded()) continue;
      const uint64_t rev = e.revision;
      const std::string state = j.value("state", "");
      const std::string node = j.value("node", "");
      if (current && current->id == key) {
        // Ours: publish progress, or the outcome.
        nlohmann::json p;
        bool finished;
        std::string error;
        uint32_t version;
        double auc;
        {
          std::lock_guard<std::mutex> g(current->mu);
          p = current->progress;
          finished = current->finished;
          error = current->error;
          version = current->version;
          auc = current->test_auc;
        }
        if (state != "running" || node != ctx->node_id) {
          spdlog::warn("training job {}: taken from this node ({} on {}); cancelling", key, state,
                       node);
          current->cancel = true;
        } else {
          j["progress"] = p;
          j["updated_us"] = now;
          if (finished) {
            j["state"] = error.empty() ? "done" : "failed";
            if (!error.empty()) j["error"] = error;
            j["version"] = version;
            j["test_auc"] = auc;
          }
          auto w = write_job(key, j, rev);
          if (!w.ok && !finished) current->cancel = true;
          if (w.ok && finished && !error.empty())
            spdlog::warn("training job {} failed: {}", key, error);
        }
        if (current->finished || current->cancel) {
          bool done;
          {
            std::lock_guard<std::mutex> g(current->mu);
            done = current->finished;
          }
          if (done) {
            current->thread.join();
            current.reset();
          }
        }
      } else if (state == "queued" && !current) {
        j["state"] = "running";
        j["node"] = ctx->node_id;
        j["attempt"] = j.value("attempt", 0) + 1;
        j["updated_us"] = now;
        j["progress"] = {{"phase", "starting"}};
        auto w = write_job(key, j, rev);
        if (w.ok) {
          spdlog::info("training job {}: claimed (model {}, attempt {})", key, j.value("model", ""),
                       j["attempt"].get<int>());
          current = std::make_unique<running>();
          current->id = key;
          current->spec = j;
          running* r = current.get();
          r->thread = std::thread([this, r] { run_job(r); });
        }
      } else if (state == "running" && (node == ctx->node_id ||
                                        (!member_alive(node) &&
                                         now - j.value("updated_us", int64_t(0)) > kDeadAfterUs))) {
        // Its node died (or is this node, restarted): queue it again, or give up.
        const int attempt = j.value("attempt", 1);
        if (attempt >= opts.max_attempts) {
          j["state"] = "failed";
          j["error"] = "node " + node + " died while training (attempt " + std::to_string(attempt) +
                       " of " + std::to_string(opts.max_attempts) + ")";
        } else {
          j["state"] = "queued";
          j["requeued_because"] = "node " + node + " died while training";
        }
        auto w = write_job(key, j, rev);
        if (w.ok)
          spdlog::warn("training job {}: node {} died while running it; {}", key, node,
                       j["state"].get<std::string>() == "queued" ? "queued again" : "failed");
      }
      if (now - j.value("created_us", now) < 86400LL * 1000000)
        now_seen.push_back(job_info::from_json(j));
    }
    std::lock_guard<std::mutex> g(jobs_mu);
    seen = std::move(now_seen);
  }
};

result<std::unique_ptr<training_service>> training_service::start(
    std::shared_ptr<const features_context> ctx, const options& o) {
  if (!o.datasets) return make_error("training needs the node's dataset service");
  std::unique_ptr<training_service> s(new training_service());
  s->impl_ = std::make_unique<impl>();
  auto& im = *s->impl_;
  im.ctx = std::move(ctx);
  im.opts = o;
  auto kv = kv_bucket::open(im.ctx->nats->jetstream(), {"TSR_JOBS", 0, o.replicas, 1});
  if (!kv) return make_error(kv.error_message());
  im.jobs_kv = std::move(kv.value());
  auto reg = model_registry::open(im.ctx->nats->jetstream(), o.replicas);
  if (!reg) return make_error(reg.error_message());
  im.registry = std::move(reg.value());
  im.runner = std::thread([p = &im] { p->runner_loop(); });
  return s;
}

training_service::~training_service() {
  if (!impl_) return;
  impl_->stopping = true;
  if (impl_->runner.joinable()) impl_->runner.join();
  if (impl_->current) {
    impl_->current->cancel = true;
    impl_->current->thread.join();
  }
  impl_->worker.stop();
}

model_registry& training_service::registry() {
  return *impl_->registry;
}

void training_service::run(std::function<void()> fn) {
  // Refused only while the service is destroyed: `fn` is then destroyed unrun, as it was when it
  // came after the worker had finished.
  (void)impl_->worker.submit(std::move(fn));
}

result<std::string> training_service::submit(const std::string& model) {
  const model_def* m = impl_->ctx->defs->find_model(model);
  if (!m) {
    std::string known;
    for (auto& x : impl_->ctx->defs->models()) known += (known.empty() ? "" : ", ") + x.name;
    return make_error("unknown model '" + model + "' (known: " +
                          (known.empty() ? "none; define one with model { ... }" : known) + ")",
                      errc::not_found);
  }
  for (auto& f : m->features)
    if (auto up = chained_model(f); !up.empty())
      return make_error("model " + model + " takes the score of model " + up + " (feature '" + f +
                            "'): training a chained model is not supported yet (its dataset "
                            "would need " +
                            up +
                            "'s score on every row); train it elsewhere and import it: tessera "
                            "models import " +
                            model + " FILE.pt --label " + m->label +
                            " (inputs: the model's features, in order)",
                        errc::invalid);
  const int64_t now = now_micros();
  char id[96];
  std::snprintf(id, sizeof id, "%s-%lld", model.c_str(), static_cast<long long>(now));
  nlohmann::json j{{"id", id},     {"model", model},    {"state", "queued"},
                   {"attempt", 0}, {"created_us", now}, {"created", format_timestamp(now)}};
  auto w = impl_->jobs_kv->create(id, j.dump());
  if (!w.ok)
    return make_error("cannot queue the job: " +
                      (w.conflict ? std::string("a job with this id exists") : w.error));
  return std::string(id);
}

result<job_info> training_service::job(const std::string& id) const {
  auto e = impl_->jobs_kv->get(id);
  if (!e) return e.failure();
  if (!e->has_value()) return make_error("unknown training job '" + id + "'", errc::not_found);
  auto j = nlohmann::json::parse((*e)->value, nullptr, false);
  if (j.is_discarded()) return make_error("training job '" + id + "' is unreadable");
  return job_info::from_json(j);
}

std::vector<job_info> training_service::jobs() const {
  std::lock_guard<std::mutex> g(impl_->jobs_mu);
  return impl_->seen;
}

}  // namespace tessera
