// The monitor survives its node's death (issue 17: "a monitoring actor that crashes (restarted
// from persisted state, nothing counted twice)"; "a node SIGKILLed (alerts neither lost nor
// fired twice)"). A `tessera node` process serves trip_model with live quality and an AUC
// objective it misses; it is SIGKILLed twice — once with predictions read after its last saved
// state, once right after its quality alert fired — and restarted on the same data dir. The
// figures at the end equal a brute-force computation over the pairs (as quality_test.cc's, with
// no restart), and the alert log holds the alert's firing once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <nlohmann/json.hpp>
#include <set>

#include "serving_support.h"

namespace tessera::test {
namespace {

struct quality_figures {
  uint64_t predictions = 0, labels = 0, joined = 0, unlabelled = 0, unmatched = 0, duplicates = 0;
  uint64_t saved_predictions = 0, verdicts = 0, pairs = 0;
  int64_t restored_at = 0;
  double auc = 0, log_loss = 0, accuracy = 0;
};

std::optional<quality_figures> figures(const std::string& rpc) {
  auto c = open_client(rpc);
  auto r = c->status();
  if (!r) return std::nullopt;
  for (auto m : (*r)->getQuality()) {
    if (m.getModel() != "trip_model") continue;
    quality_figures f;
    f.predictions = m.getPredictions();
    f.labels = m.getLabels();
    f.joined = m.getJoined();
    f.unlabelled = m.getUnlabelled();
    f.unmatched = m.getUnmatched();
    f.duplicates = m.getDuplicateLabels();
    f.saved_predictions = m.getSavedPredictions();
    f.verdicts = m.getVerdicts();
    f.restored_at = m.getRestoredAt();
    for (auto a : m.getArms()) {
      f.pairs = a.getPairs();
      f.auc = a.getAuc();
      f.log_loss = a.getLogLoss();
      f.accuracy = a.getAccuracy();
    }
    return f;
  }
  return std::nullopt;
}

bool wait_for(const std::string& rpc, const std::function<bool(const quality_figures&)>& ok) {
  return eventually(
      [&] {
        auto f = figures(rpc);
        return f && ok(*f);
      },
      std::chrono::seconds(90));
}

nlohmann::json alert_log(const std::string& rpc) {
  auto l = open_client(rpc)->alert_log(0);
  if (!l) return nlohmann::json::array();
  return nlohmann::json::parse(l->first, nullptr, false);
}

TEST(MonitorRestart, SigkilledNodesResumeFromTheSavedStateCountingNothingTwiceAndFiringOnce) {
  temp_dir dir;
  const std::string defs = slice_example_definitions(
      dir.path, "serving", true,
      trips_definitions(
          R"(max_label_delay = "2d", label_grace = "1h", min_pairs = 100, min_auc = 0.99)"));
  const std::string node_dir = dir.path + "/node";
  const std::string args = "--monitor-save-ms 4000";
  auto n = std::make_unique<node_process>(node_dir, "", "", args, defs);
  {
    auto c = open_client(n->rpc());
    const std::string pt = dir.path + "/by_distance.pt";
    ASSERT_EQ(std::system(("/usr/bin/python3 " TSR_SOURCE_DIR
                           "/tests/training/make_special_torchscript.py " +
                           pt + " 2 by_distance")
                              .c_str()),
              0);
    auto v = c->import_model("trip_model", "trip_late", read_file(pt));
    ASSERT_TRUE(v) << failure_text(v);
    ASSERT_TRUE(c->promote_model("trip_model", *v, "production"));
    ASSERT_TRUE(serves(*c, "trip_model", *v)) << n->log_tail();
  }

  // 300 flights with distinct keys; predicted 0..249; labelled 0..199 and 250..299, 7 twice.
  std::vector<const flight*> fl;
  std::set<std::string> keys;
  for (const flight& f : slice()) {
    if (f.time < kJan8 || fl.size() == 300) continue;
    if (keys.insert(f.origin + "-" + f.destination + "@" + std::to_string(f.time)).second)
      fl.push_back(&f);
  }
  ASSERT_EQ(fl.size(), 300u);
  auto predict = [&](size_t from, size_t to) {
    auto c = open_client(n->rpc());
    for (size_t at = from; at < to; at += 50) {
      std::vector<client::example> part;
      for (size_t i = at; i < std::min(to, at + 50); ++i) part.push_back(departure(*fl[i]));
      auto r = c->predict("trip_model", part);
      ASSERT_TRUE(r) << failure_text(r);
      for (auto& p : *r) ASSERT_TRUE(p.ok()) << p.error;
    }
  };

  // 1. 150 predictions saved, 100 more read but (most likely) not saved yet: SIGKILL.
  predict(0, 150);
  ASSERT_TRUE(wait_for(n->rpc(), [](auto& f) { return f.saved_predictions == 150; }))
      << n->log_tail();
  predict(150, 250);
  ASSERT_TRUE(wait_for(n->rpc(), [](auto& f) { return f.predictions == 250; }));
  const uint64_t saved = figures(n->rpc()).value_or(quality_figures{}).saved_predictions;
  n->kill(SIGKILL);
  std::printf("[ kill 1 ] the saved state counted %llu of the 250 predictions read\n",
              static_cast<unsigned long long>(saved));
  n = std::make_unique<node_process>(node_dir, "", "", args, defs);
  ASSERT_TRUE(wait_for(n->rpc(), [](auto& f) { return f.restored_at != 0; })) << n->log_tail();
  ASSERT_TRUE(wait_for(n->rpc(), [](auto& f) { return f.predictions >= 250; }));

  // 2. The labels, two later trips moving event time past every wait; the objective is missed
  //    (by_distance's live AUC is far below 0.99): quality_slo fires. SIGKILL right after.
  std::vector<client::event> labels;
  for (size_t i = 0; i < 300; ++i)
    if (i < 200 || i >= 250) labels.push_back(trip_event(*fl[i]));
  labels.push_back(trip_event(*fl[7]));
  int64_t last = 0;
  for (auto* f : fl) last = std::max(last, f->arrival);
  flight later = *fl[0], latest = *fl[0];
  later.time = last + 36 * 3600LL * 1000000;
  latest.time = later.time + 36 * 3600LL * 1000000;
  {
    auto c = open_client(n->rpc());
    auto ing = c->ingest("trips", labels, "labels-1");
    ASSERT_TRUE(ing) << failure_text(ing);
    ASSERT_TRUE(wait_for(n->rpc(), [&](auto& f) { return f.labels == labels.size(); }));
    for (auto [f, id, seen] : {std::tuple{&later, "labels-2", labels.size() + 1},
                               std::tuple{&latest, "labels-3", labels.size() + 2}}) {
      ing = c->ingest("trips", {trip_event(*f)}, id);
      ASSERT_TRUE(ing) << failure_text(ing);
      ASSERT_TRUE(wait_for(n->rpc(), [&, seen = seen](auto& f) { return f.labels == seen; }));
    }
  }
  const std::string key = "quality_slo.trip_model.v1";
  auto fired = [&](const nlohmann::json& log) {
    int n_fired = 0;
    for (auto& t : log) n_fired += t.value("key", "") == key && t.value("state", "") == "firing";
    return n_fired;
  };
  ASSERT_TRUE(eventually([&] { return fired(alert_log(n->rpc())) > 0; }, std::chrono::seconds(90)))
      << alert_log(n->rpc()).dump() << n->log_tail();
  n->kill(SIGKILL);

  // 3. The last restart: the pairs are back (so the objective is still missed and the alert
  //    stays firing), nothing is counted twice, and the alert fired once.
  n = std::make_unique<node_process>(node_dir, "", "", args, defs);
  ASSERT_TRUE(wait_for(n->rpc(), [](auto& f) { return f.restored_at != 0 && f.verdicts >= 5; }))
      << n->log_tail();
  ASSERT_TRUE(wait_for(n->rpc(), [](auto& f) { return f.unmatched >= 51 && f.unlabelled >= 50; }))
      << [&] {
           std::string js;
           run_cli("status --json --rpc " + n->rpc(), &js);
           const auto at = js.find("\"quality\"");
           return (at == std::string::npos ? js : js.substr(at, 1500)) + n->log_tail(40);
         }();

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
  const auto f = figures(n->rpc());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->predictions, 250u);
  EXPECT_EQ(f->labels, labels.size() + 2);
  EXPECT_EQ(f->joined, 200u);
  EXPECT_EQ(f->unlabelled, 50u);
  EXPECT_EQ(f->unmatched, 51u);
  EXPECT_EQ(f->duplicates, 1u);
  EXPECT_EQ(f->pairs, 200u);
  EXPECT_NEAR(f->auc, wins / pairs, 1e-9);
  EXPECT_NEAR(f->log_loss, loss / 200, 1e-6);
  EXPECT_NEAR(f->accuracy, correct / 200, 1e-12);

  const auto log = alert_log(n->rpc());
  EXPECT_EQ(fired(log), 1) << log.dump();
  for (auto& t : log) EXPECT_NE(t.value("state", ""), "resolved") << log.dump();
  auto now = nlohmann::json::parse(open_client(n->rpc())->alerts_json().value(), nullptr, false);
  bool firing = false;
  for (auto& a : now)
    firing = firing || (a.value("key", "") == key && a.value("state", "") == "firing");
  EXPECT_TRUE(firing) << now.dump();
  if (HasFailure()) std::printf("%s\n", n->log_tail(60).c_str());
}

}  // namespace
}  // namespace tessera::test
