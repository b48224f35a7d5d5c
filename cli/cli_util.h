// Small helpers the CLI commands share: how a failed call is reported, number formatting, the
// progress line on stderr, and the values of input rows as the client sends them.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "input_reader.h"
#include "tessera/client.h"
#include "tessera/result.h"

namespace tessera::cli {

// A failed call as the user should read it; when no node answered, where to look.
inline void print_error(const std::string& rpc, const error& e, const char* lead = "") {
  if (e.code == errc::unavailable)
    std::fprintf(stderr,
                 "%serror: cannot reach a Tessera node at %s (%s)\n  Is `tessera node` running "
                 "there? (--rpc HOST:PORT)\n",
                 lead, rpc.c_str(), e.message.c_str());
  else
    std::fprintf(stderr, "%serror: %s\n", lead, e.message.c_str());
}
template <typename T>
int fail(const std::string& rpc, const result<T>& r) {
  print_error(rpc, r.failure());
  return 2;
}

// 1234567 → "1,234,567"
inline std::string human(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

// The progress line of a long command on stderr: `[#####     ]  42%  FIGURES`. On a terminal it
// is redrawn in place at most every 200 ms; otherwise a new line every 5 s; with `quiet` only
// the final line. Owned by the command's thread.
class progress_line {
 public:
  explicit progress_line(bool quiet) : quiet_(quiet), tty_(::isatty(2) && !quiet) {}
  // Whether a line is due now (the final one always is); ask before computing the figures.
  bool due(bool final) {
    auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(tty_ ? 200 : 5000)) return false;
    last_ = now;
    return final || !quiet_;
  }
  // REQUIRES: due(final) just returned true.
  void draw(double fraction, const std::string& figures, bool final) {
    int bars = static_cast<int>(fraction * 30);
    std::fprintf(stderr, "%s[%.*s%*s] %3.0f%%  %s%s", tty_ ? "\r" : "", bars,
                 "##############################", 30 - bars, "", fraction * 100, figures.c_str(),
                 (final || !tty_) ? "\n" : "");
    std::fflush(stderr);
  }

 private:
  bool quiet_, tty_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// A field of an input row as the client sends it: text stays text (the node parses it to the
// stream's declared type), JSON numbers and booleans keep their type, JSON null is no value.
// `Value`: client::value, or the runtime's value (the same alternatives for these).
template <class Value = client::value>
Value field_value(input_field&& f) {
  switch (f.k) {
    case input_field::text:
      return std::move(f.text_value);
    case input_field::number_int:
      return f.i;
    case input_field::number_float:
      return f.f;
    case input_field::boolean:
      return f.b;
    case input_field::null:
      break;
  }
  return std::monostate{};
}

// A connection for ingest: a batch that meets an overloaded or briefly unreachable node is sent
// again with the same id (stored once), backing off 0.2 s to 6.4 s: up to about 13 s in all.
inline std::unique_ptr<client::connection> ingest_connection(const std::string& rpc) {
  client::options co;
  co.address = rpc;
  co.retry.attempts = 6;
  co.retry.first_backoff = std::chrono::milliseconds(200);
  co.retry.max_backoff = std::chrono::milliseconds(6400);
  return client::connection::open(co);
}

inline const char* status_name(client::vector_status s) {
  switch (s) {
    case client::vector_status::fresh:
      return "fresh";
    case client::vector_status::stale:
      return "stale";
    default:
      return "missing";
  }
}

}  // namespace tessera::cli
