// result<T>: an expected outcome or a human-readable error. Business outcomes (bad input,
// unknown names) are values of this type; exceptions are kept for logistics at the kj/RPC edge.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tessera {

// What kind of failure an error is, so that callers act on it without reading its text. The
// RPC edge maps a code to the caller's error once (retryable and overloaded: OVERLOADED, the
// rest: FAILED).
enum class errc : unsigned char {
  internal = 0,  // a bug or an unexpected failure here
  invalid,       // the request is wrong: do not repeat it as it is
  not_found,     // an unknown name or entity
  retryable,     // transient (a shard moving, an owner not answering, a clock moving on): retry
  overloaded,    // too much work in flight: retry later
  deadline,      // the caller's deadline passed
  unauthorized,  // the caller may not do this
  unavailable,   // no node answers at the address (refused, or the connection broke): retry
};
const char* errc_name(errc c);

struct error {
  std::string message;
  errc code = errc::internal;
};

template <typename T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}
  result(error e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  const std::string& error_message() const { return std::get<1>(v_).message; }
  errc error_code() const { return std::get<1>(v_).code; }
  // The error itself (message and code), to pass on unchanged.
  const error& failure() const { return std::get<1>(v_); }

 private:
  std::variant<T, error> v_;
};

struct ok_t {};
using status = result<ok_t>;
inline status ok_status() {
  return ok_t{};
}

inline error make_error(std::string msg, errc code = errc::internal) {
  return error{std::move(msg), code};
}
// True for errors worth repeating the same request for (after a pause).
inline bool is_retryable(errc c) {
  return c == errc::retryable || c == errc::overloaded || c == errc::unavailable;
}

inline const char* errc_name(errc c) {
  switch (c) {
    case errc::internal:
      return "internal";
    case errc::invalid:
      return "invalid";
    case errc::not_found:
      return "not found";
    case errc::retryable:
      return "retryable";
    case errc::overloaded:
      return "overloaded";
    case errc::deadline:
      return "deadline";
    case errc::unauthorized:
      return "unauthorized";
    case errc::unavailable:
      return "unavailable";
  }
  return "internal";
}

}  // namespace tessera
