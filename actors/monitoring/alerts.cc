#include "alerts.h"

#include <cctype>

namespace tessera::monitoring {

const char* state_name(alert_state s) {
  switch (s) {
    case alert_state::inactive:
      return "inactive";
    case alert_state::pending:
      return "pending";
    case alert_state::firing:
      return "firing";
    case alert_state::resolved:
      return "resolved";
  }
  return "inactive";
}

namespace {

result<alert_state> state_of(const std::string& s) {
  for (auto st :
       {alert_state::inactive, alert_state::pending, alert_state::firing, alert_state::resolved})
    if (s == state_name(st)) return st;
  return make_error("unknown alert state '" + s + "'", errc::invalid);
}

}  // namespace

bool valid_alert_key(const std::string& key) {
  if (key.empty() || key.size() > 200 || key.front() == '.' || key.back() == '.') return false;
  for (char c : key)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      return false;
  return true;
}

nlohmann::json alert::to_json() const {
  return {{"key", spec.key},
          {"name", spec.name},
          {"severity", spec.severity},
          {"group", spec.group},
          {"for_us", spec.for_us},
          {"cooldown_us", spec.cooldown_us},
          {"state", state_name(state)},
          {"summary", summary},
          {"details", details},
          {"pending_since_us", pending_since_us},
          {"fired_us", fired_us},
          {"resolved_us", resolved_us},
          {"updated_us", updated_us},
          {"fired_count", fired_count},
          {"acked_by", acked_by},
          {"acked_us", acked_us},
          {"silenced_by", silenced_by},
          {"silenced_until_us", silenced_until_us},
          {"notified", notified}};
}

result<alert> alert::from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("key") || !j.contains("state"))
    return make_error("not an alert record", errc::invalid);
  alert a;
  try {
    a.spec.key = j.at("key").get<std::string>();
    a.spec.name = j.value("name", "");
    a.spec.severity = j.value("severity", "");
    a.spec.group = j.value("group", "");
    a.spec.for_us = j.value("for_us", int64_t{0});
    a.spec.cooldown_us = j.value("cooldown_us", int64_t{0});
    auto st = state_of(j.at("state").get<std::string>());
    if (!st) return st.failure();
    a.state = *st;
    a.summary = j.value("summary", "");
    a.details = j.value("details", nlohmann::json::object());
    a.pending_since_us = j.value("pending_since_us", int64_t{0});
    a.fired_us = j.value("fired_us", int64_t{0});
    a.resolved_us = j.value("resolved_us", int64_t{0});
    a.updated_us = j.value("updated_us", int64_t{0});
    a.fired_count = j.value("fired_count", 0u);
    a.acked_by = j.value("acked_by", "");
    a.acked_us = j.value("acked_us", int64_t{0});
    a.silenced_by = j.value("silenced_by", "");
    a.silenced_until_us = j.value("silenced_until_us", int64_t{0});
    a.notified = j.value("notified", "");
  } catch (const nlohmann::json::exception& e) {
    return make_error(std::string("a malformed alert record: ") + e.what(), errc::invalid);
  }
  return a;
}

bool observe(alert& a, bool condition, int64_t now_us, const std::string& summary,
             const nlohmann::json& details) {
  const alert_state before = a.state;
  if (condition) {
    a.summary = summary;
    a.details = details;
    if (a.state == alert_state::inactive ||
        (a.state == alert_state::resolved && now_us - a.resolved_us >= a.spec.cooldown_us)) {
      a.state = alert_state::pending;
      a.pending_since_us = now_us;
    }
    if (a.state == alert_state::pending && now_us - a.pending_since_us >= a.spec.for_us) {
      a.state = alert_state::firing;
      a.fired_us = now_us;
      ++a.fired_count;
    }
  } else if (a.state == alert_state::pending) {
    a.state = alert_state::inactive;
  } else if (a.state == alert_state::firing) {
    a.state = alert_state::resolved;
    a.resolved_us = now_us;
    a.acked_by.clear();
    a.acked_us = 0;
  }
  if (a.state != before) a.updated_us = now_us;
  return a.state != before;
}

std::string notification_due(const alert& a) {
  if (a.fired_count == 0) return {};
  std::string due;
  if (a.state == alert_state::firing)
    due = "firing:" + std::to_string(a.fired_count);
  else if (a.state == alert_state::resolved)
    due = "resolved:" + std::to_string(a.fired_count);
  else
    return {};  // pending again after a resolve: the resolve was due before
  return due == a.notified ? std::string() : due;
}

bool notifies(const alert& a, int64_t now_us) {
  return now_us >= a.silenced_until_us;
}

}  // namespace tessera::monitoring
