// The model registry, shared by every node: metadata in the JetStream KV bucket TSR_MODELS and
// TorchScript artifacts as chunked objects on TSR_OBJECTS (cluster/objects.h).
//
// Per model name, one *head* key `<name>` holds what changes: the next version number, every
// version's stage (candidate, shadow, canary, production, archived) and the production
// history. Each version's *record* (`<name>.<record id>`: lineage, metrics, reference
// distributions, inputs, artifact reference) is written once, before the head names it. So:
//   - registering is atomic: a version exists once the head's compare-and-swap names it; a
//     failed or interrupted registration leaves an unnamed record (never listed) and its chunks
//     are deleted;
//   - promote and rollback are one compare-and-swap of the head: atomic; concurrent ones are
//     applied one after another (each retries on a revision conflict), none is lost.
// Thread safety: blocking NATS calls, thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kv.h"
#include "objects.h"
#include "tessera/result.h"

struct __jsCtx;

namespace tessera {

bool valid_stage(const std::string& stage);  // candidate shadow canary production archived
// Whether `key` of model `model` falls in a canary of `share`: a stable hash of both, so the
// same entity gets the same answer until the share changes, and a larger share keeps every
// entity a smaller one had (only the difference moves).
bool in_canary(const std::string& model, const std::string& key, double share);

// Label entities are split between versions by a *slot*: a stable hash of model and entity key
// into [0, 2^32). A canary owns the slots [0, share * 2^32); A/B arms own the slot ranges the
// registry stored for them (arm_ranges), production the rest.
constexpr uint64_t kSlots = uint64_t(1) << 32;
uint64_t entity_slot(const std::string& model, const std::string& key);
uint64_t share_slots(double share);                // share in [0, 1] as a number of slots
using slot_range = std::pair<uint64_t, uint64_t>;  // [from, to)

// An A/B arm: a version answering for `share` of the label entities.
struct ab_arm {
  uint32_t version = 0;
  double share = 0;
};
// The slot ranges of `arms` given the ranges the arms had before (`before`, by version), moving
// as few entities as can be: an arm that stays keeps its slots (shrinking gives back the end of
// them, growing takes free ones, lowest first), an arm that goes frees its slots, a new arm takes
// free ones. REQUIRES: shares in [0, 1] summing to at most 1.
std::vector<std::vector<slot_range>> arm_ranges(
    const std::vector<std::pair<uint32_t, std::vector<slot_range>>>& before,
    const std::vector<ab_arm>& arms);
// Whether `slot` falls in one of `ranges`.
bool in_ranges(const std::vector<slot_range>& ranges, uint64_t slot);

class model_registry {
 public:
  static result<std::unique_ptr<model_registry>> open(__jsCtx* js, int replicas);

  // Stores the artifact and registers a new version (stage candidate) with `meta` (JSON
  // object: lineage, metrics, inputs, ...). Returns the version number.
  result<uint32_t> register_version(const std::string& name, nlohmann::json meta,
                                    const std::string& artifact);
  // Every model: {name, versions: [{version, stage, created}], production}.
  result<nlohmann::json> list() const;
  // One version's record plus its stage; version 0 = the production version, else the latest.
  result<nlohmann::json> show(const std::string& name, uint32_t version) const;
  result<std::string> artifact(const std::string& name, uint32_t version) const;
  // Moves `version` to `stage`. To production: the current production version is archived
  // and remembered for rollback. At most one version is in canary, and one in production.
  // To canary: `share` of the label entities (in [0, 1]; < 0: 0.1); one canary at a time.
  status promote(const std::string& name, uint32_t version, const std::string& stage,
                 double share = -1);
  // Makes `arms` the model's A/B arms (empty: ends the A/B test; production answers for all).
  // Each arm's version must exist (not_found) and be a candidate, shadow or production version
  // (invalid: archived, or the canary: a model has a canary or arms, not both); shares in [0, 1]
  // summing to at most 1 (invalid); one arm per version. The rest of the entities go to
  // production. Sticky: see arm_ranges. Stored in the head as "ab": [{version, share, ranges}].
  status set_arms(const std::string& name, const std::vector<ab_arm>& arms);
  // Production goes back to the previous production version; the current one is archived.
  // Returns the version now in production.
  result<uint32_t> rollback(const std::string& name);
  // Conditional forms for automatic rollback (actors/monitoring): each is one compare-and-swap
  // that happens only while the model is as the caller saw it, so that several nodes reaching
  // the same verdict change the registry once. True when this call made the change, false when
  // the model had already moved on (the canary is no longer `version`; production is no longer
  // `production`).
  result<bool> demote_canary(const std::string& name, uint32_t version);
  result<bool> rollback_from(const std::string& name, uint32_t production);
  // The model's head as stored now (null when there is no such model) and its KV revision.
  result<std::pair<nlohmann::json, uint64_t>> current_head(const std::string& name) const {
    return head(name);
  }
  // Every change of the registry as it happens, starting with the current keys (heads are keys
  // without a '.'; records have one). For serving nodes that follow promotions.
  result<std::unique_ptr<kv_bucket::watcher>> watch() const { return kv_->watch_all(); }

 private:
  model_registry() = default;
  result<std::pair<nlohmann::json, uint64_t>> head(const std::string& name) const;
  // rollback(); with only_from != 0, only while that version is in production (0 otherwise).
  result<uint32_t> roll_back(const std::string& name, uint32_t only_from);
  result<uint32_t> resolve(const nlohmann::json& head, const std::string& name,
                           uint32_t version) const;
  std::unique_ptr<kv_bucket> kv_;
  std::unique_ptr<object_store> objects_;
};

}  // namespace tessera
