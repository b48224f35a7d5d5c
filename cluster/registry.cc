#include "registry.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "hash.h"
#include "retry.h"
#include "time_util.h"

namespace tessera {
namespace {

// A compare-and-swap of a model's head that lost to a concurrent writer reads the head again and
// retries at once (no pause: the loser's next read sees the winner's write).
constexpr retry_policy kCas{50};

// The failure of a compare-and-swap that lost: retried (errc::retryable) while kCas allows, and
// the caller's error when it lost every time.
error lost_cas(std::string message) {
  return make_error(std::move(message), errc::retryable);
}

std::string random_id() {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                          static_cast<uint64_t>(now_micros()));
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// An archived version leaves its A/B arm (production takes its slots).
void drop_archived_arms(nlohmann::json& head) {
  if (!head.contains("ab")) return;
  auto& arms = head["ab"];
  for (size_t a = arms.size(); a-- > 0;)
    if (head["versions"][std::to_string(arms[a]["version"].get<uint32_t>())]["stage"] == "archived")
      arms.erase(a);
  if (arms.empty()) head.erase("ab");
}

}  // namespace

uint64_t entity_slot(const std::string& model, const std::string& key) {
  uint64_t h = fnv1a_update(fnv1a_update(kFnvOffsetBasis, model), "\x1f");
  h = fnv1a_update(h, key);
  h ^= h >> 33;  // FNV's low bits are weak for short keys: mix before taking a fraction
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h >> 32;
}

uint64_t share_slots(double share) {
  if (!(share > 0)) return 0;
  if (share >= 1) return kSlots;
  return static_cast<uint64_t>(std::llround(share * static_cast<double>(kSlots)));
}

bool in_canary(const std::string& model, const std::string& key, double share) {
  return entity_slot(model, key) < share_slots(share);
}

bool in_ranges(const std::vector<slot_range>& ranges, uint64_t slot) {
  for (auto& [from, to] : ranges)
    if (slot >= from && slot < to) return true;
  return false;
}

std::vector<std::vector<slot_range>> arm_ranges(
    const std::vector<std::pair<uint32_t, std::vector<slot_range>>>& before,
    const std::vector<ab_arm>& arms) {
  std::vector<std::vector<slot_range>> out(arms.size());
  std::vector<uint64_t> missing(arms.size());
  std::vector<slot_range> taken;
  for (size_t a = 0; a < arms.size(); ++a) {
    uint64_t want = share_slots(arms[a].share);
    for (auto& [v, ranges] : before) {
      if (v != arms[a].version) continue;
      for (auto r : ranges) {  // keep the arm's slots, in order, up to its new share
        if (!want) break;
        r.second = std::min(r.second, r.first + want);
        want -= r.second - r.first;
        out[a].push_back(r);
        taken.push_back(r);
      }
    }
    missing[a] = want;
  }
  std::sort(taken.begin(), taken.end());
  std::vector<slot_range> free;  // the complement of what is kept, ascending
  uint64_t at = 0;
  for (auto& [from, to] : taken) {
    if (from > at) free.emplace_back(at, from);
    at = std::max(at, to);
  }
  if (at < kSlots) free.emplace_back(at, kSlots);
  size_t f = 0;
  for (size_t a = 0; a < arms.size(); ++a) {
    while (missing[a] && f < free.size()) {
      auto& [from, to] = free[f];
      const uint64_t n = std::min(missing[a], to - from);
      if (!out[a].empty() && out[a].back().second == from)
        out[a].back().second += n;  // adjacent: one range
      else
        out[a].emplace_back(from, from + n);
      from += n;
      missing[a] -= n;
      if (from == to) ++f;
    }
    std::sort(out[a].begin(), out[a].end());
  }
  return out;
}

bool valid_stage(const std::string& s) {
  return s == "candidate" || s == "shadow" || s == "canary" || s == "production" || s == "archived";
}

result<std::unique_ptr<model_registry>> model_registry::open(__jsCtx* js, int replicas) {
  std::unique_ptr<model_registry> r(new model_registry());
  auto kv = kv_bucket::open(js, {"TSR_MODELS", 0, replicas, 1});
  if (!kv) return make_error(kv.error_message());
  r->kv_ = std::move(kv.value());
  auto objects = object_store::open(js, {"TSR_OBJECTS", "tsr.obj.>", replicas, 512 * 1024});
  if (!objects) return make_error(objects.error_message());
  r->objects_ = std::move(objects.value());
  return r;
}

result<std::pair<nlohmann::json, uint64_t>> model_registry::head(const std::string& name) const {
  auto cur = kv_->get(name);
  if (!cur) return make_error(cur.error_message());
  if (!cur->has_value()) return std::pair{nlohmann::json(nullptr), uint64_t(0)};
  try {
    return std::pair{nlohmann::json::parse((*cur)->value), (*cur)->revision};
  } catch (const std::exception& e) {
    return make_error("registry head of " + name + " is unreadable: " + e.what());
  }
}

result<uint32_t> model_registry::register_version(const std::string& name, nlohmann::json meta,
                                                  const std::string& artifact) {
  const std::string id = random_id();
  auto ref = objects_->put("tsr.obj.model." + name + "." + id, artifact);
  if (!ref) return make_error(ref.error_message());
  meta["name"] = name;
  meta["record"] = id;
  meta["artifact"] = ref->to_json();
  meta["created"] = format_timestamp(now_micros());
  auto undo = [&](const std::string& why) -> result<uint32_t> {
    kv_->erase(name + "." + id);
    objects_->remove(*ref);
    return make_error(why);
  };
  auto w = kv_->put(name + "." + id, meta.dump());
  if (!w.ok) return undo("cannot store the model record: " + w.error);
  // Every error inside is re-made without its code, so only a lost swap is retried.
  auto registered = retry(kCas, [&]() -> result<uint32_t> {
    auto h = head(name);
    if (!h) return make_error(h.error_message());
    auto [j, rev] = std::move(h.value());
    if (j.is_null())
      j = {{"name", name},
           {"next_version", 1},
           {"versions", nlohmann::json::object()},
           {"production_history", nlohmann::json::array()}};
    const uint32_t v = j["next_version"].get<uint32_t>();
    j["next_version"] = v + 1;
    j["versions"][std::to_string(v)] = {
        {"record", id}, {"stage", "candidate"}, {"created", meta["created"]}};
    kv_write cw = rev == 0 ? kv_->create(name, j.dump()) : kv_->update(name, j.dump(), rev);
    if (cw.ok) return v;
    if (!cw.conflict) return make_error("cannot register " + name + ": " + cw.error);
    return lost_cas("cannot register " + name +
                    ": the registry kept changing under concurrent writers");
  });
  if (!registered) return undo(registered.error_message());
  return registered;
}

result<nlohmann::json> model_registry::list() const {
  auto keys = kv_->keys();
  if (!keys) return make_error(keys.error_message());
  auto out = nlohmann::json::array();
  std::sort(keys->begin(), keys->end());
  for (auto& k : *keys) {
    if (k.find('.') != std::string::npos) continue;  // records
    auto h = head(k);
    if (!h || h->first.is_null()) continue;
    auto& j = h->first;
    nlohmann::json m{{"name", k}, {"versions", nlohmann::json::array()}, {"production", nullptr}};
    for (auto& [v, e] : j["versions"].items()) {
      m["versions"].push_back({{"version", std::stoul(v)},
                               {"stage", e["stage"]},
                               {"created", e["created"]},
                               {"share", e.value("share", 0.0)}});
      if (e["stage"] == "production") m["production"] = std::stoul(v);
    }
    std::sort(m["versions"].begin(), m["versions"].end(),
              [](auto& a, auto& b) { return a["version"] < b["version"]; });
    if (j.contains("ab")) {
      m["ab"] = nlohmann::json::array();
      for (auto& a : j["ab"]) m["ab"].push_back({{"version", a["version"]}, {"share", a["share"]}});
    }
    out.push_back(std::move(m));
  }
  return out;
}

result<uint32_t> model_registry::resolve(const nlohmann::json& j, const std::string& name,
                                         uint32_t version) const {
  if (j.is_null()) return make_error("unknown model '" + name + "'", errc::not_found);
  if (version != 0) {
    if (!j["versions"].contains(std::to_string(version)))
      return make_error("model " + name + " has no version " + std::to_string(version) +
                            " (latest: " + std::to_string(j["next_version"].get<uint32_t>() - 1) +
                            ")",
                        errc::not_found);
    return version;
  }
  uint32_t latest = 0;
  for (auto& [v, e] : j["versions"].items()) {
    if (e["stage"] == "production") return static_cast<uint32_t>(std::stoul(v));
    latest = std::max<uint32_t>(latest, static_cast<uint32_t>(std::stoul(v)));
  }
  if (!latest) return make_error("model " + name + " has no versions", errc::not_found);
  return latest;
}

result<nlohmann::json> model_registry::show(const std::string& name, uint32_t version) const {
  auto h = head(name);
  if (!h) return make_error(h.error_message());
  auto v = resolve(h->first, name, version);
  if (!v) return v.failure();
  auto& e = h->first["versions"][std::to_string(*v)];
  auto rec = kv_->get(name + "." + e["record"].get<std::string>());
  if (!rec) return make_error(rec.error_message());
  if (!rec->has_value())
    return make_error("model " + name + " version " + std::to_string(*v) +
                      ": its record is missing");
  nlohmann::json j = nlohmann::json::parse((*rec)->value, nullptr, false);
  if (j.is_discarded())
    return make_error("model " + name + " version " + std::to_string(*v) +
                      ": its record is unreadable");
  j["version"] = *v;
  j["stage"] = e["stage"];
  if (e.contains("share")) j["share"] = e["share"];
  j["production_history"] = h->first["production_history"];
  return j;
}

result<std::string> model_registry::artifact(const std::string& name, uint32_t version) const {
  auto j = show(name, version);
  if (!j) return make_error(j.error_message());
  auto ref = object_ref::from_json((*j)["artifact"]);
  if (!ref) return make_error(ref.error_message());
  return objects_->get(
      *ref, "artifact of " + name + " version " + std::to_string((*j)["version"].get<uint32_t>()));
}

status model_registry::promote(const std::string& name, uint32_t version, const std::string& stage,
                               double share) {
  if (!valid_stage(stage))
    return make_error(
        "unknown stage '" + stage + "' (candidate, shadow, canary, production, archived)",
        errc::invalid);
  if (stage != "canary" && share >= 0)
    return make_error("a share is for a canary only (--stage canary --share S)", errc::invalid);
  if (stage == "canary" && share < 0) share = 0.1;
  if (stage == "canary" && !(share >= 0 && share <= 1))
    return make_error("share " + std::to_string(share) + " is outside [0, 1]", errc::invalid);
  return retry(kCas, [&]() -> status {
    auto h = head(name);
    if (!h) return make_error(h.error_message());
    auto [j, rev] = std::move(h.value());
    auto v = resolve(j, name, version);
    if (!v) return v.failure();
    const std::string key = std::to_string(*v);
    if (stage == "canary") {
      if (j.contains("ab") && !j["ab"].empty())
        return make_error("model " + name +
                              " has A/B arms: a model has a canary or arms, not both (end the "
                              "A/B test first: tessera models ab " +
                              name + " --clear)",
                          errc::invalid);
      if (j["versions"][key]["stage"] == "production")
        return make_error("version " + key + " is in production: a canary is another version",
                          errc::invalid);
      j["versions"][key]["share"] = share;
    } else {
      j["versions"][key].erase("share");
    }
    if (j["versions"][key]["stage"] == stage && stage != "canary") return ok_status();
    for (auto& [other, e] : j["versions"].items()) {
      if (other == key || e["stage"] != stage) continue;
      if (stage == "production") {
        e["stage"] = "archived";
        j["production_history"].push_back(std::stoul(other));
      } else if (stage == "canary") {
        e["stage"] = "candidate";  // one canary at a time
        e.erase("share");
      }
    }
    j["versions"][key]["stage"] = stage;
    if (stage == "production") j["versions"][key]["promoted_us"] = now_micros();
    drop_archived_arms(j);
    auto w = kv_->update(name, j.dump(), rev);
    if (w.ok) return ok_status();
    if (!w.conflict) return make_error("cannot promote " + name + ": " + w.error);
    return lost_cas("cannot promote " + name +
                    ": the registry kept changing under concurrent writers; retry");
  });
}

status model_registry::set_arms(const std::string& name, const std::vector<ab_arm>& arms) {
  double sum = 0;
  for (size_t a = 0; a < arms.size(); ++a) {
    const std::string v = std::to_string(arms[a].version);
    if (!(arms[a].share >= 0 && arms[a].share <= 1))
      return make_error(
          "the share of arm " + v + " (" + std::to_string(arms[a].share) + ") is outside [0, 1]",
          errc::invalid);
    for (size_t b = 0; b < a; ++b)
      if (arms[b].version == arms[a].version)
        return make_error("version " + v + " has two arms: one arm per version", errc::invalid);
    sum += arms[a].share;
  }
  if (sum > 1 + 1e-9)
    return make_error("the arms' shares sum to " + std::to_string(sum) +
                          ", over 1 (production answers for the rest)",
                      errc::invalid);
  return retry(kCas, [&]() -> status {
    auto h = head(name);
    if (!h) return make_error(h.error_message());
    auto [j, rev] = std::move(h.value());
    if (j.is_null()) return make_error("unknown model '" + name + "'", errc::not_found);
    for (auto& arm : arms) {
      auto v = resolve(j, name, arm.version);
      if (!v) return v.failure();
      const std::string stage = j["versions"][std::to_string(arm.version)].value("stage", "");
      if (stage == "archived")
        return make_error("version " + std::to_string(arm.version) +
                              " is archived; make it a candidate first (tessera models promote " +
                              name + " " + std::to_string(arm.version) + " --stage candidate)",
                          errc::invalid);
      if (stage == "canary")
        return make_error("version " + std::to_string(arm.version) +
                              " is the canary: a model has a canary or arms, not both",
                          errc::invalid);
    }
    for (auto& [v, e] : j["versions"].items())
      if (e.value("stage", "") == "canary" && !arms.empty())
        return make_error("model " + name + " has a canary (version " + v +
                              "): a model has a canary or arms, not both; promote it or make it "
                              "a candidate first",
                          errc::invalid);
    std::vector<std::pair<uint32_t, std::vector<slot_range>>> before;
    if (j.contains("ab"))
      for (auto& a : j["ab"])
        before.emplace_back(a["version"].get<uint32_t>(),
                            a["ranges"].get<std::vector<slot_range>>());
    const auto ranges = arm_ranges(before, arms);
    if (arms.empty()) {
      j.erase("ab");
    } else {
      j["ab"] = nlohmann::json::array();
      for (size_t a = 0; a < arms.size(); ++a)
        j["ab"].push_back(
            {{"version", arms[a].version}, {"share", arms[a].share}, {"ranges", ranges[a]}});
    }
    auto w = kv_->update(name, j.dump(), rev);
    if (w.ok) return ok_status();
    if (!w.conflict) return make_error("cannot set the arms of " + name + ": " + w.error);
    return lost_cas("cannot set the arms of " + name +
                    ": the registry kept changing under concurrent writers; retry");
  });
}

result<uint32_t> model_registry::rollback(const std::string& name) {
  return roll_back(name, 0);
}

result<bool> model_registry::rollback_from(const std::string& name, uint32_t production) {
  auto r = roll_back(name, production);
  if (!r) return r.failure();
  return *r != 0;
}

result<uint32_t> model_registry::roll_back(const std::string& name, uint32_t only_from) {
  return retry(kCas, [&]() -> result<uint32_t> {
    auto h = head(name);
    if (!h) return make_error(h.error_message());
    auto [j, rev] = std::move(h.value());
    if (j.is_null()) return make_error("unknown model '" + name + "'", errc::not_found);
    if (only_from != 0) {
      const std::string from = std::to_string(only_from);
      if (!j["versions"].contains(from) || j["versions"][from]["stage"] != "production") return 0u;
    }
    auto& hist = j["production_history"];
    if (hist.empty())
      return make_error("model " + name + " has no earlier production version to roll back to",
                        errc::invalid);
    const uint32_t back = hist.back().get<uint32_t>();
    hist.erase(hist.size() - 1);
    for (auto& [v, e] : j["versions"].items())
      if (e["stage"] == "production") e["stage"] = "archived";
    j["versions"][std::to_string(back)]["stage"] = "production";
    drop_archived_arms(j);
    auto w = kv_->update(name, j.dump(), rev);
    if (w.ok) return back;
    if (!w.conflict) return make_error("cannot roll back " + name + ": " + w.error);
    return lost_cas("cannot roll back " + name +
                    ": the registry kept changing under concurrent writers; retry");
  });
}

result<bool> model_registry::demote_canary(const std::string& name, uint32_t version) {
  return retry(kCas, [&]() -> result<bool> {
    auto h = head(name);
    if (!h) return make_error(h.error_message());
    auto [j, rev] = std::move(h.value());
    const std::string key = std::to_string(version);
    if (j.is_null() || !j["versions"].contains(key) || j["versions"][key]["stage"] != "canary")
      return false;
    j["versions"][key]["stage"] = "candidate";
    j["versions"][key].erase("share");
    auto w = kv_->update(name, j.dump(), rev);
    if (w.ok) return true;
    if (!w.conflict) return make_error("cannot demote the canary of " + name + ": " + w.error);
    return lost_cas("cannot demote the canary of " + name +
                    ": the registry kept changing under concurrent writers; retry");
  });
}

}  // namespace tessera
