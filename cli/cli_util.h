// Small helpers the CLI commands share: how a failed call is reported, number formatting.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

#include "tessera/result.h"

namespace tessera::cli {

// A failed call as the user should read it; when no node answered, where to look.
inline void print_error(const std::string& rpc, const error& e, const char* lead = "") {
  if (e.code == errc::unavailable)
    std::fprintf(stderr,
                 "%serror: cannot reach a Tessera node at %s (%s)\n  Is `tessera node` running "
                 "there? (--rpc HOST:PORT)\n",
                 lead, rpc.c_str(), e.message.c_str());
  else
    std::fprintf(stderr, "%serror: %s\n", lead, e.message.c_str());
}
template <typename T>
int fail(const std::string& rpc, const result<T>& r) {
  print_error(rpc, r.failure());
  return 2;
}

// 1234567 → "1,234,567"
inline std::string human(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace tessera::cli
