// "<what>: <libnats status text> (<libnats' last error>)", for errors of bus.cc and
// request_mux.cc. Private to runtime/.
#pragma once
#include <nats/nats.h>

#include <string>

namespace tessera {

inline std::string nats_error(natsStatus s, const char* what) {
  std::string m = std::string(what) + ": " + natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last && *last) m += std::string(" (") + last + ")";
  return m;
}

}  // namespace tessera
