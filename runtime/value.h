// Typed field values as held in memory (the wire form is wire::Value in schemas/tessera.capnp).
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace tessera {

enum class field_type : uint8_t { int64, float64, text, boolean, timestamp };

struct timestamp_value {
  int64_t micros;
  bool operator==(const timestamp_value& o) const { return micros == o.micros; }
};

// monostate = null.
using value = std::variant<std::monostate, int64_t, double, std::string, bool, timestamp_value,
                           std::vector<std::string>>;

inline bool is_null(const value& v) {
  return std::holds_alternative<std::monostate>(v);
}

// Numeric view of int, float, bool and timestamp values; false for null, text, lists.
inline bool as_number(const value& v, double& out) {
  switch (v.index()) {
    case 1:
      out = static_cast<double>(std::get<int64_t>(v));
      return true;
    case 2:
      out = std::get<double>(v);
      return true;
    case 4:
      out = std::get<bool>(v) ? 1.0 : 0.0;
      return true;
    case 5:
      out = static_cast<double>(std::get<timestamp_value>(v).micros);
      return true;
    default:
      return false;
  }
}

std::string to_text(const value& v);
const char* type_name(field_type t);

}  // namespace tessera
