#include "model_table.h"

#include <spdlog/spdlog.h>

#include "cluster/registry.h"

namespace tessera {
namespace {

constexpr size_t kPinnedPerModel = 4;

uint32_t production_of(const nlohmann::json& head) {
  if (!head.is_object() || !head.contains("versions")) return 0;
  for (auto& [v, e] : head["versions"].items())
    if (e.value("stage", "") == "production") return static_cast<uint32_t>(std::stoul(v));
  return 0;
}

}  // namespace

model_table::model_table(std::shared_ptr<const definitions> defs, model_registry* registry,
                         batcher::options batching)
    : defs_(std::move(defs)), registry_(registry), batching_(batching) {}

model_table::~model_table() {
  stop();
}

status model_table::start() {
  auto w = registry_->watch();
  if (!w) return make_error("cannot follow the model registry: " + w.error_message());
  watcher_ = std::move(w.value());
  // The current heads first (next() answers nullopt at their end), loaded before serving.
  for (;;) {
    auto u = watcher_->next(2000);
    if (!u) return make_error("cannot follow the model registry: " + u.error_message());
    if (!u->has_value()) break;
    on_update(**u);
  }
  thread_ = std::thread([this] { watch_loop(); });
  return ok_status();
}

void model_table::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  watcher_.reset();
}

