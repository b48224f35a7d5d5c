#include "time_util.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <utility>

namespace tessera {
namespace {

bool read_int(std::string_view s, size_t& pos, size_t digits, int& out) {
  if (pos + digits > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < digits; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  pos += digits;
  return true;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's algorithm (public domain), proleptic Gregorian.
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

result<int64_t> parse_timestamp(std::string_view s) {
  if (s.empty()) return make_error("empty timestamp");
  bool numeric = true;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!((s[i] >= '0' && s[i] <= '9') || (i == 0 && s[i] == '-'))) numeric = false;
  }
  if (numeric) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size())
      return make_error("bad timestamp '" + std::string(s) + "'");
    int64_t a = v < 0 ? -v : v;
    if (a < 100'000'000'000LL) return v * kMicrosPerSecond;  // seconds
    if (a < 100'000'000'000'000LL) return v * 1000;          // milliseconds
    return v;                                                // microseconds
  }
  size_t pos = 0;
  int y, mo, d, h = 0, mi = 0, sec = 0;
  auto bad = [&] { return make_error("bad timestamp '" + std::string(s) + "' (want ISO-8601)"); };
  if (!read_int(s, pos, 4, y) || pos >= s.size() || s[pos++] != '-' || !read_int(s, pos, 2, mo) ||
      pos >= s.size() || s[pos++] != '-' || !read_int(s, pos, 2, d))
    return bad();
  int64_t frac_us = 0;
  int64_t offset_s = 0;
  if (pos < s.size() && (s[pos] == 'T' || s[pos] == ' ')) {
    ++pos;
    if (!read_int(s, pos, 2, h) || pos >= s.size() || s[pos++] != ':' || !read_int(s, pos, 2, mi))
      return bad();
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!read_int(s, pos, 2, sec)) return bad();
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int64_t scale = 100000;
        size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          if (scale > 0) frac_us += (s[pos] - '0') * scale;
          scale /= 10;
          ++pos;
        }
        if (pos == start) return bad();
      }
    }
    if (pos < s.size()) {
      if (s[pos] == 'Z') {
        ++pos;
      } else if (s[pos] == '+' || s[pos] == '-') {
        int sign = s[pos] == '-' ? -1 : 1;
        ++pos;
        int oh, om = 0;
        if (!read_int(s, pos, 2, oh)) return bad();
        if (pos < s.size() && s[pos] == ':') ++pos;
        if (pos < s.size() && !read_int(s, pos, 2, om)) return bad();
        offset_s = sign * (oh * 3600 + om * 60);
      }
    }
  }
  if (pos != s.size()) return bad();
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return bad();
  int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  return secs * kMicrosPerSecond + frac_us;
}

result<int64_t> parse_duration(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
  if (i == 0) return make_error("bad duration '" + std::string(s) + "' (want e.g. 15m, 1h, 7d)");
  double n = 0;
  try {
    n = std::stod(std::string(s.substr(0, i)));
  } catch (...) {
    return make_error("bad duration '" + std::string(s) + "'");
  }
  std::string_view unit = s.substr(i);
  double mult;
  if (unit.empty() || unit == "s")
    mult = 1e6;
  else if (unit == "ms")
    mult = 1e3;
  else if (unit == "us")
    mult = 1;
  else if (unit == "m")
    mult = 60e6;
  else if (unit == "h")
    mult = 3600e6;
  else if (unit == "d")
    mult = 86400e6;
  else if (unit == "w")
    mult = 7 * 86400e6;
  else
    return make_error("bad duration unit in '" + std::string(s) + "' (use ms, s, m, h, d, w)");
  return static_cast<int64_t>(n * mult);
}

std::string format_timestamp(int64_t micros) {
  int64_t secs = micros / kMicrosPerSecond;
  int64_t frac = micros % kMicrosPerSecond;
  if (frac < 0) {
    frac += kMicrosPerSecond;
    secs -= 1;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf);
  if (frac) {
    char f[16];
    std::snprintf(f, sizeof f, ".%06lld", static_cast<long long>(frac));
    out += f;
  }
  return out + "Z";
}

int64_t now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string format_duration(int64_t micros) {
  static constexpr std::pair<int64_t, const char*> units[] = {{86400LL * 1000000, "d"},
                                                              {3600LL * 1000000, "h"},
                                                              {60LL * 1000000, "m"},
                                                              {1000000, "s"},
                                                              {1000, "ms"}};
  if (micros == 0) return "0s";
  for (auto [u, name] : units)
    if (micros % u == 0) return std::to_string(micros / u) + name;
  return std::to_string(micros) + "us";
}

bool timestamp_is_sane(int64_t micros, int64_t max_future_micros) {
  return micros >= 0 && micros <= now_micros() + max_future_micros;
}

}  // namespace tessera
