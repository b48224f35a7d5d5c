// A model's rules (runtime/rules.h): the first rule that holds fires, top_k ranks within a call,
// names are checked when definitions load, and a Lua rule that errors, loops, allocates without
// bound or returns no label gives on_error without failing anything. Expected decisions are
// written out by hand from the rules' text, not computed by the code under test.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "definitions.h"
#include "rules.h"

namespace tessera {
namespace {

const char* kBase = R"lua(
stream { name = "s", time_field = "t", fields = { t = "timestamp", x = "float", k = "text" } }
entity { name = "e", key = "k" }
view { name = "v", entity = "e", stream = "s", features = { count { "n", window = "1h" } } }
label { name = "l", stream = "s", value = "x > 1", features = { "v" } }
split = { train = { "2001-01-01", "2001-02-01" }, validation = { "2001-02-01", "2001-03-01" },
          test = { "2001-03-01", "2001-04-01" } }
)lua";

result<std::shared_ptr<const definitions>> load(const std::string& rules) {
  return definitions::load_string(
      std::string(kBase) + "model { name = \"m\", label = \"l\", split = split, rules = " + rules +
          " }\n",
      "d.lua");
}

std::string error_of(const std::string& rules) {
  auto d = load(rules);
  return d ? std::string("<loaded>") : d.error_message();
}

// The values decide() takes for its slots: score, rank, then the names the rules read.
std::vector<value> values(const rule_set& r, double score, int64_t rank, double n, double x,
                          const std::string& k) {
  std::vector<value> v;
  for (auto& s : r.slots()) {
    if (s == "score")
      v.emplace_back(score);
    else if (s == "rank")
      v.emplace_back(rank);
    else if (s == "v.n")
      v.push_back(std::isnan(n) ? value{} : value{n});
    else if (s == "x")
      v.emplace_back(x);
    else if (s == "k")
      v.emplace_back(k);
    else
      v.emplace_back();
  }
  return v;
}

TEST(Rules, TheFirstRuleThatHoldsFiresAndTopKRanksWithinTheCall) {
  auto d = load(R"({
    { name = "thin", when = "v.n < 5", decision = "unknown" },
    { name = "vip", when = "k == 'gold'", decision = "review" },
    { name = "top", top_k = 2, decision = "review" },
    { name = "late", when = "score >= 0.7", decision = "late" },
    { name = "maybe", when = "score >= 0.4 and x > 10", decision = "maybe" },
    { decision = "on_time" },
    on_error = "undecided" })");
  ASSERT_TRUE(d) << d.error_message();
  const rule_set& r = *(*d)->find_model("m")->rules;
  EXPECT_TRUE(r.uses_rank());
  EXPECT_EQ(r.version().size(), 8u);
  auto decide = [&](double score, int64_t rank, double n, double x, const std::string& k) {
    auto o = r.decide(values(r, score, rank, n, x, k));
    EXPECT_TRUE(o.error.empty()) << o.error;
    return o.decision + " " + o.rule.substr(0, o.rule.find('@'));
  };
  EXPECT_EQ(decide(0.9, 0, 3, 0, "a"), "unknown thin");     // an override before any score
  EXPECT_EQ(decide(0.1, 9, 50, 0, "gold"), "review vip");   // a field
  EXPECT_EQ(decide(0.2, 1, 50, 0, "a"), "review top");      // within the call's top 2
  EXPECT_EQ(decide(0.9, 2, 50, 0, "a"), "late late");       // rank 2 is not in the top 2
  EXPECT_EQ(decide(0.5, 5, 50, 11, "a"), "maybe maybe");    // both parts hold
  EXPECT_EQ(decide(0.5, 5, 50, 9, "a"), "on_time rule6");   // x too small: the default
  EXPECT_EQ(decide(0.5, 5, NAN, 9, "a"), "on_time rule6");  // missing feature: not < 5
  // The version follows the rules' text: any change gives another.
  auto d2 = load(R"({ { name = "late", when = "score >= 0.71", decision = "late" } })");
  ASSERT_TRUE(d2) << d2.error_message();
  EXPECT_NE((*d2)->find_model("m")->rules->version(), r.version());
  // No rule holds and none is a default: on_error's label, rule "none", not an error.
  auto o = (*d2)->find_model("m")->rules->decide({value{0.1}, value{int64_t{0}}});
  EXPECT_EQ(o.decision, "unknown");
  EXPECT_EQ(o.rule.substr(0, 5), "none@");
  EXPECT_TRUE(o.error.empty());
}

