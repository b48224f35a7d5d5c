// The alert state machine (actors/monitoring/alerts.h): pending for `for`, firing, resolved,
// cooldown against flapping, one notification per transition, silences, the record's JSON.
#include "alerts.h"

#include <gtest/gtest.h>

namespace tessera::monitoring {
namespace {

constexpr int64_t kS = 1000000;

alert_spec spec(int64_t for_s, int64_t cooldown_s) {
  alert_spec s;
  s.key = "canary_worse.m.v2";
  s.name = "canary_worse";
  s.severity = "page";
  s.group = "m";
  s.for_us = for_s * kS;
  s.cooldown_us = cooldown_s * kS;
  return s;
}

TEST(Alerts, PendingForItsDurationThenFiringThenResolvedWithOneNotificationEach) {
  alert a;
  a.spec = spec(60, 600);
  EXPECT_FALSE(observe(a, false, 0, "", {}));
  EXPECT_EQ(a.state, alert_state::inactive);
  EXPECT_TRUE(observe(a, true, 10 * kS, "bad", {{"x", 1}}));
  EXPECT_EQ(a.state, alert_state::pending);
  EXPECT_EQ(notification_due(a), "");
  EXPECT_FALSE(observe(a, true, 69 * kS, "bad", {}));  // 59 s held: still pending
  EXPECT_EQ(a.state, alert_state::pending);
  EXPECT_TRUE(observe(a, true, 70 * kS, "worse", {}));
  EXPECT_EQ(a.state, alert_state::firing);
  EXPECT_EQ(a.summary, "worse");
  EXPECT_EQ(a.fired_count, 1u);
  EXPECT_EQ(notification_due(a), "firing:1");
  a.notified = notification_due(a);
  EXPECT_FALSE(observe(a, true, 80 * kS, "worse", {}));
  EXPECT_EQ(notification_due(a), "");  // still firing: nothing new to say
  a.acked_by = "ann";
  EXPECT_TRUE(observe(a, false, 90 * kS, "", {}));
  EXPECT_EQ(a.state, alert_state::resolved);
  EXPECT_EQ(a.acked_by, "");  // an acknowledgement ends with the alert
  EXPECT_EQ(notification_due(a), "resolved:1");
}

TEST(Alerts, AConditionThatClearsBeforeItsDurationNeverFires) {
  alert a;
  a.spec = spec(60, 0);
  observe(a, true, 0, "x", {});
  observe(a, false, 30 * kS, "", {});
  EXPECT_EQ(a.state, alert_state::inactive);
  observe(a, true, 40 * kS, "x", {});
  observe(a, true, 99 * kS, "x", {});  // pending again from 40 s: 59 s
  EXPECT_EQ(a.state, alert_state::pending);
  EXPECT_EQ(a.fired_count, 0u);
}

TEST(Alerts, AFlappingConditionNotifiesOncePerCooldown) {
  alert a;
  a.spec = spec(0, 600);
  int notifications = 0;
  // Flaps every 10 s for an hour.
  for (int64_t t = 0; t < 3600; t += 10) {
    observe(a, (t / 10) % 2 == 0, t * kS, "x", {});
    if (!notification_due(a).empty() && notification_due(a).rfind("firing", 0) == 0) {
      ++notifications;
    }
    a.notified = notification_due(a).empty() ? a.notified : notification_due(a);
  }
  // Fires at 0, resolves at 10, may fire again only 600 s after that: 0, 620, 1240, ... < 3600.
  EXPECT_EQ(notifications, 6);
  EXPECT_EQ(a.fired_count, 6u);
}

TEST(Alerts, SilencedAlertsMoveButDoNotNotify) {
  alert a;
  a.spec = spec(0, 0);
  a.silenced_until_us = 100 * kS;
  observe(a, true, 50 * kS, "x", {});
  EXPECT_EQ(a.state, alert_state::firing);
  EXPECT_EQ(notification_due(a), "firing:1");
  EXPECT_FALSE(notifies(a, 50 * kS));
  EXPECT_TRUE(notifies(a, 100 * kS));
}

TEST(Alerts, RecordsRoundTripThroughJsonAndBadOnesAreRefused) {
  alert a;
  a.spec = spec(5, 7);
  observe(a, true, 3 * kS, "why", {{"auc", 0.61}});
  observe(a, true, 9 * kS, "why", {{"auc", 0.61}});
  a.notified = "firing:1";
  a.silenced_by = "bo";
  a.silenced_until_us = 99;
  auto b = alert::from_json(nlohmann::json::parse(a.to_json().dump()));
  ASSERT_TRUE(b) << b.error_message();
  EXPECT_EQ(b->to_json(), a.to_json());
  EXPECT_FALSE(alert::from_json(nlohmann::json::parse(R"({"key":"k","state":"burning"})")));
  EXPECT_FALSE(alert::from_json(nlohmann::json::parse(R"({"key":3,"state":"firing"})")));
  EXPECT_FALSE(alert::from_json(nlohmann::json::parse("[1,2]")));
  EXPECT_TRUE(valid_alert_key("drift.late_mlp.distance"));
  EXPECT_FALSE(valid_alert_key("a b"));
  EXPECT_FALSE(valid_alert_key("a.>"));
  EXPECT_FALSE(valid_alert_key(""));
}

}  // namespace
}  // namespace tessera::monitoring
