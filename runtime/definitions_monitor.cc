// model { monitor = { ... } }: live quality, its objectives and automatic rollback
// (definitions.h model_def::monitor_def; the model reader in definitions_reader_models.cc calls
// this, declared in definitions_reader_internal.h).
#include <lua.hpp>

#include <algorithm>

#include "definitions.h"
#include "definitions_reader_internal.h"
#include "lua_host.h"
#include "time_util.h"

namespace tessera {

status read_monitor(lua_State* L, int model_table, const std::string& where,
                    model_def::monitor_def& out) {
  lua_getfield(L, model_table, "monitor");
  struct pop_on_exit {
    lua_State* L;
    ~pop_on_exit() { lua_pop(L, 1); }
  } pop{L};
  if (lua_isnil(L, -1)) return ok_status();
  const std::string& w = where;
  if (!lua_istable(L, -1))
    return make_error(w + "monitor must be a table (monitor = {} for the defaults)");
  const int mt = lua_gettop(L);
  const std::string shape =
      " (monitor = { max_label_delay = \"2d\", label_grace = \"1h\", window = 50000, rollback = "
      "true, alpha = 0.01, min_pairs = 200, min_auc = 0.6, max_log_loss = 0.7, rollback_within "
      "= \"7d\", drift_window = \"1d\" or { \"1h\", \"1d\" }, drift_step = \"1h\", "
      "drift_false_alarm_rate = 0.01, "
      "drift_min_psi = 0.01, skew_every = \"10m\", skew_sample = 200, max_skew_share = 0.01, "
      "slo_error_rate = "
      "0.001, slo_latency_ms = 50, slo_latency_rate = 0.01, slo_fallback_rate = 0.05, "
      "slo_freshness_ms = 1000, slo_freshness_rate = 0.01 })";
  if (auto bad = lua::unknown_keys(L, mt,
                                   {"max_label_delay",
                                    "label_grace",
                                    "window",
                                    "rollback",
                                    "alpha",
                                    "min_pairs",
                                    "min_auc",
                                    "max_log_loss",
                                    "rollback_within",
                                    "drift_window",
                                    "drift_step",
                                    "drift_false_alarm_rate",
                                    "drift_min_psi",
                                    "skew_every",
                                    "skew_sample",
                                    "max_skew_share",
                                    "slo_error_rate",
                                    "slo_latency_ms",
                                    "slo_latency_rate",
                                    "slo_fallback_rate",
                                    "slo_freshness_ms",
                                    "slo_freshness_rate"});
      !bad.empty())
    return make_error(w + "monitor: unknown key(s) " + bad + shape);
  out.on = true;
  for (auto [key, dst] : {std::pair{"max_label_delay", &out.max_label_delay_us},
                          {"label_grace", &out.label_grace_us},
                          {"rollback_within", &out.rollback_within_us},
                          {"drift_step", &out.drift_step_us}}) {
    if (!lua::has_field(L, mt, key)) continue;
    auto d = parse_duration(lua::str_field(L, mt, key));
    if (!d || *d <= 0)
      return make_error(w + "monitor." + key + " must be a positive duration" + shape);
    *dst = *d;
  }
  // drift_window: one duration, or a list of them.
  lua_getfield(L, mt, "drift_window");
  if (lua_istable(L, -1)) {
    const int wt = lua_gettop(L);
    out.drift_windows_us.clear();
    for (int i = 1;; ++i) {
      lua_rawgeti(L, wt, i);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      const char* text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : nullptr;
      result<int64_t> d = text ? parse_duration(text) : result<int64_t>(make_error("not text"));
      lua_pop(L, 1);
      if (!d || *d <= 0) {
        lua_pop(L, 1);
        return make_error(w + "monitor.drift_window[" + std::to_string(i) +
                          "] must be a positive duration" + shape);
      }
      if (std::find(out.drift_windows_us.begin(), out.drift_windows_us.end(), *d) !=
          out.drift_windows_us.end()) {
        lua_pop(L, 1);
        return make_error(w + "monitor.drift_window lists " + format_duration(*d) + " twice");
      }
      out.drift_windows_us.push_back(*d);
    }
    lua_pop(L, 1);
    if (out.drift_windows_us.empty() || out.drift_windows_us.size() > 4)
      return make_error(w + "monitor.drift_window must list 1 to 4 durations" + shape);
  } else {
    const bool present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (present) {
      auto d = parse_duration(lua::str_field(L, mt, "drift_window"));
      if (!d || *d <= 0)
        return make_error(w +
                          "monitor.drift_window must be a positive duration, or a list of "
                          "them" +
                          shape);
      out.drift_windows_us = {*d};
    }
  }
  out.drift_window_us = out.drift_windows_us.front();
  out.window = lua::int_field(L, mt, "window", out.window);
  if (out.window < 100 || out.window > 10'000'000)
    return make_error(w + "monitor.window must be between 100 and 10000000 pairs");
  lua_getfield(L, mt, "rollback");
  const bool is_bool = lua_isboolean(L, -1), is_nil = lua_isnil(L, -1);
  if (is_bool) out.rollback = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!is_bool && !is_nil) return make_error(w + "monitor.rollback must be true or false" + shape);
  out.alpha = lua::num_field(L, mt, "alpha", out.alpha);
  if (!(out.alpha > 0 && out.alpha < 0.5))
    return make_error(w + "monitor.alpha must be in (0, 0.5): the false-alarm rate of a test");
  out.min_pairs = lua::int_field(L, mt, "min_pairs", out.min_pairs);
  if (out.min_pairs < 30 || out.min_pairs > out.window)
    return make_error(w + "monitor.min_pairs must be between 30 and monitor.window");
  out.min_auc = lua::num_field(L, mt, "min_auc", out.min_auc);
  if (!(out.min_auc >= 0 && out.min_auc < 1))
    return make_error(w + "monitor.min_auc must be in [0, 1) (0: none)");
  out.max_log_loss = lua::num_field(L, mt, "max_log_loss", out.max_log_loss);
  if (!(out.max_log_loss >= 0))
    return make_error(w + "monitor.max_log_loss must be a positive number (0: none)");
  for (const int64_t dw : out.drift_windows_us)
    if (out.drift_step_us > dw || dw / out.drift_step_us > 1000)
      return make_error(w +
                        "monitor.drift_step must divide each drift_window into 1 to 1000 "
                        "steps (" +
                        format_duration(dw) + " by " + format_duration(out.drift_step_us) + ")");
  out.drift_false_alarm_rate =
      lua::num_field(L, mt, "drift_false_alarm_rate", out.drift_false_alarm_rate);
  if (!(out.drift_false_alarm_rate > 0 && out.drift_false_alarm_rate < 0.5))
    return make_error(w + "monitor.drift_false_alarm_rate must be in (0, 0.5)");
  out.drift_min_psi = lua::num_field(L, mt, "drift_min_psi", out.drift_min_psi);
  if (!(out.drift_min_psi >= 0))
    return make_error(w + "monitor.drift_min_psi must be a number >= 0");
  if (lua::has_field(L, mt, "skew_every")) {
    auto d = parse_duration(lua::str_field(L, mt, "skew_every"));
    if (!d || *d < 0)
      return make_error(w + "monitor.skew_every must be a duration (0: never)" + shape);
    out.skew_every_us = *d;
  }
  out.skew_sample = lua::int_field(L, mt, "skew_sample", out.skew_sample);
  if (out.skew_sample < 1 || out.skew_sample > 100000)
    return make_error(w + "monitor.skew_sample must be between 1 and 100000");
  out.max_skew_share = lua::num_field(L, mt, "max_skew_share", out.max_skew_share);
  if (!(out.max_skew_share >= 0 && out.max_skew_share < 1))
    return make_error(w + "monitor.max_skew_share must be in [0, 1)");
  for (auto [key, dst] : {std::pair{"slo_error_rate", &out.slo_error_rate},
                          {"slo_latency_rate", &out.slo_latency_rate},
                          {"slo_fallback_rate", &out.slo_fallback_rate},
                          {"slo_freshness_rate", &out.slo_freshness_rate}}) {
    *dst = lua::num_field(L, mt, key, *dst);
    if (!(*dst >= 0 && *dst < 1))
      return make_error(w + "monitor." + key + " must be in [0, 1): the share allowed (0: none)");
  }
  out.slo_latency_ms = lua::num_field(L, mt, "slo_latency_ms", out.slo_latency_ms);
  if ((out.slo_latency_rate > 0) != (out.slo_latency_ms > 0))
    return make_error(w + "monitor.slo_latency_ms and slo_latency_rate go together" + shape);
  out.slo_freshness_ms = lua::num_field(L, mt, "slo_freshness_ms", out.slo_freshness_ms);
  if ((out.slo_freshness_rate > 0) != (out.slo_freshness_ms > 0))
    return make_error(w + "monitor.slo_freshness_ms and slo_freshness_rate go together" + shape);
  return ok_status();
}

}  // namespace tessera
