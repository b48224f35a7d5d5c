#include "drift_text.h"

#include <cstdio>

#include "time_util.h"

namespace tessera::cli {

nlohmann::json drift_json(capnp::List<wire::VersionDrift>::Reader drift) {
  nlohmann::json out = nlohmann::json::array();
  for (auto d : drift) {
    nlohmann::json values = nlohmann::json::array();
    for (auto v : d.getValues())
      values.push_back({{"name", v.getName().cStr()},
                        {"tested", v.getTested()},
                        {"psi", v.getPsi()},
                        {"threshold", v.getThreshold()},
                        {"p_value", v.getPValue()},
                        {"js", v.getJs()},
                        {"mean_shift_sd", v.getMeanShiftSd()},
                        {"drifted", v.getDrifted()},
                        {"alarming", v.getAlarming()},
                        {"contribution", v.getContribution()}});
    out.push_back({{"version", d.getVersion()},
                   {"window_us", d.getWindow()},
                   {"reference", d.getReference()},
                   {"why", d.getWhy().cStr()},
                   {"at", d.getAt()},
                   {"predictions", d.getPredictions()},
                   {"tests", d.getTests()},
                   {"values", values}});
  }
  return out;
}

void print_drift(capnp::List<wire::VersionDrift>::Reader drift) {
  for (auto d : drift) {
    if (!d.getReference()) {
      std::printf("  drift v%u: not measured: %s\n", d.getVersion(), d.getWhy().cStr());
      continue;
    }
    const std::string window = d.getWindow() > 0 ? format_duration(d.getWindow()) : "";
    if (d.getTests() == 0) {
      std::printf("  drift v%u: no %s window complete yet\n", d.getVersion(), window.c_str());
      continue;
    }
    unsigned alarming = 0, drifted = 0;
    for (auto v : d.getValues()) alarming += v.getAlarming(), drifted += v.getDrifted();
    std::printf(
        "  drift v%u: %s window to %s, %llu predictions: %u of %u values drifted, %u alarming\n",
        d.getVersion(), window.c_str(), format_timestamp(d.getAt()).c_str(),
        static_cast<unsigned long long>(d.getPredictions()), drifted, d.getValues().size(),
        alarming);
    unsigned shown = 0;
    for (auto v : d.getValues()) {
      if (!v.getDrifted() && !v.getAlarming()) continue;
      if (++shown > 8) break;
      std::printf("    %-28s PSI %.4f (needed %.4f)  JS %.4f  mean shift %+.2f sd  %3.0f%%%s\n",
                  v.getName().cStr(), v.getPsi(), v.getThreshold(), v.getJs(), v.getMeanShiftSd(),
                  100 * v.getContribution(), v.getAlarming() ? "  ALARM" : "");
    }
  }
}

nlohmann::json slo_json(capnp::List<wire::SloState>::Reader slos) {
  nlohmann::json out = nlohmann::json::array();
  for (auto x : slos)
    out.push_back({{"sli", x.getSli().cStr()},
                   {"budget", x.getBudget()},
                   {"burn_5m", x.getBurn5m()},
                   {"burn_30m", x.getBurn30m()},
                   {"burn_1h", x.getBurn1h()},
                   {"burn_6h", x.getBurn6h()},
                   {"events_1h", x.getEvents1h()},
                   {"level", x.getLevel().cStr()}});
  return out;
}

void print_slos(capnp::List<wire::SloState>::Reader slos) {
  for (auto x : slos)
    std::printf(
        "  objective %-8s budget %.4g: burn 5m %.1fx 30m %.1fx 1h %.1fx 6h %.1fx over %llu "
        "predictions in the hour: %s\n",
        x.getSli().cStr(), x.getBudget(), x.getBurn5m(), x.getBurn30m(), x.getBurn1h(),
        x.getBurn6h(), static_cast<unsigned long long>(x.getEvents1h()), x.getLevel().cStr());
}

}  // namespace tessera::cli
