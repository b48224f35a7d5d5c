#include "state_store.h"

#include <nlohmann/json.hpp>

#include "cluster/kv.h"
#include "cluster/objects.h"
#include "time_util.h"

namespace tessera {

namespace {
constexpr int kSwapAttempts = 5;
std::string subject_of(const std::string& model) {
  return "tsr.monstate." + model;
}
}  // namespace

result<std::unique_ptr<monitor_state_store>> monitor_state_store::open(__jsCtx* js, int replicas) {
  std::unique_ptr<monitor_state_store> s(new monitor_state_store());
  auto objects = object_store::open(js, {"TSR_MONSTATE", "tsr.monstate.>", replicas, 512 * 1024});
  if (!objects) return make_error("monitor states: " + objects.error_message());
  s->objects_ = std::move(objects.value());
  auto kv = kv_bucket::open(js, {"TSR_MONITOR", 0, replicas, 1});
  if (!kv) return make_error("monitor states: " + kv.error_message());
  s->manifests_ = std::move(kv.value());
  return s;
}

monitor_state_store::~monitor_state_store() = default;

status monitor_state_store::save(const std::string& model, const std::string& bytes,
                                 const std::string& node) {
  auto ref = objects_->put(subject_of(model), bytes);
  if (!ref) return make_error("cannot store the state of " + model + ": " + ref.error_message());
  const std::string manifest =
      nlohmann::json{{"ref", ref->to_json()}, {"node", node}, {"at", now_micros()}}.dump();
  for (int attempt = 0; attempt < kSwapAttempts; ++attempt) {
    auto cur = manifests_->get(model);
    if (!cur) {
      objects_->remove(*ref);
      return make_error("cannot read the state manifest of " + model + ": " + cur.error_message());
    }
    const kv_write w = cur->has_value() ? manifests_->update(model, manifest, (*cur)->revision)
                                        : manifests_->create(model, manifest);
    if (w.ok) {
      if (cur->has_value()) {  // the previous state's chunks: no longer referenced
        auto old = nlohmann::json::parse((*cur)->value, nullptr, false);
        if (old.is_object() && old.contains("ref"))
          if (auto r = object_ref::from_json(old["ref"])) objects_->remove(*r);
      }
      return ok_status();
    }
    if (!w.conflict) {
      objects_->remove(*ref);
      return make_error("cannot install the state manifest of " + model + ": " + w.error);
    }
  }
  objects_->remove(*ref);
  return make_error("the state manifest of " + model + " kept changing under concurrent writers",
                    errc::retryable);
}

result<std::optional<std::string>> monitor_state_store::load(const std::string& model) const {
  auto cur = manifests_->get(model);
  if (!cur)
    return make_error("cannot read the state manifest of " + model + ": " + cur.error_message());
  if (!cur->has_value()) return std::optional<std::string>();
  auto j = nlohmann::json::parse((*cur)->value, nullptr, false);
  if (!j.is_object() || !j.contains("ref"))
    return make_error("the state manifest of " + model + " is malformed", errc::invalid);
  auto ref = object_ref::from_json(j["ref"]);
  if (!ref) return make_error("the state manifest of " + model + ": " + ref.error_message());
  auto blob = objects_->get(*ref, "the saved state of " + model);
  if (!blob) return make_error(blob.error_message());
  return std::optional<std::string>(std::move(blob.value()));
}

}  // namespace tessera
