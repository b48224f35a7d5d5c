// Reading the label{...} declarations of a definitions file: the examples a label makes of a
// stream (its value, prediction time, views and on-demand features). They come after the storage
// plan (definitions_reader_internal.h; the order of reading is in definitions_reader.cc).
#include <algorithm>
#include <string>
#include <tuple>
#include <utility>

#include <lua.hpp>

#include "definitions.h"
#include "definitions_reader_internal.h"
#include "lua_host.h"
#include "time_util.h"

namespace tessera {
namespace {

using lua::has_field;
using lua::str_field;
using lua::str_list;
using lua::unknown_keys;
using where_fn = definitions_builder::where_fn;

// on_demand = { name = "expression" } of the label table at `t`: appends each to l.on_demand,
// compiled over the fields of the label's stream `s`, sorted by name. Errors are prefixed by `w`.
status read_on_demand(lua_State* L, int t, const stream_def& s, const std::string& w,
                      label_def& l) {
  auto resolve = [&s](const std::string& nm) { return s.field_index(nm); };
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
  return ok_status();
}

// One label{...} table at `t` into `l`: its stream (one that feeds a view), entity (default: the
// first planned for that stream), value and prediction_time expressions, the views it reads,
// on-demand features and snapshot. `defs` holds the plans and the labels read before it.
status read_label(lua_State* L, int t, const definitions& defs, const where_fn& where,
                  label_def& l) {
  if (auto st = read_name(L, t, "label", where, l.name); !st) return st;
  std::string w = where(t) + "label " + l.name + ": ";
  if (auto bad = unknown_keys(L, t,
                              {"name", "stream", "entity", "value", "prediction_time", "features",
                               "on_demand", "snapshot"});
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
    return make_error(w + "entity '" + l.entity + "' is not a kind any view of stream " + l.stream +
                      " reads");
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
  if (auto st = read_on_demand(L, t, *s, w, l); !st) return st;
  if (has_field(L, t, "snapshot")) {
    auto d = parse_duration(str_field(L, t, "snapshot"));
    if (!d || *d <= 0) return make_error(w + "snapshot must be a positive duration like \"1d\"");
    l.snapshot_us = *d;
  }
  return ok_status();
}

}  // namespace

status definitions_builder::read_labels(lua_State* L, int decl, definitions& defs,
                                        const where_fn& where) {
  return read_each(L, decl, "labels", defs, where, read_label, defs.labels_);
}

}  // namespace tessera
