// Objectives (slo.h) and skew sampling of the quality service (quality_service.h).
#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "alert_store.h"
#include "cluster/cluster_view.h"
#include "quality_monitored.h"
#include "quality_service.h"
#include "time_util.h"

namespace tessera {

void quality_service::background() {
  pthread_setname_np(pthread_self(), "tsr-monitor-bg");
  std::vector<int64_t> next(models_.size(), 0);
  auto next_slo = std::chrono::steady_clock::now();
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if ((d_.serving || d_.freshness) && std::chrono::steady_clock::now() >= next_slo) {
      next_slo += std::chrono::seconds(10);
      evaluate_slos();
    }
    if (d_.skew && (!d_.view || d_.view->leader() == d_.node_id)) sample_skew(next);
  }
}

void quality_service::evaluate_slos() {
  const int64_t now = now_micros();
  const auto served = d_.serving ? d_.serving() : std::vector<deps::served_counters>{};
  for (auto& mp : models_) {
    monitored& m = *mp;
    if (m.slos.empty()) continue;
    const auto& mon = m.model->monitor;
    std::map<std::string, std::pair<uint64_t, uint64_t>> errors, slow, fallbacks, stale;
    if (mon.slo_freshness_ms > 0 && d_.freshness)
      stale[d_.node_id] = d_.freshness(mon.slo_freshness_ms * 1000);
    for (auto& c : served) {
      if (c.model != m.model->name) continue;
      errors[c.source] = {c.requests, c.errors};
      fallbacks[c.source] = {c.requests, c.fallbacks};
      if (mon.slo_latency_ms > 0 && c.at_least)
        slow[c.source] = {c.requests, c.at_least(mon.slo_latency_ms * 1000)};
    }
    for (auto& t : m.slos) {
      std::lock_guard<std::mutex> l(m.mu);
      t.rates.observe(now, t.sli == "errors"      ? errors
                           : t.sli == "latency"   ? slow
                           : t.sli == "freshness" ? stale
                                                  : fallbacks);
    }
    for (auto& t : m.slos) {
      monitoring::burn_rates::level level;
      double b5, b60;
      {
        std::lock_guard<std::mutex> l(m.mu);
        level = t.rates.judge(now);
        b5 = t.rates.burn(now, 5 * 60 * kMicrosPerSecond);
        b60 = t.rates.burn(now, 3600 * kMicrosPerSecond);
      }
      for (auto lv : {monitoring::burn_rates::level::ticket, monitoring::burn_rates::level::page}) {
        monitoring::alert_spec spec;
        spec.name = "slo_" + t.sli;
        spec.severity = monitoring::level_name(lv);
        spec.key = spec.name + "." + m.model->name + "." + d_.node_id + "." + spec.severity;
        spec.group = m.model->name;
        const std::string what =
            t.sli == "errors"      ? "predictions that failed"
            : t.sli == "latency"   ? "predictions that took longer than the objective"
            : t.sli == "freshness" ? "event batches readable later than the objective"
                                   : "predictions answered by the fallback";
        char summary[320];
        std::snprintf(summary, sizeof summary,
                      "%s on node %s: %s burn the %s budget (%.4g) %.1fx over the last hour, "
                      "%.1fx over 5 minutes",
                      m.model->name.c_str(), d_.node_id.c_str(), what.c_str(), t.sli.c_str(),
                      t.rates.budget(), b60, b5);
        if (auto a = alerts_->observe(spec, level == lv, now, summary,
                                      {{"sli", t.sli}, {"burn_1h", b60}, {"burn_5m", b5}});
            !a)
          m.warn("slo alert: " + a.error_message());
      }
    }
  }
}

void quality_service::sample_skew(std::vector<int64_t>& next) {
  {
    const int64_t now = now_micros();
    for (size_t i = 0; i < models_.size() && !stopping_; ++i) {
      monitored& m = *models_[i];
      const auto& mon = m.model->monitor;
      if (mon.skew_every_us <= 0) continue;
      if (next[i] == 0) next[i] = now + mon.skew_every_us;  // the first a period after start
      if (now < next[i]) continue;
      next[i] = now + mon.skew_every_us;
      auto report = d_.skew(m.model->name, static_cast<size_t>(mon.skew_sample));
      if (!report) {
        if (report.error_code() != errc::not_found) m.warn("skew: " + report.error_message());
        continue;
      }
      auto j = nlohmann::json::parse(*report, nullptr, false);
      if (!j.is_object()) continue;
      const uint64_t compared = j.value("compared", uint64_t{0});
      const uint64_t mismatched = j.value("mismatched_examples", uint64_t{0});
      std::string worst;
      uint64_t worst_n = 0;
      nlohmann::json features = nlohmann::json::array();
      if (j.contains("features") && j["features"].is_array())
        for (auto& f : j["features"]) {
          const uint64_t n = f.value("mismatches", uint64_t{0});
          if (n > worst_n) worst_n = n, worst = f.value("name", "");
          if (n) features.push_back({{"name", f.value("name", "")}, {"mismatches", n}});
        }
      {
        std::lock_guard<std::mutex> l(m.mu);
        m.skew_at = now;
        m.skew_compared = compared;
        m.skew_mismatched = mismatched;
        m.skew_worst = worst;
      }
      const bool skewed =
          compared > 0 &&
          static_cast<double>(mismatched) / static_cast<double>(compared) > mon.max_skew_share;
      monitoring::alert_spec spec;
      spec.key = "skew." + m.model->name;
      spec.name = "skew";
      spec.severity = "ticket";
      spec.group = m.model->name;
      const std::string summary =
          std::to_string(mismatched) + " of " + std::to_string(compared) + " logged vectors of " +
          m.model->name + " differ from the offline recomputation (most often " + worst + ")";
      if (auto a = alerts_->observe(
              spec, skewed, now, summary,
              {{"compared", compared}, {"mismatched", mismatched}, {"features", features}});
          !a)
        m.warn("skew alert: " + a.error_message());
    }
  }
}

}  // namespace tessera
