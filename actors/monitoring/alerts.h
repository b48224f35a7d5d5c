// Alerts: one record per deduplication key (e.g. "rollback.flights_delay.v2"), moved through
// inactive → pending → firing → resolved by the conditions the monitoring service observes.
// Plain C++, no NATS: alert_store.h keeps the records in JetStream and publishes transitions.
//
//   - a condition that holds makes the alert pending; held for `for_us` it fires (0: at once);
//   - a condition that clears resolves a firing alert (a pending one goes back to inactive);
//   - after resolving, the alert waits `cooldown_us` before it may go pending again: a condition
//     that flaps gives one notification per cooldown, not one per flap;
//   - acknowledging marks a firing alert as seen (cleared when it resolves); silencing until a
//     time suppresses its notifications until then (the record still moves);
//   - a notification is due once per transition to firing or resolved: `notified` names the last
//     one published ("firing:3"), so a node that died between recording a transition and
//     publishing it leaves the next observer to publish it, and never twice (the publish carries
//     the same message id, which JetStream de-duplicates).
// Times are wall-clock microseconds since the epoch (what people silence and acknowledge in).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "tessera/result.h"

namespace tessera::monitoring {

enum class alert_state { inactive, pending, firing, resolved };
const char* state_name(alert_state s);

// What a rule says of its alerts.
struct alert_spec {
  std::string key;       // deduplication key: letters, digits, '.', '_', '-'
  std::string name;      // the rule: canary_worse, drift, slo, ... (the subject's last token)
  std::string severity;  // page, ticket or info (the subject's middle token)
  std::string group;     // what it is about, e.g. the model: alerts are listed by group
  int64_t for_us = 0;
  int64_t cooldown_us = 10 * 60 * 1000000LL;
};

struct alert {
  alert_spec spec;
  alert_state state = alert_state::inactive;
  std::string summary;     // one line a person reads: what and why
  nlohmann::json details;  // the figures behind it
  int64_t pending_since_us = 0, fired_us = 0, resolved_us = 0, updated_us = 0;
  uint32_t fired_count = 0;
  std::string acked_by;
  int64_t acked_us = 0;
  std::string silenced_by;
  int64_t silenced_until_us = 0;
  std::string notified;  // the last transition published, "firing:N" or "resolved:N"

  nlohmann::json to_json() const;
  static result<alert> from_json(const nlohmann::json& j);
};

// Whether `key` is a valid deduplication key (it becomes a KV key and part of a message id).
bool valid_alert_key(const std::string& key);

// The alert after observing `condition` at `now`; true when its state changed. While the
// condition holds, summary and details are replaced by the given ones.
bool observe(alert& a, bool condition, int64_t now_us, const std::string& summary,
             const nlohmann::json& details);

// The transition due for publishing ("firing:N" / "resolved:N"), or empty when none is.
std::string notification_due(const alert& a);
// Whether a due notification goes out (false while silenced: it is recorded as published).
bool notifies(const alert& a, int64_t now_us);

}  // namespace tessera::monitoring
