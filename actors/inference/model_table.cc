#include "model_table.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "cluster/registry.h"

namespace tessera {
namespace {

using model_table_ab = model_table::entry_ab;
constexpr size_t kPinnedPerModel = 4;  // loaded versions kept beyond those in use

struct wanted {
  uint32_t production = 0, canary = 0;
  double share = 0;
  std::vector<uint32_t> shadows;
  std::vector<model_table_ab> ab;
};

wanted wanted_by(const nlohmann::json& head) {
  wanted w;
  if (!head.is_object() || !head.contains("versions")) return w;
  if (head.contains("ab"))
    for (auto& a : head["ab"]) {
      model_table_ab arm;
      arm.version = a.value("version", 0u);
      arm.share = a.value("share", 0.0);
      if (a.contains("ranges")) arm.ranges = a["ranges"].get<std::vector<slot_range>>();
      if (arm.version) w.ab.push_back(std::move(arm));
    }
  for (auto& [v, e] : head["versions"].items()) {
    const std::string stage = e.value("stage", "");
    const auto n = static_cast<uint32_t>(std::stoul(v));
    if (stage == "production") w.production = n;
    if (stage == "canary") w.canary = n, w.share = e.value("share", 0.1);
    if (stage == "shadow") w.shadows.push_back(n);
  }
  return w;
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
  const wanted w = wanted_by(head);
  std::vector<uint32_t> to_load;
  {
    std::lock_guard<std::mutex> l(mu_);
    entry& e = models_[name];
    if (revision && revision < e.revision) return;
    e.revision = std::max(e.revision, revision);
    e.head = head;
    e.production = w.production;
    e.canary = w.canary;
    e.canary_share = w.share;
    e.shadows = w.shadows;
    e.ab = w.ab;
    if (w.production == 0) e.serving = 0;
    if (w.production && e.loaded.count(w.production)) e.serving = w.production;
    std::set<uint32_t> in_use{w.production, w.canary, e.serving};
    in_use.insert(w.shadows.begin(), w.shadows.end());
    for (auto& a : w.ab) in_use.insert(a.version);
    for (uint32_t v : in_use)
      if (v && !e.loaded.count(v)) to_load.push_back(v);
    // Production first: it is what most requests wait for.
    std::stable_partition(to_load.begin(), to_load.end(),
                          [&](uint32_t v) { return v == w.production; });
    // Versions no longer in use stay loaded for pinned calls, a few at most (oldest go first).
    size_t extra = 0;
    for (auto& [v, m] : e.loaded) extra += !in_use.count(v);
    for (auto it = e.loaded.begin(); it != e.loaded.end() && extra > kPinnedPerModel;)
      if (!in_use.count(it->first))
        it = e.loaded.erase(it), --extra;
      else
        ++it;
  }
  for (uint32_t v : to_load) {
    auto loaded = load(name, v);
    std::lock_guard<std::mutex> l(mu_);
    entry& e = models_[name];
    if (!loaded) {
      e.load_error = "version " + std::to_string(v) + " not served: " + loaded.error_message();
      e.failed = v;
      spdlog::error("model {}: {}; {}", name, e.load_error,
                    e.serving ? "version " + std::to_string(e.serving) + " keeps serving"
                              : std::string("nothing replaces it"));
      continue;
    }
    e.loaded[v] = std::move(loaded.value());
    if (e.failed == v) e.load_error.clear(), e.failed = 0;
    if (v == e.production) {
      e.serving = v;
      spdlog::info("model {}: version {} serving", name, v);
    } else {
      spdlog::info("model {}: version {} loaded ({})", name, v, stage_of(e, v));
    }
  }
}

result<std::shared_ptr<const serving_model>> model_table::load(const std::string& name,
                                                               uint32_t version) {
  std::lock_guard<std::mutex> l(load_mu_);
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
  return !e.loaded.count(version) && e.head.is_object() &&
         e.head["versions"].contains(std::to_string(version));
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
      if (e.production == 0) {
        std::string stages;
        for (auto& [v, x] : e.head["versions"].items())
          stages += (stages.empty() ? "" : ", ") + v + " " + x.value("stage", "?");
        return make_error("model " + name + " has no production version (versions: " + stages +
                              "); promote one: tessera models promote " + name +
                              " VERSION production",
                          errc::not_found);
      }
      if (!e.serving) {
        if (e.failed == e.production)
          return make_error("model " + name + ": " + e.load_error, errc::invalid);
        return make_error("model " + name + ": version " + std::to_string(e.production) +
                              " is loading on this node; retry",
                          errc::retryable);
      }
      served s{e.loaded.at(e.serving), stage_of(e, e.serving), {}, {}};
      if (auto c = e.loaded.find(e.canary); e.canary && c != e.loaded.end())
        s.arms.push_back({c->second, "canary", {{0, share_slots(e.canary_share)}}});
      // An arm not loaded here yet: its entities get production meanwhile.
      for (auto& a : e.ab)
        if (auto m = e.loaded.find(a.version); m != e.loaded.end())
          s.arms.push_back({m->second, "ab", a.ranges});
      for (uint32_t v : e.shadows)
        if (auto sh = e.loaded.find(v); sh != e.loaded.end()) s.shadows.push_back(sh->second);
      return s;
    }
    if (!e.head["versions"].contains(std::to_string(version)))
      return make_error("model " + name + " has no version " + std::to_string(version),
                        errc::not_found);
    if (auto p = e.loaded.find(version); p != e.loaded.end()) {
      served s{p->second, stage_of(e, version), {}, {}};
      if (version == e.serving)  // production, pinned by the entry node: shadowed here too
        for (uint32_t v : e.shadows)
          if (auto sh = e.loaded.find(v); sh != e.loaded.end()) s.shadows.push_back(sh->second);
      return s;
    }
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
  e.loaded.emplace(version, *loaded);
  return served{e.loaded.at(version), stage_of(e, version), {}, {}};
}

std::vector<model_table::status_entry> model_table::serving() const {
  std::vector<status_entry> out;
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [name, e] : models_) {
    bool error_shown = false;
    for (auto& [v, m] : e.loaded) {
      status_entry s{m, stage_of(e, v), 0, "", "", name, 0};
      if (v == e.serving && v != e.production)
        s.stage += " (serving until " + std::to_string(e.production) + " loads)";
      if (v == e.canary) s.share = e.canary_share, s.arm = "canary";
      bool arm = false;
      for (auto& a : e.ab)
        if (a.version == v) {
          arm = true;
          s.share = a.share, s.arm = "ab";
          if (v != e.serving) s.stage = "ab";
        }
      if (v != e.serving && v != e.canary && !arm &&
          std::find(e.shadows.begin(), e.shadows.end(), v) == e.shadows.end())
        s.stage = "pinned (" + s.stage + ")";
      if (v == e.serving && !e.load_error.empty()) {
        s.load_error = e.load_error, s.failed_version = e.failed;
        error_shown = true;
      }
      out.push_back(std::move(s));
    }
    if (!e.load_error.empty() && !error_shown)
      out.push_back({nullptr, stage_of(e, e.failed), 0, "", e.load_error, name, e.failed});
  }
  return out;
}

}  // namespace tessera
