// Automatic rollback (actors/monitoring/verdicts.h): a confidently wrong canary (0.99 for every
// flight: most are on time) is rolled back to candidate once its labelled predictions show it
// worse than production, with one alert that fires and resolves and says why; a canary as good
// as production, judged on the same amount of data, stays. Alerts are read over RPC and by the
// CLI; acknowledging a resolved alert is refused, silencing one works. The model's objectives
// (errors, latency) count what the node served.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "serving_support.h"

namespace tessera::test {
namespace {

const std::string kTrips = trips_definitions(
    R"(max_label_delay = "2d", label_grace = "1h", rollback = true, min_pairs = 60, slo_error_rate = 0.001, slo_latency_ms = 2000, slo_latency_rate = 0.01)");

std::map<uint32_t, std::string> stages(client::connection& c) {
  std::map<uint32_t, std::string> out;
  auto l = c.list_models();
  if (!l) return out;
  for (auto& m : *l)
    if (m.name == "trip_model")
      for (auto& v : m.versions) out[v.version] = v.stage;
  return out;
}

nlohmann::json alert_log(client::connection& c) {
  auto l = c.alert_log(0);
  if (!l) return nlohmann::json::array();
  return nlohmann::json::parse(l->first, nullptr, false);
}

uint64_t verdicts(client::connection& c) {
  auto r = c.status();
  if (!r) return 0;
  for (auto m : (*r)->getQuality())
    if (m.getModel() == "trip_model") return m.getVerdicts();
  return 0;
}

// Predicts every flight of `part`, then sends their arrivals (the labels) once the monitor has
// read the predictions; waits until it has read the labels.
void predict_then_label(client::connection& c, const std::vector<const flight*>& part,
                        uint64_t predicted_before, uint64_t labels_before, const std::string& id) {
  std::vector<client::example> ex;
  for (auto* f : part) ex.push_back(departure(*f));
  for (size_t at = 0; at < ex.size(); at += 50) {
    std::vector<client::example> chunk(
        ex.begin() + static_cast<long>(at),
        ex.begin() + static_cast<long>(std::min(ex.size(), at + 50)));
    auto r = c.predict("trip_model", chunk);
    ASSERT_TRUE(r) << failure_text(r);
    for (auto& p : *r) ASSERT_TRUE(p.ok()) << p.error;
  }
  auto seen = [&](uint64_t preds, uint64_t labels) {
    return eventually(
        [&] {
          auto r = c.status();
          if (!r) return false;
          for (auto m : (*r)->getQuality())
            if (m.getModel() == "trip_model" && m.getPredictions() >= preds &&
                m.getLabels() >= labels)
              return true;
          return false;
        },
        std::chrono::seconds(60));
  };
  ASSERT_TRUE(seen(predicted_before + part.size(), labels_before));
  std::vector<client::event> labels;
  for (auto* f : part) labels.push_back(trip_event(*f));
  auto ing = c.ingest("trips", labels, id);
  ASSERT_TRUE(ing) << failure_text(ing);
  ASSERT_EQ(ing->rejected.size(), 0u);
  ASSERT_TRUE(seen(predicted_before + part.size(), labels_before + part.size()));
}

TEST(AutoRollback, ABadCanaryIsRolledBackOnceWithAnAlertAndAGoodOneStays) {
  serving_node s(kTrips);
  ASSERT_TRUE(s.ready);
  auto& c = *s.c;
  std::map<std::string, uint32_t> v;
  for (const char* kind : {"by_distance", "sure_late"}) {
    const std::string pt = s.dir.path + "/" + kind + ".pt";
    ASSERT_EQ(std::system(("/usr/bin/python3 " TSR_SOURCE_DIR
                           "/tests/training/make_special_torchscript.py " +
                           pt + " 2 " + kind)
                              .c_str()),
              0);
    auto r = c.import_model("trip_model", "trip_late", read_file(pt));
    ASSERT_TRUE(r) << failure_text(r);
    v[kind] = *r;
  }
  const std::string good_pt = s.dir.path + "/by_distance.pt";
  auto good_canary = c.import_model("trip_model", "trip_late", read_file(good_pt));
  ASSERT_TRUE(good_canary) << failure_text(good_canary);
  const uint32_t prod = v["by_distance"], bad = v["sure_late"], good = *good_canary;
  ASSERT_TRUE(c.promote_model("trip_model", prod, "production"));
  ASSERT_TRUE(c.promote_model("trip_model", bad, "canary", 0.5));
  ASSERT_TRUE(eventually(
      [&] {
        auto r = c.status();
        if (!r) return false;
        for (auto m : (*r)->getModels())
          if (m.getModel() == "trip_model" && m.getVersion() == bad && m.getStage() == "canary")
            return true;
        return false;
      },
      std::chrono::seconds(60)));

  // 800 flights with distinct keys: 400 with the bad canary, 400 with the good one.
  const std::vector<const flight*> fl = distinct_trips(800);
  ASSERT_EQ(fl.size(), 800u);
  const std::vector<const flight*> first(fl.begin(), fl.begin() + 400),
      second(fl.begin() + 400, fl.end());

  predict_then_label(c, first, 0, 0, "labels-1");
  const std::string key = "canary_worse.trip_model.v" + std::to_string(bad);
  bool done = eventually(
      [&] {
        auto st = stages(c);
        if (st[bad] != "candidate") return false;
        int resolved = 0;
        for (auto& t : alert_log(c)) resolved += t.value("state", "") == "resolved";
        return resolved == 1;
      },
      std::chrono::seconds(60));
  if (!done) {
    std::string js;
    run_cli("status --json --rpc " + s.h->rpc(), &js);
    const auto at = js.find("\"quality\"");
    FAIL() << "stage of v" << bad << ": " << stages(c)[bad] << "; log " << alert_log(c).dump()
           << "\n"
           << (at == std::string::npos ? js : js.substr(at, 2000));
  }
  EXPECT_EQ(stages(c)[prod], "production");
  auto log = alert_log(c);
  ASSERT_EQ(log.size(), 2u) << log.dump();
  EXPECT_EQ(log[0].value("key", ""), key);
  EXPECT_EQ(log[0].value("state", ""), "firing");
  EXPECT_EQ(log[0].value("subject", ""), "tsr.alert.page.canary_worse");
  EXPECT_NE(log[0].value("summary", "").find("rolled back to candidate"), std::string::npos)
      << log[0].dump();
  EXPECT_EQ(log[1].value("key", ""), key);
  EXPECT_EQ(log[1].value("state", ""), "resolved");

  // The good canary, judged on as many pairs.
  ASSERT_TRUE(c.promote_model("trip_model", good, "canary", 0.5));
  ASSERT_TRUE(eventually(
      [&] {
        auto r = c.status();
        if (!r) return false;
        for (auto m : (*r)->getModels())
          if (m.getModel() == "trip_model" && m.getVersion() == good && m.getStage() == "canary")
            return true;
        return false;
      },
      std::chrono::seconds(60)));
  predict_then_label(c, second, 400, 400, "labels-2");
  ASSERT_TRUE(eventually(
      [&] {
        auto r = c.status();
        if (!r) return false;
        for (auto m : (*r)->getQuality())
          if (m.getModel() == "trip_model" && m.getCompared()) return !m.getCanaryWorse();
        return false;
      },
      std::chrono::seconds(60)));
  // Three more verdicts on these figures: the good canary stays, nothing more is raised.
  const uint64_t n = verdicts(c);
  ASSERT_TRUE(eventually([&] { return verdicts(c) >= n + 3; }, std::chrono::seconds(60)));
  EXPECT_EQ(stages(c)[good], "canary");
  EXPECT_EQ(stages(c)[bad], "candidate");
  EXPECT_EQ(alert_log(c).size(), 2u) << alert_log(c).dump();

  // The objectives count what this node served (800 predictions, none failed or slow).
  ASSERT_TRUE(eventually(
      [&] {
        auto r = c.status();
        if (!r) return false;
        for (auto m : (*r)->getQuality()) {
          if (m.getModel() != "trip_model" || m.getSlos().size() != 2) continue;
          bool all = true;
          for (auto x : m.getSlos())
            all = all && x.getEvents1h() >= 800 && std::string(x.getLevel().cStr()) == "none" &&
                  x.getBurn1h() == 0;
          return all;
        }
        return false;
      },
      std::chrono::seconds(60)));

  // The CLI: the resolved alert with its reason; acknowledging it is refused; silencing works.
  std::string out;
  ASSERT_EQ(run_cli("alerts --rpc " + s.h->rpc(), &out), 0) << out;
  EXPECT_NE(out.find("RESOLVED"), std::string::npos) << out;
  EXPECT_NE(out.find(key), std::string::npos) << out;
  EXPECT_NE(out.find("rolled back to candidate"), std::string::npos) << out;
  EXPECT_NE(run_cli("alerts ack " + key + " --rpc " + s.h->rpc(), &out), 0);
  EXPECT_NE(out.find("only a firing alert"), std::string::npos) << out;
  ASSERT_EQ(run_cli("alerts silence " + key + " --for 2h --by ann --rpc " + s.h->rpc(), &out), 0)
      << out;
  ASSERT_EQ(run_cli("alerts --json --rpc " + s.h->rpc(), &out), 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_array()) << out;
  ASSERT_EQ(j.size(), 1u) << out;
  EXPECT_EQ(j[0].value("silenced_by", ""), "ann");
  EXPECT_NE(run_cli("alerts ack no.such.alert --rpc " + s.h->rpc(), &out), 0);
  EXPECT_NE(out.find("no alert"), std::string::npos) << out;
}

// A production version that misses its objective soon after its promotion (sure_late: log loss
// far above max_log_loss) goes back to the previous production version, once, with one alert
// saying so; the restored version, judged on as many pairs, stays, and the alert resolves.
TEST(AutoRollback, AProductionVersionMissingItsObjectiveAfterAPromotionGoesBackToThePreviousOnce) {
  serving_node s(trips_definitions(
      R"(max_label_delay = "2d", label_grace = "1h", rollback = true, min_pairs = 60, max_log_loss = 1.0)"));
  ASSERT_TRUE(s.ready);
  auto& c = *s.c;
  std::map<std::string, uint32_t> v;
  for (const char* kind : {"by_distance", "sure_late"}) {
    auto r = c.import_model("trip_model", "trip_late", special(s.dir.path, kind));
    ASSERT_TRUE(r) << failure_text(r);
    v[kind] = *r;
  }
  const uint32_t good = v["by_distance"], bad = v["sure_late"];
  ASSERT_TRUE(c.promote_model("trip_model", good, "production"));
  ASSERT_TRUE(serves(c, "trip_model", good));
  ASSERT_TRUE(c.promote_model("trip_model", bad, "production"));  // good is the previous one
  ASSERT_TRUE(serves(c, "trip_model", bad));

  const std::vector<const flight*> fl = distinct_trips(600);
  ASSERT_EQ(fl.size(), 600u);
  predict_then_label(c, {fl.begin(), fl.begin() + 300}, 0, 0, "labels-1");
  const std::string key = "quality_slo.trip_model.v" + std::to_string(bad);
  ASSERT_TRUE(eventually(
      [&] {
        auto st = stages(c);
        return st[bad] == "archived" && st[good] == "production";
      },
      std::chrono::seconds(60)))
      << "stages: bad " << stages(c)[bad] << ", good " << stages(c)[good] << "; log "
      << alert_log(c).dump();
  auto log = alert_log(c);
  ASSERT_GE(log.size(), 1u);
  EXPECT_EQ(log[0].value("key", ""), key);
  EXPECT_EQ(log[0].value("state", ""), "firing");
  EXPECT_EQ(log[0].value("subject", ""), "tsr.alert.page.quality_slo");
  EXPECT_NE(log[0].value("summary", "").find("rolled back to the previous production version"),
            std::string::npos)
      << log[0].dump();

  // The restored version serves the next 300 flights and meets the objective: it stays, the
  // alert resolves, and nothing else is raised.
  ASSERT_TRUE(serves(c, "trip_model", good));
  predict_then_label(c, {fl.begin() + 300, fl.end()}, 300, 300, "labels-2");
  const uint64_t n = verdicts(c);
  ASSERT_TRUE(eventually([&] { return verdicts(c) >= n + 3; }, std::chrono::seconds(60)));
  ASSERT_TRUE(eventually([&] { return alert_log(c).size() >= 2; }, std::chrono::seconds(60)))
      << alert_log(c).dump();
  EXPECT_EQ(stages(c)[good], "production");
  EXPECT_EQ(stages(c)[bad], "archived");
  log = alert_log(c);
  ASSERT_EQ(log.size(), 2u) << log.dump();
  EXPECT_EQ(log[1].value("key", ""), key);
  EXPECT_EQ(log[1].value("state", ""), "resolved");
}

}  // namespace
}  // namespace tessera::test
