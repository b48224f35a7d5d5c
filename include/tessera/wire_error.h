// How an error crosses the RPC boundary, in one place for the server's edge and the client.
// A failed call is a Cap'n Proto exception whose description starts with the error's code in
// brackets: "[not_found] unknown view 'x' (known: ...)". The exception's type says what
// Cap'n Proto itself understands: OVERLOADED for retryable and overloaded, FAILED for the rest;
// DISCONNECTED is the transport's (the connection broke: the call may or may not have run).
// Clients in other languages parse the same prefix (schemas/README.md, "Errors").
#pragma once
#include <string>
#include <string_view>

#include "tessera/result.h"

namespace tessera {

// The code as it is written on the wire: its name (errc_name) with '_' for ' ': internal,
// invalid, not_found, retryable, overloaded, deadline, unauthorized, unavailable.
inline std::string errc_token(errc c) {
  std::string t = errc_name(c);
  for (char& ch : t)
    if (ch == ' ') ch = '_';
  return t;
}

inline std::string wire_error_text(const error& e) {
  return std::string("[") + errc_token(e.code) + "] " + e.message;
}

// The error a remote exception stands for. `description` is the exception's text (kj prefixes
// "remote exception: " on the client side); `overloaded` and `disconnected` its type. Text
// without a code (an older server, or Cap'n Proto's own failures) is internal, or retryable when
// the type says so. A DISCONNECTED exception without a code is the transport's: unavailable.
inline error parse_wire_error(std::string_view description, bool overloaded, bool disconnected) {
  constexpr std::string_view remote = "remote exception: ";
  if (description.substr(0, remote.size()) == remote) description.remove_prefix(remote.size());
  const errc codes[] = {errc::internal,   errc::invalid,  errc::not_found,    errc::retryable,
                        errc::overloaded, errc::deadline, errc::unauthorized, errc::unavailable};
  if (description.size() > 2 && description[0] == '[') {
    const auto close = description.find("] ");
    if (close != std::string_view::npos) {
      const std::string_view token = description.substr(1, close - 1);
      for (errc c : codes)
        if (token == errc_token(c)) return error{std::string(description.substr(close + 2)), c};
    }
  }
  const errc c = disconnected ? errc::unavailable : overloaded ? errc::retryable : errc::internal;
  return error{std::string(description), c};
}

}  // namespace tessera
