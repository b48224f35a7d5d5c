// Reading a definitions file: runs it in the Lua host (lua_host.h), then turns the declaration
// tables it left (stream, entity, view, label, model) into a definitions, checking each as it
// goes. Errors name the file, the line of the declaration and the problem.
#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <tuple>

#include <lua.hpp>

#include "definitions.h"
#include "expectations.h"
#include "lua_host.h"
#include "rules.h"
#include "time_util.h"

namespace tessera {
// model { monitor = { ... } } (definitions_monitor.cc).
status read_monitor(lua_State* L, int model_table, const std::string& where,
                    model_def::monitor_def& out);

namespace {

using lua::has_field;
using lua::int_field;
using lua::num_field;
using lua::str_field;
using lua::str_list;
using lua::unknown_keys;

constexpr int kMaxInstructions = 50'000'000;  // what a definitions file may run

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return !std::isdigit(static_cast<unsigned char>(s[0]));
}

// The Lua side: each declaration function appends to a registry table; C++ reads it after
// the chunk ran. Aggregation constructors (count{...}) tag their table with `agg`.
const char* kPrelude = R"lua(
local debug = debug
local decl = { streams = {}, entities = {}, views = {}, labels = {}, models = {} }
__tessera_decl = decl
local function line() local i = debug.getinfo(3, "l"); return i and i.currentline or 0 end
function stream(t) assert(type(t) == "table", "stream{...} takes a table"); t.__line = line(); table.insert(decl.streams, t); return t end
function entity(t) assert(type(t) == "table", "entity{...} takes a table"); t.__line = line(); table.insert(decl.entities, t); return t end
function view(t) assert(type(t) == "table", "view{...} takes a table"); t.__line = line(); table.insert(decl.views, t); return t end
function label(t) assert(type(t) == "table", "label{...} takes a table"); t.__line = line(); table.insert(decl.labels, t); return t end
function model(t) assert(type(t) == "table", "model{...} takes a table"); t.__line = line(); table.insert(decl.models, t); return t end
for _, a in ipairs({"count", "sum", "mean", "min", "max", "stddev", "last", "last_n_distinct", "time_since_last"}) do
  _G[a] = function(t) assert(type(t) == "table", a .. "{...} takes a table"); t.agg = a; t.__line = line(); return t end
end
)lua";

bool parse_type(const std::string& ftype, field_type& ty) {
  if (ftype == "int")
    ty = field_type::int64;
  else if (ftype == "float" || ftype == "double")
    ty = field_type::float64;
  else if (ftype == "text" || ftype == "string")
    ty = field_type::text;
  else if (ftype == "bool")
    ty = field_type::boolean;
  else if (ftype == "timestamp")
    ty = field_type::timestamp;
  else
    return false;
  return true;
}
}  // namespace

// Reads the declarations in dependency order: streams, entities, views, then the storage plan
// (definitions::finish), then labels (which name views and plans) and models (which name labels).
class definitions_builder {
  using where_fn = std::function<std::string(int)>;

