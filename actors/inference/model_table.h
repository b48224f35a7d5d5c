// The model versions this node serves, following the registry: a watcher (one ordered KV
// consumer on TSR_MODELS) sees every head change; the versions a head puts in production,
// canary, A/B arms and shadow are loaded and warmed (serving_model.h) before they take traffic,
// then swapped in atomically; requests holding an old one finish on it. A version that fails to
// load leaves the previous one serving; serving() says why. Versions asked for by number (pinned)
// are loaded on first use and kept (a few per model).
// Lifecycle: owned by the inference service; start() loads every version in use at start (so a
// node serves from its first request), stop() joins the watcher.
// Thread safety: acquire(), refresh() and serving() from any thread; loads run on the watcher
// thread or on the caller's (callers load only off the kj and libnats threads: may_load).
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/kv.h"
#include "cluster/registry.h"
#include "serving_model.h"

namespace tessera {

class model_registry;

class model_table {
 public:
  model_table(std::shared_ptr<const definitions> defs, model_registry* registry,
              batcher::options batching);
  ~model_table();
  status start();
  void stop();

  // A version answering for the label entities whose slot (entity_slot) is in `ranges`: the
  // canary (one arm, slots [0, share)) or an A/B arm (the ranges the registry stored).
  struct arm {
    std::shared_ptr<const serving_model> model;
    std::string stage;  // what its answers say: "canary" or "ab"
    std::vector<slot_range> ranges;
  };
  // What a call is served by: the version asked for (production, or pinned), with production's
  // arms (canary or A/B; the rest of the entities get `model`) and shadows (scored on the same
  // vectors, never answered) when no version was pinned.
  struct served {
    std::shared_ptr<const serving_model> model;
    std::string stage;  // the version's stage when acquired
    std::vector<arm> arms;
    std::vector<std::shared_ptr<const serving_model>> shadows;
  };
  // version 0: the production version. Errors: not_found (unknown model; no production version,
  // with the stages that exist; unknown version), retryable (not loaded yet and !may_load),
  // invalid (the version cannot be served: why).
  result<served> acquire(const std::string& name, uint32_t version, bool may_load);
  // Whether acquire(name, version, false) would have to load (pinned, not loaded yet).
  bool needs_load(const std::string& name, uint32_t version) const;
  // Reads the model's head from the registry now (blocking) instead of waiting for the watch:
  // for a model this node has not seen yet (registered a moment ago).
  void refresh(const std::string& name);

  struct status_entry {
    std::shared_ptr<const serving_model> model;  // null: nothing of the model serves
    std::string stage;
    double share = 0;        // canary or A/B arm
    std::string arm;         // "canary", "ab" (an A/B arm, production too), else empty
    std::string load_error;  // of a version the head wants and this node could not load
    std::string name;
    uint32_t failed_version = 0;
  };
  std::vector<status_entry> serving() const;

  // An A/B arm as the registry head states it.
  struct entry_ab {
    uint32_t version = 0;
    double share = 0;
    std::vector<slot_range> ranges;
  };

 private:
  struct entry {
    nlohmann::json head;    // the registry head as last seen
    uint64_t revision = 0;  // its KV revision: an older one (the watch behind a refresh) is ignored
    // What the head wants.
    uint32_t production = 0, canary = 0;
    double canary_share = 0;
    std::vector<uint32_t> shadows;
    std::vector<entry_ab> ab;  // the A/B arms
    // What is loaded here: every version in use or pinned (production may lag the head's while
    // the new one loads, and stays the old one when it fails to load).
    std::map<uint32_t, std::shared_ptr<const serving_model>> loaded;
    uint32_t serving = 0;  // the production version serving
    std::string load_error;
    uint32_t failed = 0;  // the version load_error is about
  };
  void on_update(const kv_bucket::watcher::update& u);
  void on_head(const std::string& name, const nlohmann::json& head, uint64_t revision);
  result<std::shared_ptr<const serving_model>> load(const std::string& name, uint32_t version);
  std::string stage_of(const entry& e, uint32_t version) const;
  void watch_loop();

  std::shared_ptr<const definitions> defs_;
  model_registry* registry_;
  const batcher::options batching_;
  mutable std::mutex mu_;  // protects models_
  std::map<std::string, entry> models_;
  std::mutex load_mu_;  // one load at a time
  std::atomic<bool> stop_{false};
  std::unique_ptr<kv_bucket::watcher> watcher_;
  std::thread thread_;
};

}  // namespace tessera
