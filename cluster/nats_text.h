// The text of a libnats status with the library's last error detail, for error messages.
#pragma once
#include <nats/nats.h>

#include <string>

namespace tessera {

inline std::string nats_text(natsStatus s) {
  std::string m = natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last && *last) m += std::string(" (") + last + ")";
  return m;
}

}  // namespace tessera
