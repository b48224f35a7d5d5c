#include "lua_host.h"

#include <lua.hpp>

#include <cstdio>
#include <cstdlib>

namespace tessera {

namespace {

// Lua's allocator with a ceiling on what the state holds in all (0: none). Past it an
// allocation fails, which Lua raises as a "not enough memory" error in the running code.
void* bounded_alloc(void* ud, void* ptr, size_t old_size, size_t new_size) {
  auto* a = static_cast<lua_host::memory*>(ud);
  if (!ptr) old_size = 0;  // for a new block Lua passes the object's type, not a size
  if (new_size == 0) {
    std::free(ptr);
    a->used -= old_size;
    return nullptr;
  }
  if (a->limit && new_size > old_size && a->used + (new_size - old_size) > a->limit) return nullptr;
  void* p = std::realloc(ptr, new_size);
  if (p) a->used += new_size - old_size;
  return p;
}

}  // namespace

result<std::unique_ptr<lua_host>> lua_host::open(size_t max_bytes) {
  auto mem = std::make_unique<memory>();
  mem->limit = max_bytes;
  lua_State* L = lua_newstate(bounded_alloc, mem.get());
  if (!L) return make_error("cannot create Lua state");
  std::unique_ptr<lua_host> host(new lua_host(L));
  host->mem_ = std::move(mem);
  lua_atpanic(L, [](lua_State* l) {  // as luaL_newstate's: say why before Lua aborts
    const char* m = lua_tostring(l, -1);
    std::fprintf(stderr, "Lua panic: %s\n", m ? m : "(no message)");
    return 0;
  });
  luaL_requiref(L, "_G", luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_DBLIBNAME, luaopen_debug, 1);  // for run_prelude; removed there
  lua_settop(L, 0);
  for (const char* g : {"dofile", "loadfile", "load", "collectgarbage"}) {
    lua_pushnil(L);
    lua_setglobal(L, g);
  }
  return host;
}

lua_host::~lua_host() {
  lua_close(L_);
}

status lua_host::run_prelude(const char* code) {
  if (luaL_dostring(L_, code) != LUA_OK)
    return make_error(std::string("prelude: ") + lua_tostring(L_, -1));
  lua_pushnil(L_);
  lua_setglobal(L_, "debug");
  return ok_status();
}

status lua_host::run(const std::string& source, const std::string& chunk_name,
                     int max_instructions) {
  lua_sethook(
      L_,
      [](lua_State* l, lua_Debug*) {
        luaL_error(l, "definitions took too long (instruction limit)");
      },
      LUA_MASKCOUNT, max_instructions);
  int rc = luaL_loadbuffer(L_, source.data(), source.size(), ("@" + chunk_name).c_str());
  if (rc == LUA_OK) rc = lua_pcall(L_, 0, 0, 0);
  if (rc != LUA_OK) return make_error(std::string(lua_tostring(L_, -1)));
  lua_sethook(L_, nullptr, 0, 0);
  return ok_status();
}

status lua_host::call(const std::function<void()>& fn, int max_instructions) {
  struct frame {
    const std::function<void()>* fn;
    std::string error;  // a C++ exception's
  } f{&fn, {}};
  lua_sethook(
      L_,
      [](lua_State* l, lua_Debug*) {
        luaL_error(l, "definitions took too long (instruction limit)");
      },
      LUA_MASKCOUNT, max_instructions);
  lua_pushcfunction(L_, [](lua_State* l) -> int {
    auto* f = static_cast<frame*>(lua_touserdata(l, 1));
    lua_settop(l, 0);
    // Only C++ exceptions: a Lua error (thrown as Lua's own type in this C++ build of Lua) must
    // reach the protected call.
    try {
      (*f->fn)();
    } catch (const std::exception& e) {
      f->error = e.what();
      if (f->error.empty()) f->error = "error";
    }
    return 0;
  });
  lua_pushlightuserdata(L_, &f);
  const int rc = lua_pcall(L_, 1, 0, 0);
  lua_sethook(L_, nullptr, 0, 0);
  if (rc != LUA_OK) {
    const char* m = lua_tostring(L_, -1);
    std::string msg = m ? m : "a Lua error whose value is not a string";
    lua_settop(L_, 0);
    return make_error(msg);
  }
  if (!f.error.empty()) return make_error(f.error);
  return ok_status();
}

namespace lua {

std::string str_field(lua_State* L, int idx, const char* key, const std::string& def) {
  lua_getfield(L, idx, key);
  std::string out = def;
  if (lua_type(L, -1) == LUA_TSTRING)
    out = lua_tostring(L, -1);
  else if (lua_type(L, -1) == LUA_TNUMBER)
    out = lua_tostring(L, -1);
  lua_pop(L, 1);
  return out;
}

double num_field(lua_State* L, int idx, const char* key, double def) {
  lua_getfield(L, idx, key);
  double out = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return out;
}

int64_t int_field(lua_State* L, int idx, const char* key, int64_t def) {
  lua_getfield(L, idx, key);
  int64_t out = def;
  if (lua_isinteger(L, -1))
    out = lua_tointeger(L, -1);
  else if (lua_type(L, -1) == LUA_TNUMBER)
    out = static_cast<int64_t>(lua_tonumber(L, -1));
  lua_pop(L, 1);
  return out;
}

bool has_field(lua_State* L, int idx, const char* key) {
  lua_getfield(L, idx, key);
  bool has = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return has;
}

std::vector<std::string> str_list(lua_State* L, int idx, const char* key) {
  std::vector<std::string> out;
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) == LUA_TSTRING)
    out.push_back(lua_tostring(L, -1));
  else if (lua_istable(L, -1))
    for (lua_Integer k = 1, m = luaL_len(L, -1); k <= m; ++k) {
      lua_geti(L, -1, k);
      if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
        out.push_back(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  lua_pop(L, 1);
  return out;
}

std::string unknown_keys(lua_State* L, int idx, std::initializer_list<const char*> allowed) {
  std::string bad;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      std::string k = lua_tostring(L, -1);
      bool ok = k == "__line";
      for (auto* a : allowed) ok = ok || k == a;
      if (!ok) bad += (bad.empty() ? "" : ", ") + k;
    }
  }
  return bad;
}

}  // namespace lua
}  // namespace tessera
