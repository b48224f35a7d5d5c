// Rules and chained models (issue 16, in part): rules turn a model's score and features into a
// decision (first rule that holds, top_k, the fallback's answers decided too, a Lua rule that
// loops gives on_error); a model takes another model's score as an input. Split from
// rollout_test.cc, which keeps traffic splits, shadows and fallbacks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>

#include "definitions.h"
#include "serving_support.h"

namespace tessera::test {
namespace {

using client::example;

// Rules: the first rule that holds turns the score and the features into a decision, top_k ranks
// within the call, the fallback's answers are decided too, and a Lua rule that loops gives the
// rules' on_error label without failing or holding up the prediction; counted, shown in status and
// `models show`. The scores come from a model whose score is distance / 4000, so every expected
// decision is worked out here from the flight's own distance and the returned feature values.
const char* kRuledModels = R"(
model { name = "ruled", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        rules = {
          { name = "thin_history", when = "route_delay.count_7d < 2", decision = "unknown" },
          { name = "top", top_k = 1, decision = "review" },
          { name = "late", when = "score >= 0.5", decision = "late" },
          { name = "default", decision = "on_time" },
          on_error = "undecided" } }
model { name = "ruled_fb", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        fallback = { constant = 0.6 },
        rules = { { when = "score >= 0.5", decision = "late" }, { decision = "on_time" } } }
model { name = "lua_ruled", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        rules = { lua = [[function(score, f)
          if f.distance > 2000 then return "far", "far_rule" end
          return f.origin == "ORD" and "hub" or "near" end]] } }
model { name = "lua_loops", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        rules = { lua = [[function(score, f) while true do end end]], on_error = "undecided" } }
)";

TEST(Rollout, RulesDecideFromTheScoreAndFeaturesAndAFailingRuleGivesItsOnErrorLabel) {
  serving_node s(kRuledModels);
  ASSERT_TRUE(s.ready);
  auto& c = s.c;
  for (auto [name, kind] : {std::pair{"ruled", "by_distance"},
                            {"ruled_fb", "nan_when_far"},
                            {"lua_ruled", "by_distance"},
                            {"lua_loops", "by_distance"}}) {
    auto v = c->import_model(name, "late", special(s.dir.path, kind));
    ASSERT_TRUE(v) << failure_text(v);
    ASSERT_TRUE(c->promote_model(name, *v, "production"));
    ASSERT_TRUE(serves(*c, name, *v)) << name;
  }
  std::vector<const flight*> fl;
  for (const flight& f : slice())
    if (f.time >= kJan8 && fl.size() < 40) fl.push_back(&f);
  ASSERT_EQ(fl.size(), 40u);
  std::vector<example> ex;
  for (auto* f : fl) ex.push_back(departure(*f));

  client::predict_options o;
  o.return_vector = true;
  auto r = c->predict("ruled", ex, o);
  ASSERT_TRUE(r) << failure_text(r);
  size_t top = 0;  // the call's highest score (the first of equals), by hand
  for (size_t i = 1; i < fl.size(); ++i)
    if (std::min(1.0, fl[i]->distance / 4000) > std::min(1.0, fl[top]->distance / 4000)) top = i;
  std::map<std::string, int> fired;
  for (size_t i = 0; i < fl.size(); ++i) {
    const auto& p = (*r)[i];
    ASSERT_TRUE(p.ok()) << p.error;
    const double score = std::min(1.0, fl[i]->distance / 4000);
    EXPECT_NEAR(p.score, score, 1e-6);
    double count = NAN;
    for (auto& f : p.features)
      if (f.name == "route_delay.count_7d") count = f.value;
    std::string want;
    if (count < 2)
      want = "unknown thin_history";
    else if (i == top)
      want = "review top";
    else if (score >= 0.5)
      want = "late late";
    else
      want = "on_time default";
    EXPECT_EQ(p.decision + " " + p.rule.substr(0, p.rule.find('@')), want)
        << fl[i]->origin << "-" << fl[i]->destination << " " << fl[i]->distance;
    EXPECT_EQ(p.rule.size(), p.rule.find('@') + 9) << p.rule;  // name@8 hex digits
    ++fired[p.rule.substr(0, p.rule.find('@'))];
  }
  EXPECT_GE(fired["default"], 1);  // the slice exercises more than one path
  EXPECT_GE(fired["top"] + fired["thin_history"], 1);

  // The fallback's answer is decided too: a far flight's NaN score falls back to 0.6 ("late").
  const flight *near = nullptr, *far = nullptr;
  for (const flight& f : slice()) {
    if (f.time < kJan8) continue;
    if (!near && f.distance < 800) near = &f;
    if (!far && f.distance > 2100) far = &f;
  }
  ASSERT_TRUE(near && far);
  r = c->predict("ruled_fb", {departure(*near), departure(*far)});
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_EQ((*r)[0].path, "model");
  EXPECT_EQ((*r)[0].decision, "on_time");  // 0.25
  EXPECT_EQ((*r)[1].path, "fallback: model error (constant)");
  EXPECT_EQ((*r)[1].decision, "late");
  EXPECT_EQ((*r)[1].rule.substr(0, 6), "rule1@");

  // A Lua function reads the features and the example's fields by name.
  r = c->predict("lua_ruled", ex);
  ASSERT_TRUE(r) << failure_text(r);
  for (size_t i = 0; i < fl.size(); ++i) {
    const std::string want = fl[i]->distance > 2000   ? "far far_rule"
                             : fl[i]->origin == "ORD" ? "hub lua"
                                                      : "near lua";
    EXPECT_EQ((*r)[i].decision + " " + (*r)[i].rule.substr(0, (*r)[i].rule.find('@')), want);
  }

  // A rule that loops: on_error answers, the score stands, every one counted.
  const auto t0 = std::chrono::steady_clock::now();
  r = c->predict("lua_loops", {departure(*near), departure(*far)});
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  for (auto& p : *r) {
    EXPECT_TRUE(p.ok()) << p.error;
    EXPECT_EQ(p.decision, "undecided");
    EXPECT_EQ(p.rule.substr(0, 9), "on_error@");
  }
  EXPECT_NEAR((*r)[0].score, std::min(1.0, near->distance / 4000), 1e-6);
  auto st = c->status();
  ASSERT_TRUE(st) << failure_text(st);
  uint64_t failures = 0;
  std::string rules;
  for (auto m : (*st)->getModels()) {
    if (m.getModel() == "lua_loops") failures += m.getRuleFailures();
    if (m.getModel() == "ruled") rules = m.getRules();
  }
  EXPECT_EQ(failures, 2u);
  EXPECT_EQ(rules.substr(0, 9), "4 rules @") << rules;

  // `models show` lists the rules in order with their conditions.
  std::string out;
  ASSERT_EQ(run_cli("models show ruled --rpc " + s.h->rpc(), &out), 0) << out;
  const auto a = out.find("thin_history"), b = out.find("route_delay.count_7d < 2"),
             t = out.find("top 1 of the call"), d = out.find("(always)");
  EXPECT_TRUE(a != std::string::npos && b != std::string::npos && t != std::string::npos &&
              d != std::string::npos && a < t && t < d)
      << out;
  // `tessera predict` prints the decision.
  char date[32];
  const time_t secs = static_cast<time_t>(far->time / 1000000);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&secs));
  ASSERT_EQ(run_cli("predict --json ruled_fb origin=" + far->origin + " destination=" +
                        far->destination + " distance=" + std::to_string(far->distance) +
                        " date=" + date + " --rpc " + s.h->rpc(),
                    &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out.substr(out.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j.value("decision", ""), "late") << out;
  EXPECT_EQ(j.value("rule", "").substr(0, 6), "rule1@") << out;
}

// Chained models: a model takes another model's score on the same example as an input; the
// upstream's production version is scored first at the same prediction time.
const char* kChainedModels = R"(
model { name = "chained", label = "late", kind = "logistic", epochs = 1, seed = 7, split = split,
        features = { "model:late_mlp", "distance", "route_delay.count_7d" } }
)";

