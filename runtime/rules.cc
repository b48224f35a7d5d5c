#include "rules.h"

#include <lua.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "expr.h"
#include "hash.h"
#include "lua_host.h"
#include "time_util.h"

namespace tessera {

namespace {

using steady = std::chrono::steady_clock;

// The running rule's budget, read by the count hook (decide() runs one rule at a time per
// state, under its lock, so a thread-local is enough).
struct lua_budget {
  int64_t instructions = 0, max_instructions = 0;
  steady::time_point deadline;
  std::string why;
};
thread_local lua_budget* t_budget = nullptr;
constexpr int kHookEvery = 1000;

void budget_hook(lua_State* L, lua_Debug*) {
  lua_budget* b = t_budget;
  if (!b) return;
  b->instructions += kHookEvery;
  if (b->instructions > b->max_instructions)
    b->why =
        "the rule exceeded its budget of " + std::to_string(b->max_instructions) + " instructions";
  else if (steady::now() > b->deadline)
    b->why = "the rule exceeded its time budget";
  else
    return;
  luaL_error(L, "%s", b->why.c_str());
}

void push_value(lua_State* L, const value& v) {
  switch (v.index()) {
    case 1:
      lua_pushinteger(L, static_cast<lua_Integer>(std::get<int64_t>(v)));
      return;
    case 2:
      lua_pushnumber(L, std::get<double>(v));
      return;
    case 3:
      lua_pushlstring(L, std::get<std::string>(v).data(), std::get<std::string>(v).size());
      return;
    case 4:
      lua_pushboolean(L, std::get<bool>(v));
      return;
    case 5:
      lua_pushinteger(L, static_cast<lua_Integer>(std::get<timestamp_value>(v).micros));
      return;
    default:
      lua_pushnil(L);
  }
}

std::string hex8(uint64_t h) {
  char b[17];
  std::snprintf(b, sizeof b, "%08x", static_cast<unsigned>(h ^ (h >> 32)));
  return b;
}

}  // namespace

rule_set::~rule_set() = default;

result<std::shared_ptr<const rule_set>> rule_set::compile(rules_spec spec,
                                                          std::vector<std::string> known) {
  std::shared_ptr<rule_set> r(new rule_set());
  r->slots_ = {"score", "rank"};
  uint64_t h = kFnvOffsetBasis;
  auto mix = [&](const std::string& s) { h = fnv1a_update(fnv1a_update(h, s), "\x1f"); };
  if (spec.on_error.empty()) return make_error("rules: on_error must be a decision label");
  mix(spec.on_error);
  if (!spec.lua.empty()) {
    if (!spec.items.empty())
      return make_error("rules: either a list of rules or lua = \"function(score, f) ... end\"");
    if (spec.max_instructions < kHookEvery || spec.max_instructions > 100'000'000)
      return make_error("rules: max_instructions must be between 1000 and 100000000");
    if (spec.budget_us <= 0 || spec.budget_us > 1'000'000)
      return make_error("rules: budget must be a duration in (0, 1s]");
    mix(spec.lua);
    for (auto& k : known) r->slots_.push_back(k);
    auto host = lua_host::open(spec.max_bytes);
    if (!host) return make_error("rules: " + host.error_message());
    if (auto st = (*host)->run_prelude(""); !st) return make_error("rules: " + st.error_message());
    lua_State* L = (*host)->state();
    // Loading runs the chunk (which only makes the function) under the instruction limit.
    auto st =
        (*host)->run("__rules = " + spec.lua, "rules", static_cast<int>(spec.max_instructions));
    if (!st) return make_error("rules: the Lua function does not load: " + st.error_message());
    lua_getglobal(L, "__rules");
    if (!lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      return make_error("rules: lua must be the source of a function(score, f) ... end");
    }
    r->fn_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushnil(L);
    lua_setglobal(L, "__rules");
    r->lua_ = std::move(*host);
  } else {
    if (spec.items.empty()) return make_error("rules: no rules");
    auto resolve = [&](const std::string& name) -> int {
      for (size_t i = 0; i < r->slots_.size(); ++i)
        if (r->slots_[i] == name) return static_cast<int>(i);
      if (std::find(known.begin(), known.end(), name) == known.end()) return -1;
      r->slots_.push_back(name);
      return static_cast<int>(r->slots_.size() - 1);
    };
    for (size_t i = 0; i < spec.items.size(); ++i) {
      auto& it = spec.items[i];
      if (it.name.empty()) it.name = "rule" + std::to_string(i + 1);
      const std::string w = "rules: rule " + it.name + ": ";
      if (it.decision.empty()) return make_error(w + "needs a decision = \"label\"");
      if (it.top_k < 0 || it.top_k > 1'000'000)
        return make_error(w + "top_k must be between 1 and 1000000");
      for (size_t j = 0; j < i; ++j)
        if (spec.items[j].name == it.name) return make_error(w + "named twice");
      mix(it.name);
      mix(it.when);
      mix(it.decision);
      mix(std::to_string(it.top_k));
      if (it.top_k > 0) r->uses_rank_ = true;
      if (it.when.empty()) {
        r->when_.push_back(nullptr);
        continue;
      }
      if (auto names = expr_fields(it.when); names) {
        for (auto& n : *names)
          if (resolve(n) < 0)
            return make_error(w + "unknown name '" + n +
                              "' (rules read score, rank, the model's inputs and its label "
                              "stream's fields)");
        if (std::find(names->begin(), names->end(), "rank") != names->end()) r->uses_rank_ = true;
      }
      auto e = compile_expr(it.when, resolve);
      if (!e) return make_error(w + e.error_message());
      r->when_.push_back(*e);
    }
  }
  r->spec_ = std::move(spec);
  r->version_ = hex8(h);
  return std::shared_ptr<const rule_set>(std::move(r));
}

std::string rule_set::describe() const {
  std::string what = spec_.lua.empty() ? std::to_string(spec_.items.size()) +
                                             (spec_.items.size() == 1 ? " rule" : " rules")
                                       : std::string("a Lua function");
  return what + " @" + version_ + ", on error '" + spec_.on_error + "'";
}

rule_set::outcome rule_set::decide(const std::vector<value>& values) const {
  if (!spec_.lua.empty()) return run_lua(values);
  double rank = 0;
  if (uses_rank_ && (values.size() < 2 || !as_number(values[1], rank))) rank = 1e18;
  for (size_t i = 0; i < spec_.items.size(); ++i) {
    const auto& it = spec_.items[i];
    if (it.top_k > 0 && !(rank < it.top_k)) continue;
    if (when_[i] && !when_[i]->test(values)) continue;
    return {it.decision, it.name + "@" + version_, {}};
  }
  // No rule held: the list's author left no default; the on_error label says "undecided".
  return {spec_.on_error, "none@" + version_, {}};
}

rule_set::outcome rule_set::run_lua(const std::vector<value>& values) const {
  std::lock_guard<std::mutex> l(lua_mu_);
  lua_State* L = lua_->state();
  const int top = lua_gettop(L);
  lua_budget b;
  b.max_instructions = spec_.max_instructions;
  b.deadline = steady::now() + std::chrono::microseconds(spec_.budget_us);
  t_budget = &b;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, kHookEvery);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref_);
  push_value(L, values.empty() ? value{} : values[0]);
  lua_createtable(L, 0, static_cast<int>(slots_.size()));
  for (size_t i = 0; i < slots_.size() && i < values.size(); ++i) {
    if (is_null(values[i])) continue;
    push_value(L, values[i]);
    lua_setfield(L, -2, slots_[i].c_str());
  }
  outcome o;
  const int rc = lua_pcall(L, 2, 2, 0);
  lua_sethook(L, nullptr, 0, 0);
  t_budget = nullptr;
  if (rc != LUA_OK) {
    const char* m = lua_tostring(L, -1);
    o.error = !b.why.empty() ? b.why : (m ? m : "the rule failed");
  } else if (lua_type(L, -2) != LUA_TSTRING || lua_rawlen(L, -2) == 0) {
    o.error = std::string("the rule returned ") + luaL_typename(L, -2) + ", not a decision label";
  } else {
    o.decision = lua_tostring(L, -2);
    o.rule =
        (lua_type(L, -1) == LUA_TSTRING ? std::string(lua_tostring(L, -1)) : std::string("lua")) +
        "@" + version_;
  }
  lua_settop(L, top);
  if (!o.error.empty()) {
    o.decision = spec_.on_error;
    o.rule = "on_error@" + version_;
    // A state that ran out of memory may hold garbage the next call needs room for.
    lua_gc(L, LUA_GCCOLLECT, 0);
  }
  return o;
}

}  // namespace tessera
