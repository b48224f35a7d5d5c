#include "model_overview.h"

#include <algorithm>

#include "rules.h"
#include "time_util.h"

namespace tessera {

nlohmann::json describe_definition(const model_def& m) {
  nlohmann::json j{{"label", m.label},
                   {"kind", m.kind},
                   {"features", m.features},
                   {"log_sample", m.log_sample},
                   {"shadow_sample", m.shadow_sample},
                   {"max_feature_age", m.max_feature_age_us > 0
                                           ? nlohmann::json(format_duration(m.max_feature_age_us))
                                           : nlohmann::json(nullptr)}};
  if (!m.fallback.any())
    j["fallback"] = nullptr;
  else if (m.fallback.has_constant)
    j["fallback"] = {{"constant", m.fallback.constant},
                     {"reserve", format_duration(m.fallback.reserve_us)}};
  else
    j["fallback"] = {{"model", m.fallback.model},
                     {"reserve", format_duration(m.fallback.reserve_us)}};
  if (!m.rules) {
    j["rules"] = nullptr;
  } else {
    const rules_spec& rs = m.rules->spec();
    nlohmann::json r{{"version", m.rules->version()}, {"on_error", rs.on_error}};
    if (!rs.lua.empty()) {
      r["lua"] = rs.lua;
      r["max_instructions"] = rs.max_instructions;
      r["budget"] = format_duration(rs.budget_us);
    } else {
      r["list"] = nlohmann::json::array();
      for (auto& it : rs.items) {
        nlohmann::json e{{"name", it.name}, {"decision", it.decision}};
        if (!it.when.empty()) e["when"] = it.when;
        if (it.top_k > 0) e["top_k"] = it.top_k;
        r["list"].push_back(std::move(e));
      }
    }
    j["rules"] = std::move(r);
  }
  nlohmann::json upstream = nlohmann::json::array();
  for (auto& f : m.features)
    if (auto u = chained_model(f); !u.empty()) upstream.push_back(u);
  j["takes_scores_of"] = upstream;
  return j;
}

nlohmann::json describe_model(const std::string& name, const nlohmann::json& head,
                              const nlohmann::json& definition) {
  nlohmann::json j{{"name", name},
                   {"production", nullptr},
                   {"versions", nlohmann::json::array()},
                   {"canary", nullptr},
                   {"shadows", nlohmann::json::array()},
                   {"ab", nlohmann::json::array()},
                   {"production_history", nlohmann::json::array()},
                   {"definition", definition}};
  if (!head.is_object()) return j;
  for (auto& [v, e] : head["versions"].items()) {
    const auto n = static_cast<uint32_t>(std::stoul(v));
    const std::string stage = e.value("stage", "");
    nlohmann::json ve{{"version", n}, {"stage", stage}, {"created", e.value("created", "")}};
    if (stage == "canary") {
      ve["share"] = e.value("share", 0.1);
      j["canary"] = {{"version", n}, {"share", ve["share"]}};
    }
    if (stage == "production") j["production"] = n;
    if (stage == "shadow") j["shadows"].push_back(n);
    j["versions"].push_back(std::move(ve));
  }
  std::sort(j["versions"].begin(), j["versions"].end(),
            [](auto& a, auto& b) { return a["version"] < b["version"]; });
  if (head.contains("production_history")) j["production_history"] = head["production_history"];
  double arms = 0;
  if (head.contains("ab"))
    for (auto& a : head["ab"]) {
      j["ab"].push_back({{"version", a["version"]}, {"share", a["share"]}});
      arms += a.value("share", 0.0);
    }
  // The share production answers for: what the canary or the arms leave.
  double prod = 1 - arms;
  if (j["canary"].is_object()) prod -= j["canary"]["share"].get<double>();
  j["production_share"] = j["production"].is_null() ? 0.0 : std::max(0.0, prod);
  return j;
}

}  // namespace tessera
