// Live quality (actors/monitoring/quality_service.h): predictions made over RPC are joined to
// their delayed labels (a trip's arrival with its delay, by route and scheduled departure) and
// the live AUC, log loss and accuracy in status equal a brute-force computation over the pairs
// the test expects; unlabelled predictions, labels with no prediction and a duplicate label are
// counted as documented.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "serving_support.h"

namespace tessera::test {
namespace {

// A stream of its own for the labels (the history the serving node replays is not labelled
// again), its label and a model whose score is distance / 4000 (imported).
const std::string kTrips = trips_definitions(R"(max_label_delay = "2d", label_grace = "1h")");

TEST(Quality, LiveQualityFromDelayedLabelsEqualsBruteForceAndCountsWhatDidNotJoin) {
  serving_node s(kTrips);
  ASSERT_TRUE(s.ready);
  auto& c = *s.c;
  const std::string pt = s.dir.path + "/by_distance.pt";
  ASSERT_EQ(std::system(("/usr/bin/python3 " TSR_SOURCE_DIR
                         "/tests/training/make_special_torchscript.py " +
                         pt + " 2 by_distance")
                            .c_str()),
            0);
  auto v = c.import_model("trip_model", "trip_late", read_file(pt));
  ASSERT_TRUE(v) << failure_text(v);
  ASSERT_TRUE(c.promote_model("trip_model", *v, "production"));
  ASSERT_TRUE(serves(c, "trip_model", *v));

  // 300 flights with distinct keys (route and scheduled departure).
  const std::vector<const flight*> fl = distinct_trips(300);
  ASSERT_EQ(fl.size(), 300u);
  // Predicted: 0..249. Labelled: 0..199 and 250..299 (never predicted), 7 twice.
  std::vector<client::example> ex;
  for (size_t i = 0; i < 250; ++i) ex.push_back(departure(*fl[i], "T" + std::to_string(i)));
  for (size_t at = 0; at < ex.size(); at += 50) {
    std::vector<client::example> part(ex.begin() + static_cast<long>(at),
                                      ex.begin() + static_cast<long>(at + 50));
    auto r = c.predict("trip_model", part);
    ASSERT_TRUE(r) << failure_text(r);
    for (auto& p : *r) ASSERT_TRUE(p.ok()) << p.error;
  }
  // Labels come hours after their predictions: the monitor has read the logged predictions
  // before they are sent.
  ASSERT_TRUE(eventually(
      [&] {
        auto r = c.status();
        if (!r) return false;
        for (auto m : (*r)->getQuality())
          if (m.getModel() == "trip_model" && m.getPredictions() == 250) return true;
        return false;
      },
      std::chrono::seconds(60)));
  std::vector<client::event> labels;
  for (size_t i = 0; i < 300; ++i)
    if (i < 200 || i >= 250) labels.push_back(trip_event(*fl[i]));
  labels.push_back(trip_event(*fl[7]));  // a duplicate label
  // Two later trips, sent one after the other, move event time on (each within the stream's
  // max_jump) past every prediction's 2-day wait and every label's grace; the first is then
  // counted unmatched (never predicted), the second still waits.
  int64_t last = 0;
  for (auto* f : fl) last = std::max(last, f->arrival);
  flight later = *fl[0], latest = *fl[0];
  later.time = last + 36 * 3600LL * 1000000;
  latest.time = later.time + 36 * 3600LL * 1000000;
  auto ing = c.ingest("trips", labels, "labels-1");
  ASSERT_TRUE(ing) << failure_text(ing);
  ASSERT_EQ(ing->rejected.size(), 0u);
  // (Sent once the others are read: event time moves on in order, as a live stream's does.)
  ASSERT_TRUE(eventually(
      [&] {
        auto r = c.status();
        if (!r) return false;
        for (auto m : (*r)->getQuality())
          if (m.getModel() == "trip_model" && m.getLabels() == labels.size()) return true;
        return false;
      },
      std::chrono::seconds(60)));
  for (auto [f, id, seen] : {std::tuple{&later, "labels-2", labels.size() + 1},
                             std::tuple{&latest, "labels-3", labels.size() + 2}}) {
    ing = c.ingest("trips", {trip_event(*f)}, id);
    ASSERT_TRUE(ing) << failure_text(ing);
    ASSERT_EQ(ing->rejected.size(), 0u);
    ASSERT_TRUE(eventually(
        [&, seen = seen] {
          auto r = c.status();
          if (!r) return false;
          for (auto m : (*r)->getQuality())
            if (m.getModel() == "trip_model" && m.getLabels() == seen) return true;
          return false;
        },
        std::chrono::seconds(60)));
  }

  // Expected: 200 pairs (score distance / 4000, label delay > 15).
  std::vector<std::pair<float, bool>> want;
  for (size_t i = 0; i < 200; ++i)
    want.emplace_back(static_cast<float>(std::min(1.0, fl[i]->distance / 4000)), fl[i]->delay > 15);
  double wins = 0, pairs = 0, loss = 0, correct = 0;
  for (auto& [s1, y1] : want) {
    const double cl = std::clamp(static_cast<double>(s1), 1e-7, 1 - 1e-7);
    loss += y1 ? -std::log(cl) : -std::log(1 - cl);
    correct += (s1 >= 0.5f) == y1;
    if (!y1) continue;
    for (auto& [s2, y2] : want)
      if (!y2) pairs += 1, wins += s1 > s2 ? 1 : s1 == s2 ? 0.5 : 0;
  }
  ASSERT_GT(pairs, 0);

  bool done = eventually(
      [&] {
        auto r = c.status();
        if (!r) return false;
        for (auto m : (*r)->getQuality())
          if (m.getModel() == "trip_model" && m.getJoined() >= 200 && m.getUnmatched() >= 51 &&
              m.getUnlabelled() >= 50)
            return true;
        return false;
      },
      std::chrono::seconds(60));
  if (!done) {
    std::string js;
    run_cli("status --json --rpc " + s.h->rpc(), &js);
    const auto at = js.find("\"quality\"");
    FAIL() << (at == std::string::npos ? js : js.substr(at, 1500));
  }
  auto st = c.status();
  ASSERT_TRUE(st) << failure_text(st);
  bool found = false;
  for (auto m : (*st)->getQuality()) {
    if (m.getModel() != "trip_model") continue;
    found = true;
    EXPECT_EQ(m.getPredictions(), 250u);
    EXPECT_EQ(m.getJoined(), 200u);
    EXPECT_EQ(m.getUnlabelled(), 50u);
    EXPECT_EQ(m.getUnmatched(), 51u);  // the never-predicted, and the first later trip
    EXPECT_EQ(m.getDuplicateLabels(), 1u);
    EXPECT_EQ(m.getLate(), 0u);
    ASSERT_EQ(m.getArms().size(), 1u);
    auto a = m.getArms()[0];
    EXPECT_EQ(std::string(a.getStage().cStr()), "production");
    EXPECT_EQ(a.getVersion(), *v);
    EXPECT_EQ(a.getPairs(), 200u);
    EXPECT_NEAR(a.getAuc(), wins / pairs, 1e-9);
    EXPECT_NEAR(a.getLogLoss(), loss / 200, 1e-6);
    EXPECT_NEAR(a.getAccuracy(), correct / 200, 1e-12);
    EXPECT_LT(a.getAucLow(), a.getAuc());
    EXPECT_GT(a.getAucHigh(), a.getAuc());
    EXPECT_GT(a.getLabelLagP50Ms(), 30 * 60e3);  // an arrival is at least 30 min after departure
  }
  EXPECT_TRUE(found);
  std::string out;
  ASSERT_EQ(run_cli("status --rpc " + s.h->rpc(), &out), 0) << out;
  EXPECT_NE(out.find("quality trip_model: 250 predictions"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::test
