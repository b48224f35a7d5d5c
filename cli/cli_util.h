// Small helpers the CLI commands share: RPC error text and number formatting.
#pragma once
#include <kj/exception.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace tessera::cli {

// An RPC error as the user should read it (without kj's "remote exception: " prefix).
inline std::string describe(const kj::Exception& e) {
  std::string d = e.getDescription().cStr();
  const std::string prefix = "remote exception: ";
  if (d.rfind(prefix, 0) == 0) d = d.substr(prefix.size());
  return d;
}

inline void fail_connect(const std::string& rpc, const kj::Exception& e) {
  std::fprintf(stderr,
               "error: cannot reach a Tessera node at %s: %s\n  Is `tessera node` running there? "
               "(--rpc HOST:PORT)\n",
               rpc.c_str(), describe(e).c_str());
}

// 1234567 → "1,234,567"
inline std::string human(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

// True for an error the server raised on purpose (not a lost connection).
inline bool is_remote_error(const kj::Exception& e) {
  return e.getType() != kj::Exception::Type::DISCONNECTED ||
         e.getDescription().startsWith("remote exception");
}

}  // namespace tessera::cli
