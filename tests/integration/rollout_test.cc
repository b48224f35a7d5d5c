// Rollout (issue 16, in part): a canary serves a stable share of the label entities, sticky per
// entity, across requests and a node restart, and a larger share keeps the entities a smaller
// one had; shadows score the same vectors off the answer's path, never change an answer, and a
// shadow that is slow or fails is skipped and counted.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>

#include "cluster/registry.h"
#include "definitions.h"
#include "serving_support.h"

namespace tessera::test {
namespace {

using client::example;

// 10,000 label entities (routes nobody flew: features missing, imputed by the model).
std::vector<example> synthetic_routes(size_t n) {
  std::vector<example> out;
  for (size_t i = 0; i < n; ++i) {
    example e;
    e.fields = {{"origin", "O" + std::to_string(i)},
                {"destination", "D" + std::to_string(i % 97)},
                {"distance", 500.0},
                {"date", client::timestamp{kJan8 + 3600LL * 1000000}}};
    out.push_back(std::move(e));
  }
  return out;
}

// Per entity (by index), the version that answered; fails the test on any failed example.
std::vector<uint32_t> versions_of(client::connection& c, const std::vector<example>& ex,
                                  std::map<uint32_t, std::string>* stages = nullptr) {
  std::vector<uint32_t> out;
  for (size_t at = 0; at < ex.size(); at += 1000) {
    std::vector<example> part(ex.begin() + static_cast<long>(at),
                              ex.begin() + static_cast<long>(std::min(ex.size(), at + 1000)));
    auto r = c.predict("late_mlp", part);
    EXPECT_TRUE(r) << failure_text(r);
    if (!r) return out;
    for (auto& p : *r) {
      EXPECT_TRUE(p.ok()) << p.error;
      out.push_back(p.version);
      if (stages) (*stages)[p.version] = p.stage;
    }
  }
  return out;
}

bool canary_loaded(client::connection& c, uint32_t version, double share) {
  return eventually(
      [&] {
        auto st = c.status();
        if (!st) return false;
        for (auto m : (*st)->getModels())
          if (m.getModel() == "late_mlp" && m.getVersion() == version && m.getStage() == "canary" &&
              m.getShare() == share)
            return true;
        return false;
      },
      std::chrono::seconds(30));
}

TEST(Rollout, ACanaryServesItsShareStickyPerEntityAcrossRequestsAndARestart) {
  serving_node s;
  ASSERT_TRUE(s.ready);
  auto& c = s.c;
  std::string out;
  auto exported = c->export_model("late_mlp", 1);
  ASSERT_TRUE(exported) << failure_text(exported);
  auto v2 = c->import_model("late_mlp", "late", exported->artifact);
  ASSERT_TRUE(v2) << failure_text(v2);
  ASSERT_EQ(*v2, 2u);

  // Bad input: a share outside [0, 1], a canary that does not exist, a share off canary.
  auto st = c->promote_model("late_mlp", 2, "canary", 1.5);
  EXPECT_EQ(st.error_code(), errc::invalid) << failure_text(st);
  EXPECT_NE(st.error_message().find("outside [0, 1]"), std::string::npos) << failure_text(st);
  st = c->promote_model("late_mlp", 9, "canary", 0.2);
  EXPECT_EQ(st.error_code(), errc::not_found) << failure_text(st);
  st = c->promote_model("late_mlp", 2, "shadow", 0.2);
  EXPECT_EQ(st.error_code(), errc::invalid) << failure_text(st);
  EXPECT_EQ(run_cli("models canary late_mlp --share 0.2 --rpc " + s.h->rpc(), &out), 2) << out;
  EXPECT_NE(out.find("has no canary"), std::string::npos) << out;

  ASSERT_EQ(
      run_cli("models promote late_mlp 2 --stage canary --share 0.2 --rpc " + s.h->rpc(), &out), 0)
      << out;
  ASSERT_TRUE(canary_loaded(*c, 2, 0.2));
  const auto ex = synthetic_routes(10000);
  std::map<uint32_t, std::string> stages;
  const auto first = versions_of(*c, ex, &stages);
  ASSERT_EQ(first.size(), ex.size());
  const double share = static_cast<double>(std::count(first.begin(), first.end(), 2u)) /
                       static_cast<double>(first.size());
  std::cerr << "canary share over 10,000 entities: " << share << "\n";
  EXPECT_NEAR(share, 0.2, 0.02);
  EXPECT_EQ(stages[2], "canary");
  EXPECT_EQ(stages[1], "production");
  EXPECT_EQ(versions_of(*c, ex), first);  // sticky across requests

  // A larger share moves only entities into the canary, none out of it.
  ASSERT_EQ(run_cli("models canary late_mlp --share 0.3 --rpc " + s.h->rpc(), &out), 0) << out;
  ASSERT_TRUE(canary_loaded(*c, 2, 0.3));
  const auto wider = versions_of(*c, ex);
  ASSERT_EQ(wider.size(), ex.size());
  size_t moved_out = 0, moved_in = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    moved_out += first[i] == 2 && wider[i] != 2;
    moved_in += first[i] != 2 && wider[i] == 2;
  }
  EXPECT_EQ(moved_out, 0u);
  EXPECT_NEAR(static_cast<double>(moved_in) / ex.size(), 0.1, 0.02);

