// The Lua host of definitions files: one sandboxed Lua 5.4 state, and readers of the tables a
// chunk leaves in it.
//
// Sandbox: only pure libraries (base, string, table, math); no io, os, package, require, dofile,
// loadfile, load or collectgarbage. The debug library is there for trusted setup code only
// (run_prelude) and is gone before untrusted code runs. An untrusted chunk runs under an
// instruction limit, so a definitions file cannot hang the node.
//
// Lifecycle: owned by whoever loads a file, for that one load; closes its state when destroyed.
// Threads: one thread at a time (a lua_State is not thread-safe). Outside a protected call a
// Lua error panics and aborts the process: read the tables a chunk left inside call().
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tessera/result.h"

struct lua_State;

namespace tessera {

class lua_host {
 public:
  // What the state holds, and its ceiling (0: none); see open().
  struct memory {
    size_t used = 0, limit = 0;
  };
  // A fresh sandboxed state; an error when Lua cannot allocate one. `max_bytes` > 0: the state
  // may hold no more (an allocation past it fails as a Lua "not enough memory" error).
  static result<std::unique_ptr<lua_host>> open(size_t max_bytes = 0);
  ~lua_host();
  lua_host(const lua_host&) = delete;
  lua_host& operator=(const lua_host&) = delete;

  // Borrowed: valid while this host lives.
  lua_State* state() const { return L_; }

  // Runs trusted setup code (it may use `debug`), then removes `debug` for everything after.
  // The error is "prelude: <Lua's message>".
  status run_prelude(const char* code);
  // Runs an untrusted chunk named `chunk_name` in error messages ("<chunk_name>:<line>: ...").
  // Past `max_instructions` VM instructions it fails with "definitions took too long
  // (instruction limit)". The error is Lua's message.
  status run(const std::string& source, const std::string& chunk_name, int max_instructions);
  // Runs `fn`, which reads the state through the C API, inside a protected call: a Lua error it
  // meets (a metamethod of the file's tables that raises, runs out of memory, or runs past
  // `max_instructions`) ends it and is the error returned, instead of Lua's panic and abort. A
  // std::exception out of `fn` is returned as an error too. `fn` starts on an empty stack.
  status call(const std::function<void()>& fn, int max_instructions);

 private:
  explicit lua_host(lua_State* L) : L_(L) {}
  lua_State* L_;
  std::unique_ptr<memory> mem_;  // the allocator's; outlives L_ (closed in the destructor)
};

// Readers of the table at stack index `idx`; they leave the stack as they found it.
namespace lua {

// t[key] as a string (a number is converted), else `def`.
std::string str_field(lua_State* L, int idx, const char* key, const std::string& def = "");
// t[key] as a number, else `def`.
double num_field(lua_State* L, int idx, const char* key, double def);
// t[key] as an integer (a float is truncated), else `def`.
int64_t int_field(lua_State* L, int idx, const char* key, int64_t def);
// Whether t[key] is not nil.
bool has_field(lua_State* L, int idx, const char* key);
// A list of strings at t[key] (a single string counts as a list of one; numbers are converted,
// other elements skipped).
std::vector<std::string> str_list(lua_State* L, int idx, const char* key);
// The string keys of t that are neither in `allowed` nor "__line", joined with ", " (empty:
// none). Declarations must not have hidden keys: this catches typos like `windw = "1h"`.
std::string unknown_keys(lua_State* L, int idx, std::initializer_list<const char*> allowed);

}  // namespace lua
}  // namespace tessera
