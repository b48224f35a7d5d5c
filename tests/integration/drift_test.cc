// Live drift (actors/monitoring/drift_monitor.h) on a trained model's prediction log: late_mlp
// (trained on the slice's first week, which recorded its reference distributions) predicts a
// day of flights as they were, then a day whose requests carry five times the distance. The
// distance input alarms only after the change, with a mean shift of several reference sd and
// among the largest contributions, and the model's drift alert fires once (persistent drift is
// one alert, not one per window) and names the distance. Skew, sampled every second, finds none.
// Other inputs drift too, and rightly: in windows of 12 hours the weekday is one value and the
// hour half the day (cyclical inputs need windows of their cycle), and the 7-day counts were
// still filling up during the reference week.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "serving_support.h"

namespace tessera::test {
namespace {

// The distance input's drift of late_mlp v1 in status: (tested windows, alarming, rank).
struct distance_drift {
  uint64_t tests = 0;
  bool alarming = false;
  int rank = -1;
  double contribution = 0;
  double mean_shift = 0;
};

// (window_us 0: any window; the last listed.)
distance_drift read_distance(client::connection& c, int64_t window_us = 0) {
  distance_drift out;
  auto st = c.status();
  if (!st) return out;
  for (auto q : (*st)->getQuality()) {
    if (q.getModel() != "late_mlp") continue;
    for (auto d : q.getDrift()) {
      if (d.getVersion() != 1 || (window_us != 0 && d.getWindow() != window_us)) continue;
      out.tests = d.getTests();
      int i = 0;
      for (auto v : d.getValues()) {
        if (std::string(v.getName().cStr()) == "distance") {
          out.alarming = v.getAlarming();
          out.rank = i;
          out.contribution = v.getContribution();
          out.mean_shift = v.getMeanShiftSd();
        }
        ++i;
      }
    }
  }
  return out;
}

// The flights of day `d` after Jan 8 (0: Jan 8), in time order.
std::vector<const flight*> day_of(int d) {
  constexpr int64_t kDay = 86400LL * 1000000;
  std::vector<const flight*> out;
  for (const flight& f : slice())
    if (f.time >= kJan8 + d * kDay && f.time < kJan8 + (d + 1) * kDay) out.push_back(&f);
  std::sort(out.begin(), out.end(),
            [](const flight* a, const flight* b) { return a->time < b->time; });
  return out;
}

// Predicts every flight of `day` through late_mlp, 100 a call, the distance times `scale`.
void predict_day(client::connection& c, const std::vector<const flight*>& day, double scale) {
  for (size_t at = 0; at < day.size(); at += 100) {
    std::vector<client::example> ex;
    for (size_t i = at; i < std::min(day.size(), at + 100); ++i) {
      flight f = *day[i];
      f.distance *= scale;
      ex.push_back(departure(f));
    }
    auto r = c.predict("late_mlp", ex);
    ASSERT_TRUE(r) << failure_text(r);
    for (auto& p : *r) ASSERT_TRUE(p.ok()) << p.error;
  }
}

TEST(LiveDrift, AShiftedInputAlarmsOnlyAfterTheChangeAndTheDriftIsOneAlert) {
  serving_node s("",
                 "monitor = { drift_window = \"12h\", drift_step = \"1h\", skew_every = \"1s\", "
                 "skew_sample = 100 },");
  ASSERT_TRUE(s.ready);
  auto& c = *s.c;
  ASSERT_TRUE(serves(c, "late_mlp", 1));

  // Jan 8 as it was, then Jan 9 with 5x the distance, in time order.
  const auto day1 = day_of(0), day2 = day_of(1);
  ASSERT_GT(day1.size(), 1000u);
  ASSERT_GT(day2.size(), 1000u);
  predict_day(c, day1, 1);
  // The monitor has tested the day's full windows (one an hour, once 12 hours of predictions lie
  // behind): the distance is not alarming.
  ASSERT_TRUE(eventually([&] { return read_distance(c).tests >= 4; }, std::chrono::seconds(60)))
      << read_distance(c).tests;
  EXPECT_FALSE(read_distance(c).alarming);

  predict_day(c, day2, 5);
  const bool alarmed = eventually(
      [&] {
        auto d = read_distance(c);
        return d.alarming && d.rank >= 0 && d.rank < 3;
      },
      std::chrono::seconds(60));
  std::string out;
  run_cli("status --rpc " + s.h->rpc(), &out);
  ASSERT_TRUE(alarmed) << out;
  EXPECT_GT(read_distance(c).contribution, 0.1) << out;
  EXPECT_GT(read_distance(c).mean_shift, 3) << out;
  EXPECT_NE(out.find("ALARM"), std::string::npos) << out;

  // One drift alert for the model's production version, naming the distance.
  ASSERT_TRUE(eventually(
      [&] {
        auto j = nlohmann::json::parse(c.alerts_json().value(), nullptr, false);
        for (auto& a : j)
          if (a.value("key", "") == "drift.late_mlp.v1" && a.value("state", "") == "firing" &&
              a.value("summary", "").find("distance") != std::string::npos)
            return true;
        return false;
      },
      std::chrono::seconds(60)))
      << c.alerts_json().value();
  auto log = nlohmann::json::parse(c.alert_log(0)->first, nullptr, false);
  int fired = 0;
  for (auto& t : log)
    fired += t.value("key", "") == "drift.late_mlp.v1" && t.value("state", "") == "firing";
  EXPECT_EQ(fired, 1) << log.dump();

  // Skew, sampled every second: the logged vectors recomputed from the offline log are the same
  // (the distance came with the request; the features are read as of the prediction time).
  uint64_t compared = 0, mismatched = 0;
  ASSERT_TRUE(eventually(
      [&] {
        auto st = c.status();
        if (!st) return false;
        for (auto q : (*st)->getQuality())
          if (q.getModel() == "late_mlp") {
            compared = q.getSkewCompared();
            mismatched = q.getSkewMismatched();
          }
        return compared >= 50;
      },
      std::chrono::seconds(60)))
      << compared;
  EXPECT_EQ(mismatched, 0u);
}

// Several windows (drift_window = { "6h", "12h" }): each is tested on its own, the distance
// alarms in both after the change, and each window has its own alert, fired once.
TEST(LiveDrift, EachDeclaredWindowIsTestedAndAlertsOnItsOwn) {
  serving_node s("",
                 "monitor = { drift_window = { \"6h\", \"12h\" }, drift_step = \"1h\", "
                 "skew_every = \"0s\" },");
  ASSERT_TRUE(s.ready);
  auto& c = *s.c;
  ASSERT_TRUE(serves(c, "late_mlp", 1));
  constexpr int64_t h = 3600LL * 1000000;
  predict_day(c, day_of(0), 1);
  predict_day(c, day_of(1), 5);
  for (int64_t w : {6 * h, 12 * h})
    ASSERT_TRUE(eventually([&] { return read_distance(c, w).alarming; }, std::chrono::seconds(60)))
        << "window " << w / h << "h: " << read_distance(c, w).tests << " tests";
  // More windows are tested in 6 h windows than in 12 h ones (each once a full window is behind).
  EXPECT_GT(read_distance(c, 6 * h).tests, read_distance(c, 12 * h).tests);
  std::map<std::string, int> fired;
  ASSERT_TRUE(eventually(
      [&] {
        fired.clear();
        for (auto& t : nlohmann::json::parse(c.alert_log(0)->first, nullptr, false))
          if (t.value("state", "") == "firing") ++fired[t.value("key", "")];
        return fired.count("drift.late_mlp.v1.6h") && fired.count("drift.late_mlp.v1.12h");
      },
      std::chrono::seconds(60)))
      << c.alert_log(0)->first;
  EXPECT_EQ(fired["drift.late_mlp.v1.6h"], 1);
  EXPECT_EQ(fired["drift.late_mlp.v1.12h"], 1);
  EXPECT_EQ(fired.count("drift.late_mlp.v1"), 0u);
  std::string out;
  run_cli("status --rpc " + s.h->rpc(), &out);
  EXPECT_NE(out.find("drift v1: 6h window"), std::string::npos) << out;
  EXPECT_NE(out.find("drift v1: 12h window"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::test