  // The same assignment after the node restarts.
  s.start();
  ASSERT_TRUE(s.h->n);
  ASSERT_TRUE(canary_loaded(*c, 2, 0.3));
  EXPECT_EQ(versions_of(*c, ex), wider);
}

// The slots of A/B arms: an arm that stays keeps its slots, a share change moves only the
// difference, a new arm takes only production's slots.
TEST(Rollout, ArmRangesMoveOnlyTheEntitiesAShareChangeMust) {
  auto slots = [](const std::vector<slot_range>& r) {
    uint64_t n = 0;
    for (auto& [a, b] : r) n += b - a;
    return n;
  };
  auto first = arm_ranges({}, {{3, 0.5}, {4, 0.3}});
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(slots(first[0]), share_slots(0.5));
  EXPECT_EQ(slots(first[1]), share_slots(0.3));
  // Arm 3 shrinks to 0.2 and arm 5 comes: arm 4 keeps all of its slots, arm 3 a subset of its.
  auto second = arm_ranges({{3, first[0]}, {4, first[1]}}, {{3, 0.2}, {4, 0.3}, {5, 0.4}});
  EXPECT_EQ(second[1], first[1]);
  EXPECT_EQ(slots(second[0]), share_slots(0.2));
  EXPECT_EQ(slots(second[2]), share_slots(0.4));
  for (uint64_t probe = 0; probe < kSlots; probe += kSlots / 9973) {
    if (in_ranges(second[0], probe)) EXPECT_TRUE(in_ranges(first[0], probe)) << probe;
    // Arm 5 takes only slots that arm 4 does not hold.
    if (in_ranges(second[2], probe)) EXPECT_FALSE(in_ranges(second[1], probe)) << probe;
  }
}

bool arms_loaded(client::connection& c, const std::map<uint32_t, double>& arms) {
  return eventually(
      [&] {
        auto st = c.status();
        if (!st) return false;
        size_t seen = 0;
        for (auto m : (*st)->getModels())
          if (m.getModel() == "late_mlp" && arms.count(m.getVersion()) &&
              std::string(m.getArm().cStr()) == "ab" && m.getShare() == arms.at(m.getVersion()))
            ++seen;
        return seen == arms.size();
      },
      std::chrono::seconds(30));
}

TEST(Rollout, ABArmsServeTheirSharesStickyAndStatusCountsEachArm) {
  serving_node s;
  ASSERT_TRUE(s.ready);
  auto& c = s.c;
  std::string out;
  auto exported = c->export_model("late_mlp", 1);
  ASSERT_TRUE(exported) << failure_text(exported);
  for (uint32_t v : {2u, 3u}) {
    auto imported = c->import_model("late_mlp", "late", exported->artifact);
    ASSERT_TRUE(imported) << failure_text(imported);
    ASSERT_EQ(*imported, v);
  }

  // Bad input: a share outside [0, 1], a version that does not exist, shares over 1, an arm
  // beside a canary.
  auto st = c->set_ab_arms("late_mlp", {{2, 1.5}});
  EXPECT_EQ(st.error_code(), errc::invalid) << failure_text(st);
  EXPECT_NE(st.error_message().find("outside [0, 1]"), std::string::npos) << failure_text(st);
  st = c->set_ab_arms("late_mlp", {{2, -0.1}});
  EXPECT_EQ(st.error_code(), errc::invalid) << failure_text(st);
  st = c->set_ab_arms("late_mlp", {{9, 0.2}});
  EXPECT_EQ(st.error_code(), errc::not_found) << failure_text(st);
  EXPECT_NE(st.error_message().find("has no version 9"), std::string::npos) << failure_text(st);
  st = c->set_ab_arms("late_mlp", {{2, 0.6}, {3, 0.5}});
  EXPECT_EQ(st.error_code(), errc::invalid) << failure_text(st);
  EXPECT_NE(st.error_message().find("over 1"), std::string::npos) << failure_text(st);
  EXPECT_EQ(run_cli("models ab late_mlp --arm 2=abc --rpc " + s.h->rpc(), &out), 2) << out;
  EXPECT_EQ(run_cli("models ab late_mlp --arm 2=1.2 --rpc " + s.h->rpc(), &out), 2) << out;
  EXPECT_NE(out.find("outside [0, 1]"), std::string::npos) << out;
  ASSERT_TRUE(c->promote_model("late_mlp", 3, "canary", 0.1));
  st = c->set_ab_arms("late_mlp", {{2, 0.5}});
  EXPECT_EQ(st.error_code(), errc::invalid) << failure_text(st);
  EXPECT_NE(st.error_message().find("has a canary"), std::string::npos) << failure_text(st);
  ASSERT_TRUE(c->promote_model("late_mlp", 3, "candidate"));

  ASSERT_EQ(run_cli("models ab late_mlp --arm 2=0.5 --arm 3=0.3 --rpc " + s.h->rpc(), &out), 0)
      << out;
  ASSERT_TRUE(arms_loaded(*c, {{2, 0.5}, {3, 0.3}}));
  EXPECT_EQ(c->promote_model("late_mlp", 2, "canary", 0.1).error_code(), errc::invalid);

  // Shares within 2 points over 10,000 entities, the stage of each answer "ab" for the arms.
  const auto ex = synthetic_routes(10000);
  std::map<uint32_t, std::string> stages;
  std::map<uint32_t, uint64_t> observed;
  std::map<uint32_t, double> score_sum;
  auto predict_all = [&] {
    std::vector<uint32_t> versions;
    for (size_t at = 0; at < ex.size(); at += 1000) {
      std::vector<example> part(ex.begin() + static_cast<long>(at),
                                ex.begin() + static_cast<long>(std::min(ex.size(), at + 1000)));
      auto r = c->predict("late_mlp", part);
      EXPECT_TRUE(r) << failure_text(r);
      if (!r) return versions;
      for (auto& p : *r) {
        EXPECT_TRUE(p.ok()) << p.error;
        versions.push_back(p.version);
        stages[p.version] = p.stage;
        ++observed[p.version];
        score_sum[p.version] += p.score;
      }
    }
    return versions;
  };
  const auto first = predict_all();
  ASSERT_EQ(first.size(), ex.size());
  auto share_of = [&](const std::vector<uint32_t>& vs, uint32_t v) {
    return static_cast<double>(std::count(vs.begin(), vs.end(), v)) /
           static_cast<double>(vs.size());
  };
  std::cerr << "A/B over 10,000 entities: v2 " << share_of(first, 2) << ", v3 "
            << share_of(first, 3) << ", production " << share_of(first, 1) << "\n";
  EXPECT_NEAR(share_of(first, 2), 0.5, 0.02);
  EXPECT_NEAR(share_of(first, 3), 0.3, 0.02);
  EXPECT_NEAR(share_of(first, 1), 0.2, 0.02);
  EXPECT_EQ(stages[2], "ab");
  EXPECT_EQ(stages[3], "ab");
  EXPECT_EQ(stages[1], "production");
  EXPECT_EQ(predict_all(), first);  // sticky across requests

  // Per arm in status: the examples each version answered, as the client saw them, and the
  // mean of their scores.
  auto status = c->status();
  ASSERT_TRUE(status) << failure_text(status);
  size_t arms_seen = 0;
  for (auto m : (*status)->getModels()) {
    if (m.getModel() != "late_mlp" || !observed.count(m.getVersion())) continue;
    ++arms_seen;
    EXPECT_EQ(m.getRequests(), observed[m.getVersion()]) << "v" << m.getVersion();
    EXPECT_EQ(m.getScores(), observed[m.getVersion()]) << "v" << m.getVersion();
    EXPECT_NEAR(m.getMeanScore(), score_sum[m.getVersion()] / observed[m.getVersion()], 1e-6);
    EXPECT_EQ(std::string(m.getArm().cStr()), m.getVersion() == 1 ? "" : "ab");
  }
  EXPECT_EQ(arms_seen, 3u);
  ASSERT_EQ(run_cli("status --rpc " + s.h->rpc(), &out), 0) << out;
  EXPECT_NE(out.find("ab 50%"), std::string::npos) << out;

  // models show: the arms and what production keeps.
  ASSERT_EQ(run_cli("models show late_mlp --json --rpc " + s.h->rpc(), &out), 0) << out;
  auto shown = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(shown["model"]["ab"],
            nlohmann::json::parse(R"([{"version":2,"share":0.5},{"version":3,"share":0.3}])"));
  EXPECT_NEAR(shown["model"]["production_share"].get<double>(), 0.2, 1e-9);
  EXPECT_EQ(shown["model"]["production"], 1);
  EXPECT_EQ(shown["version"], 1);
  ASSERT_EQ(run_cli("models show late_mlp --rpc " + s.h->rpc(), &out), 0) << out;
  EXPECT_NE(out.find("A/B arms: v2 50%, v3 30%"), std::string::npos) << out;

  // Arm 2 shrinks to 0.4: only its entities move (to production), arm 3 keeps all of its.
  ASSERT_EQ(run_cli("models ab late_mlp --arm 2=0.4 --arm 3=0.3 --rpc " + s.h->rpc(), &out), 0)
      << out;
  ASSERT_TRUE(arms_loaded(*c, {{2, 0.4}, {3, 0.3}}));
  const auto after = predict_all();
  ASSERT_EQ(after.size(), ex.size());
  size_t moved = 0, wrong = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    if (after[i] == first[i]) continue;
    ++moved;
    wrong += !(first[i] == 2 && after[i] == 1);
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_NEAR(static_cast<double>(moved) / ex.size(), 0.1, 0.02);

  // --clear: production answers for every entity again.
  ASSERT_EQ(run_cli("models ab late_mlp --clear --rpc " + s.h->rpc(), &out), 0) << out;
  ASSERT_TRUE(eventually(
      [&] {
        auto r = c->predict("late_mlp", std::vector<example>(ex.begin(), ex.begin() + 200));
        if (!r) return false;
        for (auto& p : *r)
          if (p.version != 1) return false;
        return true;
      },
      std::chrono::seconds(30)));
}

TEST(Rollout, AShadowNeverChangesAnAnswerAndIsSkippedAndCountedWhenSlow) {
  serving_node s;
  ASSERT_TRUE(s.ready);
  auto& dir = s.dir;
  auto& c = s.c;
  std::string out;
  ASSERT_TRUE(serves(*c, "late_mlp", 1));
  std::vector<example> ex;
  for (const flight& f : slice())
    if (f.time >= kJan8 && ex.size() < 400)
      ex.push_back(departure(f, "s" + std::to_string(ex.size())));
  // Calls of 20 examples, before and after: one forward pass of the same rows each time.
  auto predict_all = [&] {
    std::vector<client::prediction> all;
    for (size_t at = 0; at < ex.size(); at += 20) {
      std::vector<example> part(ex.begin() + static_cast<long>(at),
                                ex.begin() + static_cast<long>(at + 20));
      auto r = c->predict("late_mlp", part);
      EXPECT_TRUE(r) << failure_text(r);
      if (r)
        for (auto& p : *r) all.push_back(std::move(p));
    }
    return all;
  };
  const auto before = predict_all();
  ASSERT_EQ(before.size(), ex.size());

  // A shadow that takes ~0.4 s for a far flight and answers 0.75 for the others.
  auto v2 = c->import_model("late_mlp", "late", special(dir.path, "slow_when_far"));
  ASSERT_TRUE(v2) << failure_text(v2);
  ASSERT_TRUE(c->promote_model("late_mlp", *v2, "shadow"));
  ASSERT_TRUE(eventually(
      [&] {
        auto st = c->status();
        if (!st) return false;
        for (auto m : (*st)->getModels())
          if (m.getVersion() == *v2 && m.getStage() == "shadow") return true;
        return false;
      },
      std::chrono::seconds(30)));
  const auto after = predict_all();  // many calls: the shadow falls behind the far flights
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].score, before[i].score) << i;  // identical answers, bit for bit
    EXPECT_EQ(after[i].version, 1u);
    EXPECT_EQ(after[i].stage, "production");
  }
  // The shadow's scores are logged as such; what it could not score in time is counted.
  uint64_t skipped = 0, scored = 0;
  ASSERT_TRUE(eventually(
      [&] {
        auto st = c->status();
        if (!st) return false;
        for (auto m : (*st)->getModels())
          if (m.getVersion() == *v2) skipped = m.getShadowSkipped(), scored = m.getRequests();
        return skipped + scored == ex.size();
      },
      std::chrono::seconds(60)))
      << skipped << " skipped + " << scored << " scored of " << ex.size();
  EXPECT_GT(skipped, 0u);
  EXPECT_GT(scored, 0u);
  std::cerr << "shadow: " << scored << " scored, " << skipped << " skipped\n";
  auto page = c->tail_predictions("late_mlp", 2000);
  ASSERT_TRUE(page) << failure_text(page);
  size_t shadow_records = 0;
  for (auto& line : page->records) {
    auto j = nlohmann::json::parse(line);
    if (j["path"] == "shadow") {
      ++shadow_records;
      EXPECT_EQ(j["version"], *v2);
      EXPECT_EQ(j["score"], 0.75);
    }
  }
  EXPECT_EQ(shadow_records, scored);
}

