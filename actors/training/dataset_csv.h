// The CSV text of a dataset part (RFC 4180), written by the part builder (dataset_part.cc):
// numbers as the shortest text that reads back as the same value, other values quoted, a
// non-finite number as an empty cell (counted). Inline: these run per cell of every part.
//
// Contract of the put_* functions: `p` points into a string with room for what they write
// (ensure() makes it); they return the position after it. Not thread-safe across one string.
#pragma once
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "codec.h"
#include "point_in_time.h"

namespace tessera {
namespace dataset_csv {

// CSV text is written through a pointer into a string made large enough first (a row at a
// time): appending cell by cell to the string cost a third of a cached build.
inline constexpr size_t kNumberChars = 32;  // the longest number written, with its comma

inline char* put_int(char* p, int64_t x) {
  return std::to_chars(p, p + 24, x).ptr;
}

inline char* put_double(char* p, double d, uint64_t& non_finite) {
  if (!std::isfinite(d)) {
    ++non_finite;  // an empty cell
    return p;
  }
  // The shortest text that reads back as exactly this double. Integral values below 10^5 print
  // as the integer (never shorter in exponent form, and fixed wins ties): the same text, faster.
  if (d == std::trunc(d) && std::fabs(d) < 1e5 && !(d == 0 && std::signbit(d)))
    return put_int(p, static_cast<int64_t>(d));
  return std::to_chars(p, p + 30, d).ptr;
}

// Quoted, with quotes doubled (RFC 4180): at most 2 + 2 * s.size() characters.
inline char* put_quoted(char* p, std::string_view s) {
  *p++ = '"';
  for (size_t i = 0;;) {
    const size_t q = s.find('"', i);
    const size_t n = (q == std::string_view::npos ? s.size() : q) - i;
    std::memcpy(p, s.data() + i, n);
    p += n;
    if (q == std::string_view::npos) break;
    *p++ = '"', *p++ = '"';
    i = q + 1;
  }
  *p++ = '"';
  return p;
}

// `out` with room made for `n` more characters after p (which points into it); returns where p
// now is. Grows by doubling: each character is zero-filled once, then written.
inline char* ensure(std::string& out, char* p, size_t n) {
  const size_t at = static_cast<size_t>(p - out.data());
  if (out.size() < at + n) out.resize(std::max(at + n, out.size() * 2));
  return out.data() + at;
}

// A table's cell: numbers in place, any other value from `boxed` as its quoted text.
inline char* put_cell(std::string& out, char* p, const number_cell& c,
                      const std::vector<value>& boxed, size_t room_after, uint64_t& non_finite) {
  switch (c.kind) {
    case number_cell::missing:
      return p;
    case number_cell::integer:
      return put_int(p, c.i);
    case number_cell::real:
      return put_double(p, c.d, non_finite);
    case number_cell::boxed:
      break;
  }
  const value& v = boxed[static_cast<size_t>(c.i)];
  if (v.index() == 0) return p;
  const std::string text = to_text(v);  // text, booleans, times, lists
  p = ensure(out, p, 2 + 2 * text.size() + room_after);
  return put_quoted(p, text);
}

inline number_cell to_cell(value&& v, std::vector<value>& boxed) {
  switch (v.index()) {
    case 0:
      return number_cell();
    case 1:
      return number_cell::of_int(std::get<int64_t>(v));
    case 2:
      return number_cell::of_double(std::get<double>(v));
    default: {
      number_cell c;
      c.kind = number_cell::boxed;
      c.i = static_cast<int64_t>(boxed.size());
      boxed.push_back(std::move(v));
      return c;
    }
  }
}

}  // namespace dataset_csv
}  // namespace tessera
