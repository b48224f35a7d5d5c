// The server's RPC edge: where a result's error becomes the caller's exception, once
// (include/tessera/wire_error.h has the format). Used by every family's capability on the
// gateway's kj thread.
#pragma once
#include <kj/async.h>
#include <kj/exception.h>

#include <string>

#include "tessera/result.h"
#include "tessera/wire_error.h"

namespace tessera {

[[noreturn]] inline void throw_rpc_error(const error& e) {
  const auto type =
      is_retryable(e.code) ? kj::Exception::Type::OVERLOADED : kj::Exception::Type::FAILED;
  kj::throwFatalException(
      kj::Exception(type, __FILE__, __LINE__, kj::str(wire_error_text(e).c_str())));
}
[[noreturn]] inline void throw_rpc_error(std::string message, errc code) {
  throw_rpc_error(error{std::move(message), code});
}

// A cross-thread fulfiller that a std::function can copy (kj::Own cannot be copied): work done
// off the kj thread (actors, NATS callbacks, worker pools) answers a call through it.
template <typename T>
struct xthread {
  kj::Own<kj::CrossThreadPromiseFulfiller<T>> f;
};

template <typename T>
T value_or_throw(result<T> r) {
  if (!r) throw_rpc_error(error{r.error_message(), r.error_code()});
  return std::move(r.value());
}

}  // namespace tessera