  static status read_streams(lua_State* L, int decl, definitions& defs, const where_fn& where) {
    lua_getfield(L, decl, "streams");
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; ++i) {
      lua_geti(L, -1, i);
      int t = lua_gettop(L);
      stream_def s;
      s.name = str_field(L, t, "name");
      if (!valid_name(s.name))
        return make_error(where(t) + "stream needs a name of letters, digits and _ (got '" +
                          s.name + "')");
      if (auto bad = unknown_keys(L, t,
                                  {"name", "time_field", "fields", "derive", "max_age",
                                   "duplicate_window", "offline_retention", "clock", "max_future",
                                   "max_jump", "expect", "expect_slice", "expect_window"});
          !bad.empty())
        return make_error(where(t) + "stream " + s.name + ": unknown key(s) " + bad);
      if (defs.find_stream(s.name))
        return make_error(where(t) + "stream " + s.name + " defined twice");
      s.time_field = str_field(L, t, "time_field");
      lua_getfield(L, t, "fields");
      if (!lua_istable(L, -1))
        return make_error(where(t) + "stream " + s.name +
                          ": fields must be a table { name = \"type\", ... }");
      int ft = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, ft) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
          return make_error(where(t) + "stream " + s.name + ": each field is name = \"type\"");
        std::string fname = lua_tostring(L, -2), ftype = lua_tostring(L, -1);
        if (!valid_name(fname))
          return make_error(where(t) + "stream " + s.name + ": bad field name '" + fname + "'");
        field_type ty;
        if (!parse_type(ftype, ty))
          return make_error(where(t) + "stream " + s.name + ": field " + fname +
                            " has unknown type '" + ftype +
                            "' (int, float, text, bool, timestamp)");
        s.fields.push_back({fname, ty});
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
      // derive = { name = { type = "timestamp", expr = "..." } }: computed, never sent.
      lua_getfield(L, t, "derive");
      if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
          return make_error(
              where(t) + "stream " + s.name +
              ": derive must be a table { name = { type = \"float\", expr = \"...\" } }");
        int dt = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, dt) != 0) {
          if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
            return make_error(where(t) + "stream " + s.name +
                              ": each derived field is name = { type = \"...\", expr = \"...\" }");
          std::string fname = lua_tostring(L, -2);
          int ft = lua_gettop(L);
          field_def f{fname, field_type::float64, str_field(L, ft, "expr"), nullptr};
          if (!valid_name(fname))
            return make_error(where(t) + "stream " + s.name + ": bad field name '" + fname + "'");
          if (!parse_type(str_field(L, ft, "type", "float"), f.type) || f.type == field_type::text)
            return make_error(where(t) + "stream " + s.name + ": derived field " + fname +
                              " must be int, float, bool or timestamp");
          if (f.derive_src.empty())
            return make_error(where(t) + "stream " + s.name + ": derived field " + fname +
                              " needs expr = \"...\"");
          for (auto& o : s.fields)
            if (o.name == fname)
              return make_error(where(t) + "stream " + s.name + ": field " + fname +
                                " is both sent and derived");
          s.fields.push_back(std::move(f));
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
      std::sort(s.fields.begin(), s.fields.end(), [](auto& a, auto& b) { return a.name < b.name; });
      if (s.fields.empty()) return make_error(where(t) + "stream " + s.name + " has no fields");
      for (auto& f : s.fields) {
        if (f.derive_src.empty()) continue;
        auto c = compile_expr(f.derive_src, [&](const std::string& n) {
          int fi = s.field_index(n);
          return fi >= 0 && s.fields[fi].derive_src.empty() ? fi : -1;  // from sent fields only
        });
        if (!c)
          return make_error(where(t) + "stream " + s.name + ", derived field " + f.name + ": " +
                            c.error_message());
        f.derive = *c;
      }
      int ti = s.field_index(s.time_field);
      if (ti < 0 || s.fields[ti].type != field_type::timestamp)
        return make_error(where(t) + "stream " + s.name +
                          ": time_field must name a field of type timestamp");
      for (auto [key, dst] :
           {std::pair{"max_age", &s.max_age_us},
            std::pair{"duplicate_window", &s.duplicate_window_us},
            std::pair{"offline_retention", &s.offline_retention_us},
            std::pair{"max_future", &s.max_future_us}, std::pair{"max_jump", &s.max_jump_us}}) {
        if (!has_field(L, t, key)) continue;
        auto d = parse_duration(str_field(L, t, key));
        if (!d)
          return make_error(where(t) + "stream " + s.name + ": " + key + ": " + d.error_message());
        if (*d <= 0 && (std::string(key) == "max_future" || std::string(key) == "max_jump"))
          return make_error(where(t) + "stream " + s.name + ": " + key + " must be positive");
        *dst = *d;
      }
      if (has_field(L, t, "clock")) {
        std::string c = str_field(L, t, "clock");
        if (c == "live")
          s.clock = clock_mode::live;
        else if (c == "replay")
          s.clock = clock_mode::replay;
        else
          return make_error(where(t) + "stream " + s.name +
                            ": clock must be \"live\" (reads at the wall clock) or \"replay\" "
                            "(reads at the stream's watermark), not '" +
                            c + "'");
      }
      auto expect = expectation_set::read(L, t, s, where(t));
      if (!expect) return expect.failure();
      s.expect = std::move(expect.value());
      defs.streams_.push_back(std::move(s));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ok_status();
  }

  static status read_entities(lua_State* L, int decl, definitions& defs, const where_fn& where) {
    lua_getfield(L, decl, "entities");
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; ++i) {
      lua_geti(L, -1, i);
      int t = lua_gettop(L);
      entity_def e;
      e.name = str_field(L, t, "name");
      if (!valid_name(e.name))
        return make_error(where(t) + "entity needs a name of letters, digits and _ (got '" +
                          e.name + "')");
      if (auto bad = unknown_keys(L, t, {"name", "key"}); !bad.empty())
        return make_error(where(t) + "entity " + e.name + ": unknown key(s) " + bad);
      if (defs.find_entity(e.name))
        return make_error(where(t) + "entity " + e.name + " defined twice");
      lua_getfield(L, t, "key");
      if (lua_type(L, -1) == LUA_TSTRING) {
        e.key_fields.push_back(lua_tostring(L, -1));
      } else if (lua_istable(L, -1)) {
        for (lua_Integer k = 1, m = luaL_len(L, -1); k <= m; ++k) {
          lua_geti(L, -1, k);
          if (lua_type(L, -1) == LUA_TSTRING) e.key_fields.push_back(lua_tostring(L, -1));
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
      if (e.key_fields.empty())
        return make_error(where(t) + "entity " + e.name +
                          ": key must be a field name or a list of field names");
      defs.entities_.push_back(std::move(e));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ok_status();
  }

  static status read_views(lua_State* L, int decl, definitions& defs, const where_fn& where) {
    lua_getfield(L, decl, "views");
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; ++i) {
      lua_geti(L, -1, i);
      int t = lua_gettop(L);
      view_def v;
      v.name = str_field(L, t, "name");
      if (!valid_name(v.name))
        return make_error(where(t) + "view needs a name of letters, digits and _ (got '" + v.name +
                          "')");
      if (auto bad = unknown_keys(
              L, t, {"name", "version", "entity", "stream", "ttl", "as_of_horizon", "features"});
          !bad.empty())
        return make_error(where(t) + "view " + v.name + ": unknown key(s) " + bad);
      int64_t ver = int_field(L, t, "version", 1);
      if (ver < 1 || ver > 1'000'000)
        return make_error(where(t) + "view " + v.name + ": version must be a positive integer");
      v.version = static_cast<uint32_t>(ver);
      v.entity = str_field(L, t, "entity");
      v.stream = str_field(L, t, "stream");
      const stream_def* s = defs.find_stream(v.stream);
      if (!s)
        return make_error(where(t) + "view " + v.name + ": unknown stream '" + v.stream + "'");
      if (!defs.find_entity(v.entity))
        return make_error(where(t) + "view " + v.name + ": unknown entity '" + v.entity + "'");
      for (auto [key, dst] :
           {std::pair{"ttl", &v.ttl_us}, std::pair{"as_of_horizon", &v.as_of_horizon_us}}) {
        if (!has_field(L, t, key)) continue;
        auto d = parse_duration(str_field(L, t, key));
        if (!d)
          return make_error(where(t) + "view " + v.name + ": " + key + ": " + d.error_message());
        *dst = *d;
      }
      lua_getfield(L, t, "features");
      if (!lua_istable(L, -1))
        return make_error(where(t) + "view " + v.name +
                          ": features must be a list like { count { \"n_1h\", window = \"1h\" } }");
      for (lua_Integer k = 1, m = luaL_len(L, -1); k <= m; ++k) {
        lua_geti(L, -1, k);
        int ft = lua_gettop(L);
        if (!lua_istable(L, ft))
          return make_error(where(t) + "view " + v.name + ": feature " + std::to_string(k) +
                            " is not an aggregation like count{...}");
        auto fw = [&] {
          return where(ft) + "view " + v.name + ", feature " + std::to_string(k) + ": ";
        };
        feature_def f;
        std::string agg = str_field(L, ft, "agg");
        lua_geti(L, ft, 1);
        if (lua_type(L, -1) == LUA_TSTRING) f.name = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (f.name.empty()) f.name = str_field(L, ft, "name");
        if (!valid_name(f.name))
          return make_error(
              fw() + "needs a name as its first element, e.g. count { \"n_1h\", window = \"1h\" }");
        if (auto bad = unknown_keys(L, ft, {"agg", "name", "field", "window", "filter", "n"});
            !bad.empty())
          return make_error(fw() + "unknown key(s) " + bad);
        static const std::map<std::string, agg_kind> aggs = {
            {"count", agg_kind::count},
            {"sum", agg_kind::sum},
            {"mean", agg_kind::mean},
            {"min", agg_kind::min},
            {"max", agg_kind::max},
            {"stddev", agg_kind::stddev},
            {"last", agg_kind::last},
            {"last_n_distinct", agg_kind::last_n_distinct},
            {"time_since_last", agg_kind::time_since_last}};
        auto ai = aggs.find(agg);
        if (ai == aggs.end())
          return make_error(fw() +
                            "not an aggregation (use count, sum, mean, min, max, stddev, last, "
                            "last_n_distinct, time_since_last)");
        f.agg = ai->second;
        f.field = str_field(L, ft, "field");
        bool needs_field = f.agg != agg_kind::count && f.agg != agg_kind::time_since_last;
        if (needs_field) {
          int fi = s->field_index(f.field);
          if (fi < 0)
            return make_error(fw() + agg + " needs field = <a field of stream " + s->name + ">" +
                              (f.field.empty() ? "" : " (unknown: '" + f.field + "')"));
          bool numeric = s->fields[fi].type != field_type::text;
          bool needs_numeric = f.agg == agg_kind::sum || f.agg == agg_kind::mean ||
                               f.agg == agg_kind::min || f.agg == agg_kind::max ||
                               f.agg == agg_kind::stddev;
          if (needs_numeric && !numeric)
            return make_error(fw() + agg + " needs a numeric field; " + f.field + " is text");
        } else if (!f.field.empty()) {
          return make_error(fw() + agg + " takes no field");
        }
        auto w = parse_duration(str_field(L, ft, "window"));
        if (!w || *w <= 0)
          return make_error(fw() + "window must be a positive duration like \"1h\"");
        f.window_us = *w;
        f.filter_src = str_field(L, ft, "filter");
        if (!f.filter_src.empty()) {
          auto names = expr_fields(f.filter_src);
          if (!names) return make_error(fw() + names.error_message());
          for (auto& nm : *names)
            if (s->field_index(nm) < 0)
              return make_error(fw() + "filter '" + f.filter_src + "': unknown field '" + nm + "'");
        }
        if (f.agg == agg_kind::last_n_distinct) {
          f.n = static_cast<int>(int_field(L, ft, "n", 0));
          if (f.n < 1 || f.n > 1000)
            return make_error(fw() + "last_n_distinct needs n between 1 and 1000");
        }
        for (auto& other : v.features)
          if (other.name == f.name) return make_error(fw() + "duplicate feature name " + f.name);
        v.features.push_back(std::move(f));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
      if (v.features.empty()) return make_error(where(t) + "view " + v.name + " has no features");
      if (v.ttl_us <= 0) v.ttl_us = v.max_window_us();
      if (v.as_of_horizon_us <= 0) v.as_of_horizon_us = v.max_window_us();
      for (auto& o : defs.views_)
        if (o.name == v.name && o.version == v.version)
          return make_error(where(t) + "view " + v.qualified() + " defined twice");
      defs.views_.push_back(std::move(v));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ok_status();
  }

  static status read_labels(lua_State* L, int decl, definitions& defs, const where_fn& where) {
    lua_getfield(L, decl, "labels");
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; ++i) {
      lua_geti(L, -1, i);
      int t = lua_gettop(L);
      label_def l;
      l.name = str_field(L, t, "name");
      std::string w = where(t) + "label " + l.name + ": ";
      if (!valid_name(l.name))
        return make_error(where(t) + "label needs a name of letters, digits and _ (got '" + l.name +
                          "')");
      if (auto bad = unknown_keys(L, t,
                                  {"name", "stream", "entity", "value", "prediction_time",
                                   "features", "on_demand", "snapshot"});
          !bad.empty())
        return make_error(w + "unknown key(s) " + bad);
      if (defs.find_label(l.name)) return make_error(w + "defined twice");
      l.stream = str_field(L, t, "stream");
      const stream_def* s = defs.find_stream(l.stream);
      if (!s) return make_error(w + "unknown stream '" + l.stream + "'");
      auto plans = defs.plans_for_stream(l.stream);
      if (plans.empty())
        return make_error(w + "stream " + l.stream + " feeds no view, so it has no offline log");
      l.entity = str_field(L, t, "entity", plans[0]->entity);
      if (!defs.find_plan(l.stream, l.entity))
        return make_error(w + "entity '" + l.entity + "' is not a kind any view of stream " +
                          l.stream + " reads");
      auto resolve = [s](const std::string& nm) { return s->field_index(nm); };
      l.value_src = str_field(L, t, "value");
      l.time_src = str_field(L, t, "prediction_time", s->time_field);
      for (auto [src, dst, what] : {std::tuple{&l.value_src, &l.value, "value"},
                                    std::tuple{&l.time_src, &l.time, "prediction_time"}}) {
        if (src->empty())
          return make_error(w + what + " must be an expression over the fields of " + l.stream);
        auto c = compile_expr(*src, resolve);
        if (!c) return make_error(w + what + ": " + c.error_message());
        *dst = *c;
      }
      for (auto& name : str_list(L, t, "features")) {
        const view_def* v = defs.find_view(name);
        if (!v) return make_error(w + "unknown view '" + name + "'");
        if (v->stream != l.stream)
          return make_error(w + "view " + v->qualified() + " reads stream " + v->stream + ", not " +
                            l.stream);
        for (const view_def* o : l.views)
          if (o->name == v->name) return make_error(w + "view " + v->name + " named twice");
        l.views.push_back(v);
      }
      if (l.views.empty())
        return make_error(w + "features must name at least one view, e.g. { \"airport_delay@1\" }");
      lua_getfield(L, t, "on_demand");
      if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
          return make_error(w + "on_demand must be a table { name = \"expression\" }");
        int ot = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, ot) != 0) {
          if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return make_error(w + "each on-demand feature is name = \"expression\"");
          label_def::on_demand_feature od{lua_tostring(L, -2), lua_tostring(L, -1), nullptr};
          if (!valid_name(od.name))
            return make_error(w + "bad on-demand feature name '" + od.name + "'");
          auto c = compile_expr(od.src, resolve);
          if (!c) return make_error(w + "on-demand " + od.name + ": " + c.error_message());
          od.e = *c;
          l.on_demand.push_back(std::move(od));
          lua_pop(L, 1);
        }
        std::sort(l.on_demand.begin(), l.on_demand.end(),
                  [](auto& a, auto& b) { return a.name < b.name; });
      }
      lua_pop(L, 1);
      if (has_field(L, t, "snapshot")) {
        auto d = parse_duration(str_field(L, t, "snapshot"));
        if (!d || *d <= 0)
          return make_error(w + "snapshot must be a positive duration like \"1d\"");
        l.snapshot_us = *d;
      }
      defs.labels_.push_back(std::move(l));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ok_status();
  }

  // rules = { { name, when, decision, top_k }, ..., on_error = "label" } or
  // rules = { lua = "function(score, f) ... end", on_error, max_instructions, budget }
  // (rules.h): compiled over score, rank, the model's inputs and the label stream's fields.
  static status read_rules(lua_State* L, int t, const definitions& defs, const label_def& l,
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
  // and `when` compiles over its fields.
  static status read_follow(lua_State* L, int t, const definitions& defs, const label_def& l,
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

  static status read_models(lua_State* L, int decl, definitions& defs, const where_fn& where) {
    lua_getfield(L, decl, "models");
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; ++i) {
      lua_geti(L, -1, i);
      int t = lua_gettop(L);
      model_def m;
      m.name = str_field(L, t, "name");
      std::string w = where(t) + "model " + m.name + ": ";
      if (!valid_name(m.name))
        return make_error(where(t) + "model needs a name of letters, digits and _ (got '" + m.name +
                          "')");
      if (auto bad = unknown_keys(
              L, t,
              {"name", "label", "kind", "hidden", "epochs", "batch_size", "learning_rate",
               "weight_decay", "seed", "features", "split", "log_sample", "shadow_sample",
               "fallback", "max_feature_age", "follow", "rules", "monitor"});
          !bad.empty())
        return make_error(w + "unknown key(s) " + bad);
      if (defs.find_model(m.name)) return make_error(w + "defined twice");
      m.label = str_field(L, t, "label");
      const label_def* l = defs.find_label(m.label);
      if (!l) return make_error(w + "unknown label '" + m.label + "'");
      m.kind = str_field(L, t, "kind", "logistic");
      if (m.kind != "logistic" && m.kind != "mlp")
        return make_error(w + "kind must be \"logistic\" or \"mlp\"");
      if (has_field(L, t, "hidden")) {
        m.hidden.clear();
        for (auto& h : str_list(L, t, "hidden")) m.hidden.push_back(std::atoi(h.c_str()));
        for (int h : m.hidden)
          if (h < 1 || h > 4096)
            return make_error(w + "hidden layer sizes must be between 1 and 4096");
        if (m.hidden.empty())
          return make_error(w + "hidden must list layer sizes, e.g. { 32, 16 }");
      }
      m.epochs = static_cast<int>(int_field(L, t, "epochs", m.epochs));
      m.batch_size = static_cast<int>(int_field(L, t, "batch_size", m.batch_size));
      m.learning_rate = num_field(L, t, "learning_rate", m.learning_rate);
      m.weight_decay = num_field(L, t, "weight_decay", m.weight_decay);
      m.seed = static_cast<uint64_t>(int_field(L, t, "seed", static_cast<int64_t>(m.seed)));
      if (m.epochs < 1 || m.epochs > 10000)
        return make_error(w + "epochs must be between 1 and 10000");
      if (m.batch_size < 1 || m.batch_size > 1'000'000)
        return make_error(w + "batch_size must be between 1 and 1000000");
      if (!(m.learning_rate > 0 && m.learning_rate < 100))
        return make_error(w + "learning_rate must be in (0, 100)");
      if (!(m.weight_decay >= 0 && m.weight_decay < 1))
        return make_error(w + "weight_decay must be in [0, 1)");
      m.log_sample = num_field(L, t, "log_sample", m.log_sample);
      if (!(m.log_sample >= 0 && m.log_sample <= 1))
        return make_error(w + "log_sample must be in [0, 1] (the share of predictions logged)");
      if (has_field(L, t, "max_feature_age")) {
        auto d = parse_duration(str_field(L, t, "max_feature_age"));
        if (!d || *d <= 0)
          return make_error(w + "max_feature_age must be a positive duration like \"6h\"");
        m.max_feature_age_us = *d;
      }
      lua_getfield(L, t, "fallback");
      if (lua_istable(L, -1)) {
        const int ft = lua_gettop(L);
        if (auto bad = unknown_keys(L, ft, {"model", "constant", "reserve"}); !bad.empty())
          return make_error(w + "fallback: unknown key(s) " + bad +
                            " (fallback = { model = \"name\" } or { constant = 0.5 })");
        m.fallback.model = str_field(L, ft, "model");
        if (has_field(L, ft, "constant")) {
          m.fallback.has_constant = true;
          m.fallback.constant = num_field(L, ft, "constant", 0);
          if (!(m.fallback.constant >= 0 && m.fallback.constant <= 1))
            return make_error(w + "fallback.constant must be a score in [0, 1]");
        }
        if (m.fallback.has_constant == !m.fallback.model.empty())
          return make_error(w + "fallback needs exactly one of model = \"name\" or constant = x");
        if (has_field(L, ft, "reserve")) {
          auto d = parse_duration(str_field(L, ft, "reserve"));
          if (!d || *d < 0)
            return make_error(w + "fallback.reserve must be a duration like \"20ms\"");
          m.fallback.reserve_us = *d;
        }
      } else if (!lua_isnil(L, -1)) {
        return make_error(w + "fallback = { model = \"name\" } or { constant = 0.5 }");
      }
      lua_pop(L, 1);
      if (auto st = read_follow(L, t, defs, *l, w, m.follow); !st) return st;
      m.shadow_sample = num_field(L, t, "shadow_sample", m.shadow_sample);
      if (!(m.shadow_sample >= 0 && m.shadow_sample <= 1))
        return make_error(w + "shadow_sample must be in [0, 1] (the share of examples shadowed)");
      auto columns = l->feature_columns();
      m.features = str_list(L, t, "features");
      for (auto& f : m.features)
        if (chained_model(f).empty() &&
            std::find(columns.begin(), columns.end(), f) == columns.end())
          return make_error(w + "feature '" + f + "' is not a column of label " + l->name +
                            " (view.feature, an on-demand name, or model:NAME for another " +
                            "model's score)");
      if (auto st = read_rules(L, t, defs, *l, w, where, m); !st) return st;
      if (auto st = read_monitor(L, t, w, m.monitor); !st) return st;
      // split = { train = { "2001-01-01", "2001-05-01" }, validation = { ..., ... }, test = { ...,
      // ... } }
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
      defs.models_.push_back(std::move(m));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    // Fallback models and chained models (features "model:NAME") exist, a chained model reads
    // examples of the same stream, and no path through fallbacks and chains comes back to where
    // it started (a fallback cycle, or a cycle of models taking each other's scores).
    for (auto& m : defs.models_)
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
                            " predicts examples of stream " + (ul ? ul->stream : "?") +
                            ", not of " + (ml ? ml->stream : "?") + " (the same example)");
      }
    for (auto& m : defs.models_) {
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

 public:
  static result<std::shared_ptr<const definitions>> build(const std::string& source,
                                                          const std::string& chunk) {
    auto host = lua_host::open();
    if (!host) return make_error(host.error_message());
    if (auto st = (*host)->run_prelude(kPrelude); !st) return make_error(st.error_message());
    if (auto st = (*host)->run(source, chunk, kMaxInstructions); !st)
      return make_error(st.error_message());
    lua_State* L = (*host)->state();

    auto defs = std::make_shared<definitions>();
    lua_getglobal(L, "__tessera_decl");
    int decl = lua_gettop(L);
    auto where = [&](int idx) {
      return chunk + ":" + std::to_string(int_field(L, idx, "__line", 0)) + ": ";
    };
    for (auto read : {&read_streams, &read_entities, &read_views})
      if (auto r = read(L, decl, *defs, where); !r) return make_error(r.error_message());
    auto st = defs->finish();
    if (!st) return make_error(chunk + ": " + st.error_message());
    if (auto r = read_labels(L, decl, *defs, where); !r) return make_error(r.error_message());
    if (auto r = read_models(L, decl, *defs, where); !r) return make_error(r.error_message());
    return std::shared_ptr<const definitions>(std::move(defs));
  }
};

result<std::shared_ptr<const definitions>> definitions::load_string(const std::string& source,
                                                                    const std::string& chunk) {
  try {
    return definitions_builder::build(source, chunk);
  } catch (const std::exception& e) {
    return make_error(chunk + ": " + e.what());
  }
}

result<std::shared_ptr<const definitions>> definitions::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error("cannot read definitions file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return load_string(ss.str(), path);
}

}  // namespace tessera