TEST(Rollout, AChainedModelScoresWithTheUpstreamScoreAsAnInput) {
  serving_node s(kChainedModels);
  ASSERT_TRUE(s.ready);
  auto& c = s.c;
  std::string out;
  // Training a chained model is refused, saying why (its dataset has no upstream score column).
  EXPECT_EQ(run_cli("train chained --quiet --rpc " + s.h->rpc(), &out), 2) << out;
  EXPECT_NE(out.find("training a chained model is not supported yet"), std::string::npos) << out;

  // sigmoid(0.5 (upstream + distance + count_7d) - 1), imported with the model's own inputs.
  const std::string pt = s.dir.path + "/chained.pt";
  const std::string make =
      "/usr/bin/python3 " TSR_SOURCE_DIR "/tests/training/make_torchscript.py " + pt + " 3";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  auto v = c->import_model("chained", "late", read_file(pt));
  ASSERT_TRUE(v) << failure_text(v);
  ASSERT_TRUE(c->promote_model("chained", *v, "production"));
  ASSERT_TRUE(serves(*c, "chained", *v));
  ASSERT_EQ(run_cli("models show chained --rpc " + s.h->rpc(), &out), 0) << out;
  EXPECT_NE(out.find("takes the scores of: [\"late_mlp\"]"), std::string::npos) << out;

  std::vector<example> ex;
  for (const flight& f : slice())
    if (f.time >= kJan8 && ex.size() < 50)
      ex.push_back(departure(f, "c" + std::to_string(ex.size())));
  client::predict_options o;
  o.return_vector = true;
  auto up = c->predict("late_mlp", ex, o);
  ASSERT_TRUE(up) << failure_text(up);
  auto chained = c->predict("chained", ex, o);
  ASSERT_TRUE(chained) << failure_text(chained);
  ASSERT_EQ(chained->size(), ex.size());

  // The reference: the upstream's own answer and vector, fed by hand to python3-torch.
  std::ofstream rows(s.dir.path + "/chained_rows.csv");
  for (size_t i = 0; i < ex.size(); ++i) {
    const auto& u = (*up)[i];
    const auto& p = (*chained)[i];
    ASSERT_TRUE(u.ok()) << u.error;
    ASSERT_TRUE(p.ok()) << p.error;
    EXPECT_EQ(p.version, *v);
    EXPECT_EQ(p.prediction_time, u.prediction_time);
    ASSERT_EQ(p.features.size(), 3u);
    EXPECT_EQ(p.features[0].name, "model:late_mlp");
    EXPECT_EQ(static_cast<float>(p.features[0].value), static_cast<float>(u.score)) << i;
    auto feature_of = [&](const std::string& name) {
      for (auto& f : u.features)
        if (f.name == name) return f.value;
      ADD_FAILURE() << "late_mlp has no input " << name;
      return std::nan("");
    };
    auto cell = [](double x) { return std::isnan(x) ? std::string() : fmt::format("{:.9g}", x); };
    rows << cell(static_cast<float>(u.score)) << "," << cell(feature_of("distance")) << ","
         << cell(feature_of("route_delay.count_7d")) << "\n";
  }
  rows.close();
  const std::string score =
      "/usr/bin/python3 " TSR_SOURCE_DIR "/tests/training/score_torchscript.py " + pt + " " +
      s.dir.path + "/chained_rows.csv > " + s.dir.path + "/chained_py.txt";
  ASSERT_EQ(std::system(score.c_str()), 0) << score;
  std::ifstream py(s.dir.path + "/chained_py.txt");
  double max_diff = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    double ref;
    ASSERT_TRUE(py >> ref) << "python scored fewer rows than " << ex.size();
    max_diff = std::max(max_diff, std::fabs(ref - (*chained)[i].score));
  }
  EXPECT_LE(max_diff, 1e-6);
  std::cerr << "chained vs upstream fed by hand to python3-torch: max |difference| " << max_diff
            << "\n";
}

