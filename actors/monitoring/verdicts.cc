#include "verdicts.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "alert_store.h"
#include "cluster/registry.h"
#include "definitions.h"
#include "time_util.h"

namespace tessera::monitoring {

namespace {

std::string fixed(double v, int digits = 4) {
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string sci(double v) {
  char b[48];
  std::snprintf(b, sizeof b, "%.2g", v);
  return b;
}

nlohmann::json figures(const quality_service::arm& a) {
  return {{"stage", a.stage},
          {"version", a.version},
          {"pairs", a.pairs},
          {"auc", a.q.point.auc},
          {"auc_low", a.q.auc.low},
          {"auc_high", a.q.auc.high},
          {"log_loss", a.q.point.log_loss},
          {"log_loss_low", a.q.log_loss.low},
          {"log_loss_high", a.q.log_loss.high},
          {"accuracy", a.q.point.accuracy}};
}

const quality_service::arm* find_arm(const quality_service::model_status& st,
                                     const std::string& stage, uint32_t version) {
  for (auto& a : st.arms)
    if (a.stage == stage && a.version == version) return &a;
  return nullptr;
}

// The alert `<name>.<model>.v<version>` of `severity`.
alert_spec spec_of(const std::string& name, const std::string& severity, const std::string& model,
                   uint32_t version) {
  alert_spec spec;
  spec.key = name + "." + model + ".v" + std::to_string(version);
  spec.name = name;
  spec.severity = severity;
  return spec;
}

struct head_view {
  uint32_t production = 0, canary = 0;
  int64_t promoted_us = 0;
  bool has_previous = false;
};

head_view read_head(const nlohmann::json& j) {
  head_view h;
  if (!j.is_object() || !j.contains("versions")) return h;
  for (auto& [v, e] : j["versions"].items()) {
    const std::string stage = e.value("stage", "");
    if (stage == "production") {
      h.production = static_cast<uint32_t>(std::stoul(v));
      h.promoted_us = e.value("promoted_us", int64_t{0});
    } else if (stage == "canary") {
      h.canary = static_cast<uint32_t>(std::stoul(v));
    }
  }
  h.has_previous = j.contains("production_history") && !j["production_history"].empty();
  return h;
}

// Whether the condition of alert `a` (not holding this round) is known to be over: its version
// no longer has the stage it was about, or there is enough data to say so. A monitor that has just
// (re)started knows nothing yet: it must not resolve what an earlier one raised (it would fire
// again once it knows, twice for one problem).
// The drift alert of one version and window: drift.<model>.v<N>, and with several windows declared
// drift.<model>.v<N>.<window> (e.g. .1h).
std::string drift_key(const model_def& model, uint32_t version, int64_t window_us) {
  std::string key = spec_of("drift", "ticket", model.name, version).key;
  if (model.monitor.drift_windows_us.size() > 1) key += "." + format_duration(window_us);
  return key;
}

bool judged_clear(const alert& a, const model_def& model, const quality_service::model_status& st,
                  uint32_t production, uint32_t canary) {
  const auto dot = a.spec.key.rfind(".v");
  if (dot == std::string::npos) return true;
  const uint32_t v = static_cast<uint32_t>(std::strtoul(a.spec.key.c_str() + dot + 2, nullptr, 10));
  const auto min_pairs = static_cast<uint64_t>(model.monitor.min_pairs);
  if (a.spec.name == "canary_worse") {
    if (v != canary) return true;
    const auto* can = find_arm(st, "canary", v);
    return can && can->pairs >= min_pairs && st.compared;
  }
  if (a.spec.name == "quality_slo") {
    if (v != production) return true;
    const auto* prod = find_arm(st, "production", v);
    return prod && prod->pairs >= min_pairs;
  }
  if (v != production && v != canary) return true;  // drift of a version no longer served
  bool version_seen = false;
  for (auto& d : st.drift) {
    if (d.version != v) continue;
    version_seen = true;
    if (drift_key(model, v, d.window_us) == a.spec.key)
      return d.tests >= 5;  // the alarm's n windows seen since (re)start
  }
  return version_seen;  // seen, but not this window: no longer declared
}

}  // namespace

std::vector<std::pair<std::string, uint32_t>> judge(const model_def& model,
                                                    const quality_service::model_status& st,
                                                    model_registry& registry, alert_store& alerts,
                                                    int64_t now_us) {
  std::vector<std::pair<std::string, uint32_t>> forget;
  const auto& mon = model.monitor;
  auto head = registry.current_head(model.name);
  if (!head) {
    spdlog::warn("monitor {}: cannot read the registry: {}", model.name, head.error_message());
    return forget;
  }
  const head_view h = read_head(head->first);
  const auto min_pairs = static_cast<uint64_t>(mon.min_pairs);
  std::set<std::string> holding;  // keys whose condition holds now
  auto raise = [&](alert_spec spec, const std::string& summary, const nlohmann::json& details) {
    holding.insert(spec.key);
    spec.group = model.name;
    if (auto a = alerts.observe(spec, true, now_us, summary, details); !a)
      spdlog::warn("monitor {}: alert {}: {}", model.name, spec.key, a.error_message());
  };
  const quality_service::arm* prod =
      h.production ? find_arm(st, "production", h.production) : nullptr;

  // The canary against production.
  const quality_service::arm* can = h.canary ? find_arm(st, "canary", h.canary) : nullptr;
  if (prod && can && prod->pairs >= min_pairs && can->pairs >= min_pairs) {
    const comparison c = compare(can->q, prod->q, mon.alpha);
    if (c.worse) {
      std::string summary = "canary v" + std::to_string(h.canary) + " of " + model.name +
                            " is worse than production v" + std::to_string(h.production) +
                            ": log loss " + fixed(can->q.point.log_loss) + " vs " +
                            fixed(prod->q.point.log_loss) + " (p " + sci(c.log_loss_p) + "), AUC " +
                            fixed(can->q.point.auc) + " vs " + fixed(prod->q.point.auc) + " (p " +
                            sci(c.auc_p) + "), over " + std::to_string(can->pairs) + " and " +
                            std::to_string(prod->pairs) + " labelled predictions";
      if (mon.rollback) {
        auto d = registry.demote_canary(model.name, h.canary);
        if (!d) {
          summary += "; the rollback failed: " + d.error_message();
        } else {
          summary += *d ? "; rolled back to candidate" : "; already rolled back";
          forget.emplace_back("canary", h.canary);
        }
      }
      raise(spec_of("canary_worse", "page", model.name, h.canary), summary,
            {{"canary", figures(*can)},
             {"production", figures(*prod)},
             {"log_loss_p", c.log_loss_p},
             {"auc_p", c.auc_p},
             {"alpha", mon.alpha},
             {"rolled_back", mon.rollback}});
    }
  }

  // Production against its objectives.
  if (prod && prod->pairs >= min_pairs) {
    const bool auc_low = mon.min_auc > 0 && prod->q.auc.high > 0 && prod->q.auc.high < mon.min_auc;
    const bool loss_high = mon.max_log_loss > 0 && prod->q.log_loss.low > mon.max_log_loss;
    if (auc_low || loss_high) {
      std::string summary =
          "production v" + std::to_string(h.production) + " of " + model.name +
          " misses its objective: " +
          (auc_low ? "live AUC " + fixed(prod->q.point.auc) + " [" + fixed(prod->q.auc.low) + ", " +
                         fixed(prod->q.auc.high) + "] below " + fixed(mon.min_auc, 3)
                   : "live log loss " + fixed(prod->q.point.log_loss) + " [" +
                         fixed(prod->q.log_loss.low) + ", " + fixed(prod->q.log_loss.high) +
                         "] above " + fixed(mon.max_log_loss, 3)) +
          " over " + std::to_string(prod->pairs) + " labelled predictions";
      const bool recent =
          h.promoted_us > 0 && now_us - h.promoted_us <= mon.rollback_within_us && h.has_previous;
      if (mon.rollback && recent) {
        auto r = registry.rollback_from(model.name, h.production);
        if (!r) {
          summary += "; the rollback failed: " + r.error_message();
        } else {
          summary +=
              *r ? "; rolled back to the previous production version" : "; already rolled back";
          forget.emplace_back("production", h.production);
        }
      } else if (mon.rollback) {
        summary += "; not rolled back (" +
                   std::string(h.has_previous ? "promoted more than rollback_within ago"
                                              : "no earlier production version") +
                   ")";
      }
      raise(spec_of("quality_slo", "page", model.name, h.production), summary,
            {{"production", figures(*prod)},
             {"min_auc", mon.min_auc},
             {"max_log_loss", mon.max_log_loss},
             {"rolled_back", mon.rollback && recent}});
    }
  }

  // Drift of a served version's inputs or score (persistent: k of the last n windows).
  for (auto& d : st.drift) {
    if (!d.has_reference || d.alarming.empty()) continue;
    if (d.version != h.production && d.version != h.canary) continue;
    std::string list;
    nlohmann::json values = nlohmann::json::array();
    for (auto& r : d.values) {
      if (std::find(d.alarming.begin(), d.alarming.end(), r.result.name) == d.alarming.end())
        continue;
      if (values.size() < 5)
        list += (list.empty() ? "" : "; ") + r.result.name + " PSI " + fixed(r.result.psi, 3) +
                " (needed " + fixed(r.result.threshold, 3) + ", " + fixed(100 * r.contribution, 0) +
                "% of the drift, mean shift " + fixed(r.result.mean_shift_sd, 2) + " sd)";
      values.push_back({{"name", r.result.name},
                        {"psi", r.result.psi},
                        {"threshold", r.result.threshold},
                        {"p_value", r.result.p_value},
                        {"js", r.result.js},
                        {"mean_shift_sd", r.result.mean_shift_sd},
                        {"contribution", r.contribution}});
    }
    alert_spec spec = spec_of("drift", "ticket", model.name, d.version);
    spec.key = drift_key(model, d.version, d.window_us);
    raise(spec,
          std::to_string(d.alarming.size()) + " value(s) of " + model.name + " v" +
              std::to_string(d.version) + " drifted from the training reference over the " +
              std::to_string(d.n) + " predictions of the " + format_duration(d.window_us) +
              " window to " + format_timestamp(d.at_us) + ": " + list,
          {{"version", d.version},
           {"window_us", d.window_us},
           {"at_us", d.at_us},
           {"predictions", d.n},
           {"values", values}});
  }

  // The model's other alerts, raised earlier (by this node or an earlier leader), resolve.
  auto open = alerts.list(false);
  if (!open) return forget;
  for (auto& a : *open) {
    if (a.spec.group != model.name || holding.count(a.spec.key)) continue;
    if (a.state != alert_state::pending && a.state != alert_state::firing &&
        notification_due(a).empty())
      continue;
    if (a.spec.name != "canary_worse" && a.spec.name != "quality_slo" && a.spec.name != "drift")
      continue;  // not ours
    if (!judged_clear(a, model, st, h.production, h.canary)) continue;
    if (auto r = alerts.observe(a.spec, false, now_us, a.summary, a.details); !r)
      spdlog::warn("monitor {}: alert {}: {}", model.name, a.spec.key, r.error_message());
  }
  return forget;
}

}  // namespace tessera::monitoring