// Fallbacks: a constant or another model answers when the model fails, misses its deadline
// (a reserve of the caller's deadline is kept for the fallback) or sees stale features; bad
// input never falls back; a cycle of fallbacks is refused when definitions load.
const char* kFallbackModels = R"(
model { name = "const_fb", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        fallback = { constant = 0.2 } }
model { name = "model_fb", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        fallback = { model = "late_mlp", reserve = "2900ms" } }
model { name = "stale_fb", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        max_feature_age = "1s", fallback = { constant = 0.3 } }
)";

TEST(Rollout, EachFallbackTriggerAnswersWithItsPathAndBadInputNeverFallsBack) {
  serving_node s(kFallbackModels);
  ASSERT_TRUE(s.ready);
  auto& dir = s.dir;
  auto& c = s.c;
  std::string out;
  for (auto [name, kind] : {std::pair{"const_fb", "nan_when_far"},
                            {"model_fb", "slow_when_far"},
                            {"stale_fb", "nan_when_far"}}) {
    auto v = c->import_model(name, "late", special(dir.path, kind));
    ASSERT_TRUE(v) << failure_text(v);
    ASSERT_TRUE(c->promote_model(name, *v, "production"));
    ASSERT_TRUE(serves(*c, name, *v)) << name;
  }
  ASSERT_TRUE(serves(*c, "late_mlp", 1));
  const flight *near = nullptr, *far = nullptr;
  for (const flight& f : slice()) {
    if (f.time < kJan8) continue;
    if (!near && f.distance < 800) near = &f;
    if (!far && f.distance > 2100) far = &f;
  }
  ASSERT_TRUE(near && far);

  // The model fails (a NaN score): the constant answers, the path says why.
  auto r = c->predict("const_fb", {departure(*near), departure(*far)});
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_TRUE((*r)[0].ok()) << (*r)[0].error;
  EXPECT_EQ((*r)[0].score, 0.25);
  EXPECT_EQ((*r)[0].path, "model");
  EXPECT_TRUE((*r)[1].ok()) << (*r)[1].error;
  EXPECT_EQ((*r)[1].score, 0.2);
  EXPECT_EQ((*r)[1].path, "fallback: model error (constant)");
  EXPECT_EQ((*r)[1].stage, "fallback");

  // The model would miss the deadline (it gets 100 ms of 3 s; a far flight takes ~0.4 s): the
  // fallback model answers, as it would have alone.
  client::predict_options o;
  o.deadline = std::chrono::milliseconds(3000);
  r = c->predict("model_fb", {departure(*far)}, o);
  ASSERT_TRUE(r) << failure_text(r);
  ASSERT_TRUE((*r)[0].ok()) << (*r)[0].error;
  EXPECT_EQ((*r)[0].path, "fallback: deadline (model late_mlp)");
  auto alone = c->predict("late_mlp", {departure(*far)});
  ASSERT_TRUE(alone) << failure_text(alone);
  EXPECT_EQ((*r)[0].score, (*alone)[0].score);
  EXPECT_EQ((*r)[0].version, 1u);

  // Features older than the model's bound (1 s): the constant answers.
  r = c->predict("stale_fb", {departure(*near)});
  ASSERT_TRUE(r) << failure_text(r);
  ASSERT_TRUE((*r)[0].ok()) << (*r)[0].error;
  EXPECT_EQ((*r)[0].score, 0.3);
  EXPECT_EQ((*r)[0].path, "fallback: stale features (constant)");

  // Bad input is the caller's to fix: no fallback.
  auto bad = departure(*near);
  bad.fields.erase(bad.fields.begin() + 1);
  r = c->predict("const_fb", {bad});
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_EQ((*r)[0].code, errc::invalid);

  // Fallbacks are counted.
  auto st = c->status();
  ASSERT_TRUE(st) << failure_text(st);
  uint64_t fallbacks = 0;
  for (auto m : (*st)->getModels()) fallbacks += m.getFallbacks();
  EXPECT_EQ(fallbacks, 3u);
}

TEST(Rollout, ACycleOfFallbacksIsRefusedWhenDefinitionsLoad) {
  temp_dir dir;
  const std::string defs = slice_example_definitions(dir.path, "cycle", false, R"(
model { name = "a", label = "late", split = split, fallback = { model = "b" } }
model { name = "b", label = "late", split = split, fallback = { model = "a" } }
)");
  auto loaded = definitions::load_file(defs);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error_message().find("fallback cycle: a -> b -> a"), std::string::npos)
      << loaded.error_message();
  const std::string unknown = slice_example_definitions(dir.path, "unknown", false, R"(
model { name = "a", label = "late", split = split, fallback = { model = "nope" } }
)");
  loaded = definitions::load_file(unknown);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error_message().find("fallback model 'nope' is not defined"), std::string::npos)
      << loaded.error_message();
}

}  // namespace
}  // namespace tessera::test
