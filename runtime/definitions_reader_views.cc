// Reading the view{...} declarations of a definitions file: a view's stream, entity, durations
// and its features, each an aggregation such as count { "n_1h", window = "1h" }
// (definitions_reader_internal.h; the rest of the reader is in definitions_reader.cc).
#include <functional>
#include <map>
#include <string>
#include <utility>

#include <lua.hpp>

#include "definitions.h"
#include "definitions_reader_internal.h"
#include "lua_host.h"
#include "time_util.h"

namespace tessera {
namespace {

using lua::has_field;
using lua::int_field;
using lua::str_field;
using lua::unknown_keys;
using where_fn = definitions_builder::where_fn;

// Whether an aggregation may read `f.field` of stream `s`: count and time_since_last take none,
// sum, mean, min, max and stddev a numeric one, the others any. Errors are prefixed by fw().
status check_aggregated_field(const stream_def& s, const std::string& agg, const feature_def& f,
                              const std::function<std::string()>& fw) {
  bool needs_field = f.agg != agg_kind::count && f.agg != agg_kind::time_since_last;
  if (needs_field) {
    int fi = s.field_index(f.field);
    if (fi < 0)
      return make_error(fw() + agg + " needs field = <a field of stream " + s.name + ">" +
                        (f.field.empty() ? "" : " (unknown: '" + f.field + "')"));
    bool numeric = s.fields[fi].type != field_type::text;
    bool needs_numeric = f.agg == agg_kind::sum || f.agg == agg_kind::mean ||
                         f.agg == agg_kind::min || f.agg == agg_kind::max ||
                         f.agg == agg_kind::stddev;
    if (needs_numeric && !numeric)
      return make_error(fw() + agg + " needs a numeric field; " + f.field + " is text");
  } else if (!f.field.empty()) {
    return make_error(fw() + agg + " takes no field");
  }
  return ok_status();
}

// Feature `k` of view `v` (the aggregation table at `ft`, over stream `s`) into `f`: name,
// aggregation, field, window, filter and n. Errors are prefixed by the feature's line, the view
// and the feature's position; a name already among v.features is one.
status read_feature(lua_State* L, int ft, lua_Integer k, const stream_def& s, const view_def& v,
                    const where_fn& where, feature_def& f) {
  auto fw = [&] { return where(ft) + "view " + v.name + ", feature " + std::to_string(k) + ": "; };
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
  if (auto st = check_aggregated_field(s, agg, f, fw); !st) return st;
  auto w = parse_duration(str_field(L, ft, "window"));
  if (!w || *w <= 0) return make_error(fw() + "window must be a positive duration like \"1h\"");
  f.window_us = *w;
  f.filter_src = str_field(L, ft, "filter");
  if (!f.filter_src.empty()) {
    auto names = expr_fields(f.filter_src);
    if (!names) return make_error(fw() + names.error_message());
    for (auto& nm : *names)
      if (s.field_index(nm) < 0)
        return make_error(fw() + "filter '" + f.filter_src + "': unknown field '" + nm + "'");
  }
  if (f.agg == agg_kind::last_n_distinct) {
    f.n = static_cast<int>(int_field(L, ft, "n", 0));
    if (f.n < 1 || f.n > 1000)
      return make_error(fw() + "last_n_distinct needs n between 1 and 1000");
  }
  for (auto& other : v.features)
    if (other.name == f.name) return make_error(fw() + "duplicate feature name " + f.name);
  return ok_status();
}

// features = { count{...}, ... } of the view table at `t` (over stream `s`): appends each to
// v.features. Errors: not a list, an element that is not an aggregation, a bad feature.
status read_features(lua_State* L, int t, const stream_def& s, const where_fn& where, view_def& v) {
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
    feature_def f;
    if (auto st = read_feature(L, ft, k, s, v, where, f); !st) return st;
    v.features.push_back(std::move(f));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok_status();
}

// One view{...} table at `t` into `v`: name, version, stream and entity (declared before it),
// ttl and as_of_horizon (default: its longest window) and features. `defs` holds the streams,
// the entities and the views read before it (a name and version may not repeat).
status read_view(lua_State* L, int t, const definitions& defs, const where_fn& where, view_def& v) {
  if (auto st = read_name(L, t, "view", where, v.name); !st) return st;
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
  if (!s) return make_error(where(t) + "view " + v.name + ": unknown stream '" + v.stream + "'");
  if (!defs.find_entity(v.entity))
    return make_error(where(t) + "view " + v.name + ": unknown entity '" + v.entity + "'");
  for (auto [key, dst] :
       {std::pair{"ttl", &v.ttl_us}, std::pair{"as_of_horizon", &v.as_of_horizon_us}}) {
    if (!has_field(L, t, key)) continue;
    auto d = parse_duration(str_field(L, t, key));
    if (!d) return make_error(where(t) + "view " + v.name + ": " + key + ": " + d.error_message());
    *dst = *d;
  }
  if (auto st = read_features(L, t, *s, where, v); !st) return st;
  if (v.features.empty()) return make_error(where(t) + "view " + v.name + " has no features");
  if (v.ttl_us <= 0) v.ttl_us = v.max_window_us();
  if (v.as_of_horizon_us <= 0) v.as_of_horizon_us = v.max_window_us();
  for (auto& o : defs.views())
    if (o.name == v.name && o.version == v.version)
      return make_error(where(t) + "view " + v.qualified() + " defined twice");
  return ok_status();
}

}  // namespace

status definitions_builder::read_views(lua_State* L, int decl, definitions& defs,
                                       const where_fn& where) {
  return read_each(L, decl, "views", defs, where, read_view, defs.views_);
}

}  // namespace tessera