void model_table::watch_loop() {
  while (!stop_) {
    auto u = watcher_->next(250);
    if (!u) {
      spdlog::warn("model registry watch: {}", u.error_message());
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    if (!u->has_value()) continue;
    on_update(**u);
  }
}

void model_table::on_update(const kv_bucket::watcher::update& u) {
  if (u.key.find('.') != std::string::npos) return;  // a version's record, not a head
  nlohmann::json head =
      u.deleted ? nlohmann::json() : nlohmann::json::parse(u.entry.value, nullptr, false);
  if (head.is_discarded()) {
    spdlog::warn("model registry: the head of {} is unreadable; ignored", u.key);
    return;
  }
  on_head(u.key, head, u.entry.revision);
}

void model_table::on_head(const std::string& name, const nlohmann::json& head, uint64_t revision) {
  const uint32_t prod = production_of(head);
  {
    std::lock_guard<std::mutex> l(mu_);
    entry& e = models_[name];
    if (revision && revision < e.revision) return;
    e.revision = std::max(e.revision, revision);
    e.head = head;
    e.production = prod;
    if (prod == 0) {
      e.serving = nullptr;
      return;
    }
    if (e.serving && e.serving->version == prod) return;
    if (auto it = e.pinned.find(prod); it != e.pinned.end()) {  // loaded already
      e.serving = it->second;
      return;
    }
  }
  auto loaded = load(name, prod);
  std::lock_guard<std::mutex> l(mu_);
  entry& e = models_[name];
  if (!loaded) {
    e.load_error = "version " + std::to_string(prod) + " not served: " + loaded.error_message();
    e.failed = prod;
    spdlog::error("model {}: {}; {}", name, e.load_error,
                  e.serving ? "version " + std::to_string(e.serving->version) + " keeps serving"
                            : std::string("nothing serves it"));
    return;
  }
  if (e.production != prod) return;  // promoted again meanwhile: the next head loads that
  e.serving = std::move(loaded.value());
  e.load_error.clear();
  e.failed = 0;
  spdlog::info("model {}: version {} serving", name, prod);
}

result<std::shared_ptr<const serving_model>> model_table::load(const std::string& name,
                                                               uint32_t version) {
  std::lock_guard<std::mutex> l(load_mu_);
  ++loads_;
  auto record = registry_->show(name, version);
  if (!record) return record.failure();
  auto artifact = registry_->artifact(name, version);
  if (!artifact) return artifact.failure();
  auto m = load_serving_model(defs_, *record, *artifact, batching_);
  if (!m) return m.failure();
  return std::shared_ptr<const serving_model>(std::move(m.value()));
}

std::string model_table::stage_of(const entry& e, uint32_t version) const {
  auto& vs = e.head["versions"];
  auto it = vs.find(std::to_string(version));
  return it == vs.end() ? std::string("unknown") : it->value("stage", "unknown");
}

void model_table::refresh(const std::string& name) {
  auto h = registry_->current_head(name);
  if (!h || h->first.is_null()) return;
  on_head(name, h->first, h->second);
}

bool model_table::needs_load(const std::string& name, uint32_t version) const {
  if (version == 0) return false;
  std::lock_guard<std::mutex> l(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) return false;
  const entry& e = it->second;
  return !(e.serving && e.serving->version == version) && !e.pinned.count(version) &&
         e.head.is_object() && e.head["versions"].contains(std::to_string(version));
}

result<model_table::served> model_table::acquire(const std::string& name, uint32_t version,
                                                 bool may_load) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = models_.find(name);
    if (it == models_.end() || !it->second.head.is_object()) {
      std::string known;
      for (auto& [n, e] : models_)
        if (e.head.is_object()) known += (known.empty() ? "" : ", ") + n;
      return make_error("unknown model '" + name +
                            "' (registered: " + (known.empty() ? std::string("none") : known) + ")",
                        errc::not_found);
    }
    entry& e = it->second;
    if (version == 0) {
      if (e.serving && e.serving->version == e.production) return served{e.serving, "production"};
      if (e.production == 0) {
        std::string stages;
        for (auto& [v, x] : e.head["versions"].items())
          stages += (stages.empty() ? "" : ", ") + v + " " + x.value("stage", "?");
        return make_error("model " + name + " has no production version (versions: " + stages +
                              "); promote one: tessera models promote " + name +
                              " VERSION production",
                          errc::not_found);
      }
      if (e.serving)  // the new production version is loading (or failed): the old one serves
        return served{e.serving, stage_of(e, e.serving->version)};
      if (e.failed == e.production)
        return make_error("model " + name + ": " + e.load_error, errc::invalid);
      return make_error("model " + name + ": version " + std::to_string(e.production) +
                            " is loading on this node; retry",
                        errc::retryable);
    }
    if (!e.head["versions"].contains(std::to_string(version)))
      return make_error("model " + name + " has no version " + std::to_string(version),
                        errc::not_found);
    if (e.serving && e.serving->version == version) return served{e.serving, stage_of(e, version)};
    if (auto p = e.pinned.find(version); p != e.pinned.end())
      return served{p->second, stage_of(e, version)};
    if (!may_load)
      return make_error("model " + name + " version " + std::to_string(version) +
                            " is not loaded on this node yet; retry",
                        errc::retryable);
  }
  auto loaded = load(name, version);
  if (!loaded)
    return make_error("model " + name + " version " + std::to_string(version) +
                          " cannot be served: " + loaded.error_message(),
                      loaded.error_code() == errc::internal ? errc::internal : errc::invalid);
  std::lock_guard<std::mutex> l(mu_);
  entry& e = models_[name];
  e.pinned[version] = *loaded;
  while (e.pinned.size() > kPinnedPerModel) {  // the oldest other version goes
    auto victim = e.pinned.begin();
    if (victim->first == version) ++victim;
    e.pinned.erase(victim);
  }
  return served{*loaded, stage_of(e, version)};
}

std::vector<model_table::status_entry> model_table::serving() const {
  std::vector<status_entry> out;
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [name, e] : models_) {
    if (e.serving || !e.load_error.empty())
      out.push_back({e.serving, e.serving ? stage_of(e, e.serving->version) : "", e.load_error,
                     name, e.failed});
    for (auto& [v, m] : e.pinned)
      if (m != e.serving) out.push_back({m, "pinned (" + stage_of(e, v) + ")", "", name, 0});
  }
  return out;
}

}  // namespace tessera
