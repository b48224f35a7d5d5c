// Event-time helpers. All times are int64 microseconds since the Unix epoch, UTC.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "tessera/result.h"

namespace tessera {

constexpr int64_t kMicrosPerSecond = 1'000'000;

// Parses ISO-8601 "YYYY-MM-DD[(T| )hh:mm[:ss[.fff]]][Z|±hh:mm]" or an integer of epoch
// seconds/milliseconds/microseconds (chosen by magnitude).
result<int64_t> parse_timestamp(std::string_view s);
// Parses a duration such as "90s", "15m", "1h", "24h", "7d", "250ms" (or plain seconds).
result<int64_t> parse_duration(std::string_view s);
// "2001-01-01T00:01:00Z" (fractional seconds only when non-zero).
std::string format_timestamp(int64_t micros);
int64_t now_micros();
// The largest whole unit that divides it: "2d", "21h", "90s", "250ms", "7us".
std::string format_duration(int64_t micros);

// Bounds outside of which an event time is absurd: before 1970 or more than `max_future`
// ahead of the wall clock.
bool timestamp_is_sane(int64_t micros, int64_t max_future_micros);

}  // namespace tessera
