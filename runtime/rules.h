// A model's rules (definitions: model { rules = ... }): what turns a score and the example's
// features into a decision label, after the model (or its fallback) has scored.
//
// Two forms, versioned with the definitions (the version is a hash of their source):
//   rules = {
//     { name = "thin_history", when = "route_delay.count_7d < 5", decision = "unknown" },
//     { name = "review", top_k = 3, decision = "review" },   -- the call's 3 highest scores
//     { name = "late", when = "score >= 0.6", decision = "late" },
//     { name = "default", decision = "on_time" },            -- no `when`: always fires
//     on_error = "unknown",                                  -- the decision when a rule fails
//   }
// The first rule that holds fires. Or a Lua function given as source, sandboxed (pure
// libraries only, bounded memory) and bounded in instructions and time:
//   rules = { lua = [[ function(score, f) if f.distance < 300 then return "short", "short_hop"
//             end return score > 0.5 and "late" or "on_time" end ]], on_error = "unknown",
//             max_instructions = 100000, budget = "5ms" }
// f holds the model's inputs and the example's fields by name (missing values are nil); the
// function returns a decision and, optionally, the name of the rule that fired.
//
// Expressions read "score", "rank" (0 for the call's highest score) and any input or field name
// (expr.h; missing values are null, so comparisons with them are false). A rule that fails (a
// Lua error, a result that is not a string, its instruction, memory or time budget exceeded)
// gives `on_error` and says why; it never fails the prediction.
//
// Thread safety: decide() from any thread (expressions run concurrently; the Lua function under
// a lock, in one state per rule set, made on first use).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tessera/result.h"
#include "value.h"

namespace tessera {

class expr;
class lua_host;

struct rules_spec {
  struct item {
    std::string name;      // default "rule<N>" (1-based)
    std::string when;      // an expression; empty: always (or only top_k)
    std::string decision;  // required
    int top_k = 0;         // > 0: fires for the call's top_k highest scores (and `when`, if any)
  };
  std::vector<item> items;
  std::string lua;                   // or the source of a function(score, f)
  std::string on_error = "unknown";  // the decision when a rule fails
  int64_t max_instructions = 100000;
  int64_t budget_us = 5000;
  size_t max_bytes = 8 << 20;  // the Lua state's memory
};

class rule_set {
 public:
  // Compiles the rules. `known`: the names rules may read besides "score" and "rank" (the
  // model's inputs and its label stream's fields). The error names the rule and what is wrong.
  static result<std::shared_ptr<const rule_set>> compile(rules_spec spec,
                                                         std::vector<std::string> known);
  ~rule_set();

  // The names whose values decide() takes, in order: "score", "rank", then what the rules read
  // (every known name for a Lua function).
  const std::vector<std::string>& slots() const { return slots_; }
  bool uses_rank() const { return uses_rank_; }
  const std::string& version() const { return version_; }  // 8 hex digits
  const rules_spec& spec() const { return spec_; }
  std::string describe() const;  // "3 rules @1a2b3c4d, on error 'unknown'"

  struct outcome {
    std::string decision;
    std::string rule;   // the rule that fired ("name@version"), or "on_error@version"
    std::string error;  // non-empty: a rule failed; decision is on_error
  };
  // `values`: one per slot (slots()[0] the score, [1] the rank).
  outcome decide(const std::vector<value>& values) const;

 private:
  rule_set() = default;
  outcome run_lua(const std::vector<value>& values) const;
  rules_spec spec_;
  std::vector<std::string> slots_;
  std::vector<std::shared_ptr<const expr>> when_;  // per item; null: always
  bool uses_rank_ = false;
  std::string version_;
  mutable std::mutex lua_mu_;
  mutable std::unique_ptr<lua_host> lua_;  // made on first use; the function in its registry
  mutable int fn_ref_ = -1;
};

}  // namespace tessera
