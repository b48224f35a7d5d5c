// result<T>: an expected outcome or a human-readable error. Business outcomes (bad input,
// unknown names) are values of this type; exceptions are kept for logistics at the kj/RPC edge.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tessera {

struct error {
  std::string message;
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

 private:
  std::variant<T, error> v_;
};

struct ok_t {};
using status = result<ok_t>;
inline status ok_status() { return ok_t{}; }

inline error make_error(std::string msg) { return error{std::move(msg)}; }

}  // namespace tessera
