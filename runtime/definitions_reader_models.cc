// Reading the model{...} declarations of a definitions file: the models trained on a label's
// examples, their serving options (fallback, follow, rules; the monitor in
// definitions_monitor.cc) and the links between models (chained scores, fallbacks)
// (definitions_reader_internal.h; the order of reading is in definitions_reader.cc).
#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <lua.hpp>

#include "definitions.h"
#include "definitions_reader_internal.h"
#include "lua_host.h"
#include "rules.h"
#include "time_util.h"

namespace tessera {
namespace {

using lua::has_field;
using lua::int_field;
using lua::num_field;
using lua::str_field;
using lua::str_list;
using lua::unknown_keys;
using where_fn = definitions_builder::where_fn;

// rules = { { name, when, decision, top_k }, ..., on_error = "label" } or
// rules = { lua = "function(score, f) ... end", on_error, max_instructions, budget }
// (rules.h) into m.rules, compiled over score, rank, the model's inputs and the label stream's
// fields; left empty when the model has none. Errors are prefixed by `w` (an item's by its line).
status read_rules(lua_State* L, int t, const definitions& defs, const label_def& l,
                  const std::string& w, const where_fn& where, model_def& m) {
  lua_getfield(L, t, "rules");
  struct pop {
    lua_State* L;
    ~pop() { lua_pop(L, 1); }
  } popped{L};
  if (lua_isnil(L, -1)) return ok_status();
  const std::string shape =
      " (rules = { { when = \"score > 0.5\", decision = \"late\" }, { decision = "
      "\"on_time\" } } or rules = { lua = \"function(score, f) ... end\" })";
  if (!lua_istable(L, -1)) return make_error(w + "rules must be a table" + shape);
  const int rt = lua_gettop(L);
  if (auto bad = unknown_keys(L, rt, {"lua", "on_error", "max_instructions", "budget"});
      !bad.empty())
    return make_error(w + "rules: unknown key(s) " + bad + shape);
  rules_spec spec;
  spec.lua = str_field(L, rt, "lua");
  spec.on_error = str_field(L, rt, "on_error", spec.on_error);
  spec.max_instructions = int_field(L, rt, "max_instructions", spec.max_instructions);
  if (has_field(L, rt, "budget")) {
    auto d = parse_duration(str_field(L, rt, "budget"));
    if (!d) return make_error(w + "rules.budget must be a duration like \"5ms\"");
    spec.budget_us = *d;
  }
  for (lua_Integer i = 1, n = luaL_len(L, rt); i <= n; ++i) {
    lua_geti(L, rt, i);
    const int it = lua_gettop(L);
    if (!lua_istable(L, it)) {
      lua_pop(L, 1);
      return make_error(w + "rules[" + std::to_string(i) + "] must be a table" + shape);
    }
    if (auto bad = unknown_keys(L, it, {"name", "when", "decision", "top_k"}); !bad.empty()) {
      const std::string at = where(it);
      lua_pop(L, 1);
      return make_error(at + "model " + m.name + ": rules[" + std::to_string(i) +
                        "]: unknown key(s) " + bad);
    }
    rules_spec::item r;
    r.name = str_field(L, it, "name");
    r.when = str_field(L, it, "when");
    r.decision = str_field(L, it, "decision");
    r.top_k = static_cast<int>(int_field(L, it, "top_k", 0));
    if (has_field(L, it, "top_k") && r.top_k <= 0) r.top_k = -1;  // refused by compile
    lua_pop(L, 1);
    spec.items.push_back(std::move(r));
  }
  // What rules may read: the model's inputs (every column of the label when it names none)
  // and the label stream's fields.
  std::vector<std::string> known;
  for (auto& c : m.features.empty() ? l.feature_columns() : m.features)
    if (chained_model(c).empty()) known.push_back(c);
  if (const stream_def* s = defs.find_stream(l.stream))
    for (auto& f : s->fields)
      if (std::find(known.begin(), known.end(), f.name) == known.end()) known.push_back(f.name);
  auto r = rule_set::compile(std::move(spec), std::move(known));
  if (!r) return make_error(w + r.error_message());
  m.rules = std::move(*r);
  return ok_status();
}

// follow = { stream = "departures", when = "expr", from = "new" | "start" }: the stream
// exists and its events are kept (some view reads it), it has the label entity's key fields,
// and `when` compiles over its fields. Fills `f`; left as it is when the model follows nothing.
status read_follow(lua_State* L, int t, const definitions& defs, const label_def& l,
                   const std::string& w, model_def::follow_def& f) {
  lua_getfield(L, t, "follow");
  struct pop {
    lua_State* L;
    ~pop() { lua_pop(L, 1); }
  } popped{L};
  if (lua_isnil(L, -1)) return ok_status();
  const std::string shape = " (follow = { stream = \"name\", when = \"expr\", from = \"new\" })";
  if (!lua_istable(L, -1)) return make_error(w + "follow must be a table" + shape);
  const int ft = lua_gettop(L);
  if (auto bad = unknown_keys(L, ft, {"stream", "when", "from"}); !bad.empty())
    return make_error(w + "follow: unknown key(s) " + bad + shape);
  f.stream = str_field(L, ft, "stream");
  const stream_def* s = defs.find_stream(f.stream);
  if (!s) return make_error(w + "follow: unknown stream '" + f.stream + "'");
  if (defs.plans_for_stream(f.stream).empty())
    return make_error(w + "follow: stream " + f.stream +
                      " feeds no view, so its events are not kept; declare a view on it");
  const entity_def* e = defs.find_entity(l.entity);
  for (auto& k : e->key_fields)
    if (s->field_index(k) < 0)
      return make_error(w + "follow: stream " + f.stream + " lacks field " + k + ", part of " +
                        l.entity + "'s key (the label's entity)");
  const std::string from = str_field(L, ft, "from", "new");
  if (from != "new" && from != "start")
    return make_error(w + "follow.from must be \"new\" or \"start\"");
  f.from_start = from == "start";
  f.when = str_field(L, ft, "when");
  if (!f.when.empty()) {
    auto c = compile_expr(f.when, [s](const std::string& n) { return s->field_index(n); });
    if (!c) return make_error(w + "follow.when: " + c.error_message());
    f.when_expr = std::move(*c);
  }
  return ok_status();
}

// kind, hidden, epochs, batch_size, learning_rate, weight_decay and seed of the model table at
// `t` into `m` (defaults where absent). Errors, prefixed by `w`: a value out of its range.
status read_training_options(lua_State* L, int t, const std::string& w, model_def& m) {
  m.kind = str_field(L, t, "kind", "logistic");
  if (m.kind != "logistic" && m.kind != "mlp")
    return make_error(w + "kind must be \"logistic\" or \"mlp\"");
  if (has_field(L, t, "hidden")) {
    m.hidden.clear();
    for (auto& h : str_list(L, t, "hidden")) m.hidden.push_back(std::atoi(h.c_str()));
    for (int h : m.hidden)
      if (h < 1 || h > 4096) return make_error(w + "hidden layer sizes must be between 1 and 4096");
    if (m.hidden.empty()) return make_error(w + "hidden must list layer sizes, e.g. { 32, 16 }");
  }
  m.epochs = static_cast<int>(int_field(L, t, "epochs", m.epochs));
  m.batch_size = static_cast<int>(int_field(L, t, "batch_size", m.batch_size));
  m.learning_rate = num_field(L, t, "learning_rate", m.learning_rate);
  m.weight_decay = num_field(L, t, "weight_decay", m.weight_decay);
  m.seed = static_cast<uint64_t>(int_field(L, t, "seed", static_cast<int64_t>(m.seed)));
  if (m.epochs < 1 || m.epochs > 10000) return make_error(w + "epochs must be between 1 and 10000");
  if (m.batch_size < 1 || m.batch_size > 1'000'000)
    return make_error(w + "batch_size must be between 1 and 1000000");
  if (!(m.learning_rate > 0 && m.learning_rate < 100))
    return make_error(w + "learning_rate must be in (0, 100)");
  if (!(m.weight_decay >= 0 && m.weight_decay < 1))
    return make_error(w + "weight_decay must be in [0, 1)");
  return ok_status();
}

// fallback = { model = "name" } or { constant = 0.5 }, with an optional reserve, of the model
// table at `t` into `f`; left as it is when absent. Whether the named model exists is checked
// once all models are read. Errors are prefixed by `w`.
status read_fallback(lua_State* L, int t, const std::string& w, model_def::fallback_def& f) {
  lua_getfield(L, t, "fallback");
  if (lua_istable(L, -1)) {
    const int ft = lua_gettop(L);
    if (auto bad = unknown_keys(L, ft, {"model", "constant", "reserve"}); !bad.empty())
      return make_error(w + "fallback: unknown key(s) " + bad +
                        " (fallback = { model = \"name\" } or { constant = 0.5 })");
    f.model = str_field(L, ft, "model");
    if (has_field(L, ft, "constant")) {
      f.has_constant = true;
      f.constant = num_field(L, ft, "constant", 0);
      if (!(f.constant >= 0 && f.constant <= 1))
        return make_error(w + "fallback.constant must be a score in [0, 1]");
    }
    if (f.has_constant == !f.model.empty())
      return make_error(w + "fallback needs exactly one of model = \"name\" or constant = x");
    if (has_field(L, ft, "reserve")) {
      auto d = parse_duration(str_field(L, ft, "reserve"));
      if (!d || *d < 0) return make_error(w + "fallback.reserve must be a duration like \"20ms\"");
      f.reserve_us = *d;
    }
  } else if (!lua_isnil(L, -1)) {
    return make_error(w + "fallback = { model = \"name\" } or { constant = 0.5 }");
  }
  lua_pop(L, 1);
  return ok_status();
}

// split = { train = { from, to }, validation = { from, to }, test = { from, to } } (required) of
// the model table at `t` into m.train_from, valid_from, test_from and test_to. Errors, prefixed
// by `w`: a missing or malformed part, a bad time, an empty part, parts that do not follow on.
status read_split(lua_State* L, int t, const std::string& w, model_def& m) {
  lua_getfield(L, t, "split");
  if (!lua_istable(L, -1))
    return make_error(w +
                      "split = { train = { from, to }, validation = { from, to }, test = { "
                      "from, to } } is required");
  int st = lua_gettop(L);
  int64_t bounds[3][2] = {};
  const char* parts[3] = {"train", "validation", "test"};
  for (int p = 0; p < 3; ++p) {
    auto range = str_list(L, st, parts[p]);
    if (range.size() != 2)
      return make_error(w + "split." + parts[p] + " must be { from, to } (ISO-8601 times)");
    for (int k = 0; k < 2; ++k) {
      auto ts = parse_timestamp(range[k]);
      if (!ts) return make_error(w + "split." + parts[p] + ": " + ts.error_message());
      bounds[p][k] = *ts;
    }
    if (bounds[p][0] >= bounds[p][1])
      return make_error(w + "split." + parts[p] + " is empty (from >= to)");
  }
  lua_pop(L, 1);
  if (bounds[0][1] != bounds[1][0] || bounds[1][1] != bounds[2][0])
    return make_error(w +
                      "split parts must follow each other in time: train.to = validation.from, "
                      "validation.to = test.from");
  m.train_from = bounds[0][0], m.valid_from = bounds[1][0], m.test_from = bounds[2][0],
  m.test_to = bounds[2][1];
  return ok_status();
}

// One model{...} table at `t` into `m`: its label (declared before it), training options,
// serving options (log_sample, max_feature_age, fallback, follow, shadow_sample), features (the
// label's columns or other models' scores), rules, monitor and split. `defs` holds the labels
// and the models read before it (a name may not repeat).
status read_model(lua_State* L, int t, const definitions& defs, const where_fn& where,
                  model_def& m) {
  if (auto st = read_name(L, t, "model", where, m.name); !st) return st;
  std::string w = where(t) + "model " + m.name + ": ";
  if (auto bad =
          unknown_keys(L, t,
                       {"name", "label", "kind", "hidden", "epochs", "batch_size", "learning_rate",
                        "weight_decay", "seed", "features", "split", "log_sample", "shadow_sample",
                        "fallback", "max_feature_age", "follow", "rules", "monitor"});
      !bad.empty())
    return make_error(w + "unknown key(s) " + bad);
  if (defs.find_model(m.name)) return make_error(w + "defined twice");
  m.label = str_field(L, t, "label");
  const label_def* l = defs.find_label(m.label);
  if (!l) return make_error(w + "unknown label '" + m.label + "'");
  if (auto st = read_training_options(L, t, w, m); !st) return st;
  m.log_sample = num_field(L, t, "log_sample", m.log_sample);
  if (!(m.log_sample >= 0 && m.log_sample <= 1))
    return make_error(w + "log_sample must be in [0, 1] (the share of predictions logged)");
  if (has_field(L, t, "max_feature_age")) {
    auto d = parse_duration(str_field(L, t, "max_feature_age"));
    if (!d || *d <= 0)
      return make_error(w + "max_feature_age must be a positive duration like \"6h\"");
    m.max_feature_age_us = *d;
  }
  if (auto st = read_fallback(L, t, w, m.fallback); !st) return st;
  if (auto st = read_follow(L, t, defs, *l, w, m.follow); !st) return st;
  m.shadow_sample = num_field(L, t, "shadow_sample", m.shadow_sample);
  if (!(m.shadow_sample >= 0 && m.shadow_sample <= 1))
    return make_error(w + "shadow_sample must be in [0, 1] (the share of examples shadowed)");
  auto columns = l->feature_columns();
  m.features = str_list(L, t, "features");
  for (auto& f : m.features)
    if (chained_model(f).empty() && std::find(columns.begin(), columns.end(), f) == columns.end())
      return make_error(w + "feature '" + f + "' is not a column of label " + l->name +
                        " (view.feature, an on-demand name, or model:NAME for another " +
                        "model's score)");
  if (auto st = read_rules(L, t, defs, *l, w, where, m); !st) return st;
  if (auto st = read_monitor(L, t, w, m.monitor); !st) return st;
  return read_split(L, t, w, m);
}

// Every chained model (a feature "model:NAME") of the models in `defs` exists and predicts examples
// of the same stream. The error names the first model and feature that break this.
status check_chained_inputs(const definitions& defs) {
  for (auto& m : defs.models())
    for (auto& f : m.features) {
      const std::string up = chained_model(f);
      if (up.empty()) continue;
      const model_def* u = defs.find_model(up);
      if (!u)
        return make_error("model " + m.name + ": feature '" + f + "': model '" + up +
                          "' is not defined");
      const label_def* ml = defs.find_label(m.label);
      const label_def* ul = defs.find_label(u->label);
      if (!ml || !ul || ml->stream != ul->stream)
        return make_error("model " + m.name + ": feature '" + f + "': model " + up +
                          " predicts examples of stream " + (ul ? ul->stream : "?") + ", not of " +
                          (ml ? ml->stream : "?") + " (the same example)");
    }
  return ok_status();
}

// Every fallback model of the models in `defs` exists, and no path through fallbacks and chained
// scores comes back to where it started. The error names the first missing fallback or the cycle,
// from the first model (in declaration order) on it.
status check_model_cycles(const definitions& defs) {
  for (auto& m : defs.models()) {
    std::vector<std::string> chain{m.name};
    std::vector<bool> via_chain;  // per step: a chained input (else a fallback)
    std::string cycle;
    std::function<bool(const model_def&)> visit = [&](const model_def& at) -> bool {
      std::vector<std::pair<std::string, bool>> next;
      if (!at.fallback.model.empty()) next.emplace_back(at.fallback.model, false);
      for (auto& f : at.features)
        if (auto up = chained_model(f); !up.empty()) next.emplace_back(up, true);
      for (auto& [n, chained] : next) {
        const model_def* nm = defs.find_model(n);
        if (!nm) {
          cycle = "model " + at.name + ": fallback model '" + n + "' is not defined";
          return true;
        }
        const bool seen = std::find(chain.begin(), chain.end(), n) != chain.end();
        chain.push_back(n);
        via_chain.push_back(chained);
        if (seen) {
          if (chain.front() != n) {  // a cycle further on: found from its own start
            chain.pop_back(), via_chain.pop_back();
            continue;
          }
          bool any_chain = false;
          for (bool b : via_chain) any_chain = any_chain || b;
          std::string text;
          for (auto& c : chain) text += (text.empty() ? "" : " -> ") + c;
          cycle =
              (any_chain ? "model cycle (chained scores and fallbacks): " : "fallback cycle: ") +
              text;
          return true;
        }
        if (visit(*nm)) return true;
        chain.pop_back(), via_chain.pop_back();
      }
      return false;
    };
    if (visit(m)) return make_error(cycle);
  }
  return ok_status();
}

}  // namespace

status definitions_builder::read_models(lua_State* L, int decl, definitions& defs,
                                        const where_fn& where) {
  if (auto st = read_each(L, decl, "models", defs, where, read_model, defs.models_); !st) return st;
  // The links between models, once all are read: chained inputs first, then fallbacks and cycles.
  if (auto st = check_chained_inputs(defs); !st) return st;
  return check_model_cycles(defs);
}

}  // namespace tessera
