// Private to the definitions reader (definitions_reader*.cc, definitions_monitor.cc): the
// builder that turns the declaration tables a definitions file left in its Lua state into a
// definitions, one reader per declaration kind. Nothing else includes this header.
//
// Threads: one load on one thread (the Lua state is not thread-safe); nothing here is shared.
// The readers read tables at absolute stack indices. On success each leaves the stack as it found
// it; on an error it may leave values pushed, which is harmless because the caller returns the
// error and closes the state.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include <lua.hpp>

#include "definitions.h"
#include "tessera/result.h"

namespace tessera {

// Reads the list `name` of the registry table at `decl` (what the prelude's stream{...},
// entity{...}, ... appended) one declaration at a time: `read_one(L, index, defs, where, item)`
// checks the table at `index` against what `defs` already holds; each item is appended to
// `out` before the next is read. Stops at the first error.
template <typename T, typename Read>
status read_each(lua_State* L, int decl, const char* name, definitions& defs,
                 const std::function<std::string(int)>& where, Read read_one, std::vector<T>& out) {
  lua_getfield(L, decl, name);
  for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; ++i) {
    lua_geti(L, -1, i);
    T item;
    if (auto st = read_one(L, lua_gettop(L), defs, where, item); !st) return st;
    out.push_back(std::move(item));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok_status();
}

// Reads the declarations in dependency order: streams, entities, views, then the storage plan
// (definitions::finish), then labels (which name views and plans) and models (which name labels).
class definitions_builder {
 public:
  // Runs `source` (named `chunk` in errors) in a fresh sandboxed Lua host and reads what it
  // declared. The error names the file, the declaration's line and the first problem found.
  static result<std::shared_ptr<const definitions>> build(const std::string& source,
                                                          const std::string& chunk);

  // "<chunk>:<line>: " for the declaration table at a stack index (its __line): the prefix of
  // the errors about that declaration.
  using where_fn = std::function<std::string(int)>;

 private:
  // Reads every declaration the chunk `chunk` left in `L` (inside lua_host::call).
  static result<std::shared_ptr<const definitions>> read_all(lua_State* L,
                                                             const std::string& chunk);
  // Each reads the list <kind> of the registry table at `decl` (what the prelude's stream{...},
  // entity{...}, ... appended), checks every entry against what `defs` already holds and appends
  // it to `defs`. The error is the first problem found, prefixed by where().

  // definitions_reader.cc
  static status read_streams(lua_State* L, int decl, definitions& defs, const where_fn& where);
  static status read_entities(lua_State* L, int decl, definitions& defs, const where_fn& where);
  // definitions_reader_views.cc; needs the streams and entities.
  static status read_views(lua_State* L, int decl, definitions& defs, const where_fn& where);
  // definitions_reader_labels.cc; needs the storage plan (definitions::finish).
  static status read_labels(lua_State* L, int decl, definitions& defs, const where_fn& where);
  // definitions_reader_models.cc; needs the labels. Then checks the links between the models
  // (chained scores exist and read the same stream, fallbacks exist, no cycle); those errors
  // name the models, not a line.
  static status read_models(lua_State* L, int decl, definitions& defs, const where_fn& where);
};

// Whether `s` may name a declaration or a field: 1 to 64 letters, digits and _, not starting with
// a digit.
bool valid_name(const std::string& s);
// The `name` of the declaration table at `t` into `name`; an error naming the kind ("stream",
// "view", ...) and where it is declared when it is not letters, digits and _.
status read_name(lua_State* L, int t, const char* kind,
                 const std::function<std::string(int)>& where, std::string& name);

// model { monitor = { ... } } of the model table at `model_table` into `out` (left as it is when
// the model has no monitor); errors are prefixed by `where` (definitions_monitor.cc).
status read_monitor(lua_State* L, int model_table, const std::string& where,
                    model_def::monitor_def& out);

}  // namespace tessera