TEST(Rules, ALuaFunctionDecidesFromTheScoreAndTheFeaturesByName) {
  auto d = load(R"({ lua = [[function(score, f)
      if f["v.n"] == nil then return "unknown", "no_history" end
      if f.k == "gold" then return "review" end
      return score > 0.5 and "late" or "on_time", "threshold"
    end]], on_error = "undecided" })");
  ASSERT_TRUE(d) << d.error_message();
  const rule_set& r = *(*d)->find_model("m")->rules;
  auto o = r.decide(values(r, 0.9, 0, NAN, 0, "a"));
  EXPECT_EQ(o.decision + " " + o.rule.substr(0, o.rule.find('@')), "unknown no_history");
  o = r.decide(values(r, 0.9, 0, 7, 0, "gold"));
  EXPECT_EQ(o.decision + " " + o.rule.substr(0, o.rule.find('@')), "review lua");
  o = r.decide(values(r, 0.9, 0, 7, 0, "a"));
  EXPECT_EQ(o.decision + " " + o.rule.substr(0, o.rule.find('@')), "late threshold");
  o = r.decide(values(r, 0.2, 0, 7, 0, "a"));
  EXPECT_EQ(o.decision, "on_time");
}

TEST(Rules, ALuaRuleThatFailsLoopsOrExceedsItsBudgetGivesOnErrorAndSaysWhy) {
  struct bad {
    const char* fn;
    const char* extra;
    const char* why;
  };
  for (const bad& b : {
           bad{"function(s, f) error('boom') end", "", "boom"},
           bad{"function(s, f) while true do end end", "", "budget of 100000 instructions"},
           bad{"function(s, f) while true do end end",
               ", max_instructions = 100000000, budget = \"2ms\"", "time budget"},
           bad{"function(s, f) return string.rep('x', 1 << 30) end", "", "memory"},
           bad{"function(s, f) local t = {} for i = 1, 1e9 do t[i] = i end end",
               ", max_instructions = 100000000, budget = \"1s\"", "memory"},
           bad{"function(s, f) return nil end", "", "returned nil, not a decision label"},
           bad{"function(s, f) return 3 end", "", "returned number"},
           bad{"function(s, f) return f.nope.x end", "", "nope"},
           bad{"function(s, f) return io.open('/etc/passwd') end", "", "io"},
       }) {
    auto d =
        load(std::string("{ lua = [[") + b.fn + "]], on_error = \"undecided\"" + b.extra + " }");
    ASSERT_TRUE(d) << b.fn << ": " << d.error_message();
    const rule_set& r = *(*d)->find_model("m")->rules;
    const auto t0 = std::chrono::steady_clock::now();
    auto o = r.decide(values(r, 0.5, 0, 1, 1, "a"));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << b.fn;
    EXPECT_EQ(o.decision, "undecided") << b.fn;
    EXPECT_EQ(o.rule.substr(0, 9), "on_error@") << b.fn;
    EXPECT_NE(o.error.find(b.why), std::string::npos) << b.fn << ": " << o.error;
    // The state is still usable after the failure (the next call fails the same way, cleanly).
    auto again = r.decide(values(r, 0.5, 0, 1, 1, "a"));
    EXPECT_EQ(again.decision, "undecided") << b.fn;
  }
}

TEST(Rules, BadRulesAreRefusedWhenDefinitionsLoadNamingTheProblem) {
  EXPECT_EQ(error_of(R"({ { when = "score > 0.5", decision = "late" } })"), "<loaded>");
  EXPECT_NE(error_of(R"({ { when = "nope > 1", decision = "late" } })").find("unknown name 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ { when = "score > 0.5" } })").find("needs a decision"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ { when = "score >", decision = "late" } })").find("rule rule1"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ { top_k = 0, decision = "late" } })").find("top_k must be"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ { decision = "a", name = "x" }, { decision = "b", name = "x" } })")
                .find("named twice"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ { decison = "late" } })").find("unknown key(s) decison"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ })").find("no rules"), std::string::npos);
  EXPECT_NE(error_of(R"("score > 0.5")").find("rules must be a table"), std::string::npos);
  EXPECT_NE(error_of(R"({ lua = "function(s, f) return 'a' ", })").find("does not load"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ lua = "42" })").find("source of a function"), std::string::npos);
  EXPECT_NE(error_of(R"({ lua = "function(s, f) return 'a' end", { decision = "b" } })")
                .find("either a list"),
            std::string::npos);
  EXPECT_NE(error_of(R"({ lua = "function(s, f) return 'a' end", budget = "soon" })")
                .find("rules.budget"),
            std::string::npos);
  // A file line is named.
  EXPECT_NE(error_of(R"({ { when = "nope > 1", decision = "late" } })").find("d.lua:"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera
