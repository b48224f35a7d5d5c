// Reading a definitions file: runs it in the Lua host (lua_host.h), then turns the declaration
// tables it left (stream, entity, view, label, model) into a definitions, checking each as it
// goes. Errors name the file, the line of the declaration and the problem.
//
// This file: the prelude, the order of reading, streams and entities. Views are read in
// definitions_reader_views.cc, labels in definitions_reader_labels.cc, models in
// definitions_reader_models.cc and a model's monitor in definitions_monitor.cc (all declared in
// definitions_reader_internal.h).
#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include <lua.hpp>

#include "definitions.h"
#include "definitions_reader_internal.h"
#include "expectations.h"
#include "lua_host.h"
#include "time_util.h"

namespace tessera {
namespace {

using lua::has_field;
using lua::int_field;
using lua::str_field;
using lua::unknown_keys;
using where_fn = definitions_builder::where_fn;

constexpr int kMaxInstructions = 50'000'000;  // what a definitions file may run

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

// fields = { name = "type", ... } of the stream table at `t`: appends the sent fields to
// s.fields. Errors: not a table, a bad name, an unknown type.
status read_sent_fields(lua_State* L, int t, const where_fn& where, stream_def& s) {
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
      return make_error(where(t) + "stream " + s.name + ": field " + fname + " has unknown type '" +
                        ftype + "' (int, float, text, bool, timestamp)");
    s.fields.push_back({fname, ty});
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok_status();
}

// derive = { name = { type = "timestamp", expr = "..." } } (computed, never sent) of the stream
// table at `t`: appends the derived fields, uncompiled, to s.fields (after the sent ones). Errors:
// a bad shape, name or type, no expr, a name also sent.
status read_derived_fields(lua_State* L, int t, const where_fn& where, stream_def& s) {
  lua_getfield(L, t, "derive");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1))
      return make_error(where(t) + "stream " + s.name +
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
  return ok_status();
}

// Compiles each derived field of the stream at `t` (`s`, its fields in their final order) over
// the sent fields only, setting field_def::derive. The error: the first that does not compile.
status compile_derived_fields(int t, const where_fn& where, stream_def& s) {
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
  return ok_status();
}

// The stream's durations (max_age, duplicate_window, offline_retention, max_future, max_jump)
// and clock, where given; the rest keep their defaults. Errors: a bad duration, a max_future or
// max_jump that is not positive, a clock other than "live" or "replay".
status read_stream_limits(lua_State* L, int t, const where_fn& where, stream_def& s) {
  for (auto [key, dst] :
       {std::pair{"max_age", &s.max_age_us}, std::pair{"duplicate_window", &s.duplicate_window_us},
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
  return ok_status();
}

// One stream{...} table at `t` into `s`: name, keys, fields (sent, then derived, sorted by name),
// time_field, limits, clock and expectations. `defs` holds the streams read before it (a name
// may not repeat).
status read_stream(lua_State* L, int t, const definitions& defs, const where_fn& where,
                   stream_def& s) {
  if (auto st = read_name(L, t, "stream", where, s.name); !st) return st;
  if (auto bad = unknown_keys(L, t,
                              {"name", "time_field", "fields", "derive", "max_age",
                               "duplicate_window", "offline_retention", "clock", "max_future",
                               "max_jump", "expect", "expect_slice", "expect_window"});
      !bad.empty())
    return make_error(where(t) + "stream " + s.name + ": unknown key(s) " + bad);
  if (defs.find_stream(s.name)) return make_error(where(t) + "stream " + s.name + " defined twice");
  s.time_field = str_field(L, t, "time_field");
  if (auto st = read_sent_fields(L, t, where, s); !st) return st;
  if (auto st = read_derived_fields(L, t, where, s); !st) return st;
  std::sort(s.fields.begin(), s.fields.end(), [](auto& a, auto& b) { return a.name < b.name; });
  if (s.fields.empty()) return make_error(where(t) + "stream " + s.name + " has no fields");
  if (auto st = compile_derived_fields(t, where, s); !st) return st;
  int ti = s.field_index(s.time_field);
  if (ti < 0 || s.fields[ti].type != field_type::timestamp)
    return make_error(where(t) + "stream " + s.name +
                      ": time_field must name a field of type timestamp");
  if (auto st = read_stream_limits(L, t, where, s); !st) return st;
  auto expect = expectation_set::read(L, t, s, where(t));
  if (!expect) return expect.failure();
  s.expect = std::move(expect.value());
  return ok_status();
}

// One entity{...} table at `t` into `e`: its name and key (one field name or a list of them).
// `defs` holds the entities read before it (a name may not repeat).
status read_entity(lua_State* L, int t, const definitions& defs, const where_fn& where,
                   entity_def& e) {
  if (auto st = read_name(L, t, "entity", where, e.name); !st) return st;
  if (auto bad = unknown_keys(L, t, {"name", "key"}); !bad.empty())
    return make_error(where(t) + "entity " + e.name + ": unknown key(s) " + bad);
  if (defs.find_entity(e.name)) return make_error(where(t) + "entity " + e.name + " defined twice");
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
  return ok_status();
}

}  // namespace

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return !std::isdigit(static_cast<unsigned char>(s[0]));
}

status read_name(lua_State* L, int t, const char* kind,
                 const std::function<std::string(int)>& where, std::string& name) {
  name = str_field(L, t, "name");
  if (!valid_name(name))
    return make_error(where(t) + kind + " needs a name of letters, digits and _ (got '" + name +
                      "')");
  return ok_status();
}

status definitions_builder::read_streams(lua_State* L, int decl, definitions& defs,
                                         const where_fn& where) {
  return read_each(L, decl, "streams", defs, where, read_stream, defs.streams_);
}

status definitions_builder::read_entities(lua_State* L, int decl, definitions& defs,
                                          const where_fn& where) {
  return read_each(L, decl, "entities", defs, where, read_entity, defs.entities_);
}

result<std::shared_ptr<const definitions>> definitions_builder::build(const std::string& source,
                                                                      const std::string& chunk) {
  auto host = lua_host::open();
  if (!host) return make_error(host.error_message());
  if (auto st = (*host)->run_prelude(kPrelude); !st) return make_error(st.error_message());
  if (auto st = (*host)->run(source, chunk, kMaxInstructions); !st)
    return make_error(st.error_message());
  lua_State* L = (*host)->state();
  // Reading runs no code of the file's but its tables' metamethods (setmetatable is there):
  // those run protected and bounded, as the chunk did.
  result<std::shared_ptr<const definitions>> out = make_error(chunk + ": nothing read");
  auto read = [&] {
    try {
      out = read_all(L, chunk);
    } catch (const std::exception& e) {
      out = make_error(chunk + ": " + e.what());
    }
  };
  if (auto st = (*host)->call(read, kMaxInstructions); !st) return make_error(st.error_message());
  return out;
}

result<std::shared_ptr<const definitions>> definitions_builder::read_all(lua_State* L,
                                                                         const std::string& chunk) {
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