TEST(Rollout, AChainCycleOrAnUnknownUpstreamIsRefusedWhenDefinitionsLoad) {
  temp_dir dir;
  auto load = [&](const std::string& name, const std::string& models) {
    return definitions::load_file(slice_example_definitions(dir.path, name, false, models));
  };
  auto loaded = load("chain_cycle", R"(
model { name = "a", label = "late", split = split, features = { "model:b", "distance" } }
model { name = "b", label = "late", split = split, features = { "model:a", "distance" } }
)");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error_message().find("model cycle (chained scores and fallbacks): a -> b -> a"),
            std::string::npos)
      << loaded.error_message();
  // Through a fallback: a takes b's score, b falls back to a.
  loaded = load("mixed_cycle", R"(
model { name = "a", label = "late", split = split, features = { "model:b", "distance" } }
model { name = "b", label = "late", split = split, fallback = { model = "a" } }
)");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error_message().find("a -> b -> a"), std::string::npos)
      << loaded.error_message();
  loaded = load("self", R"(
model { name = "a", label = "late", split = split, features = { "model:a" } }
)");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error_message().find("a -> a"), std::string::npos) << loaded.error_message();
  loaded = load("unknown_upstream", R"(
model { name = "a", label = "late", split = split, features = { "model:nope", "distance" } }
)");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error_message().find("model 'nope' is not defined"), std::string::npos)
      << loaded.error_message();
  // A chain without a cycle loads.
  loaded = load("chain_ok", R"(
model { name = "a", label = "late", split = split, features = { "model:b", "distance" } }
model { name = "b", label = "late", split = split, fallback = { constant = 0.1 } }
)");
  EXPECT_TRUE(loaded) << loaded.error_message();
}

}  // namespace
}  // namespace tessera::test
