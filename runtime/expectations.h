// Data expectations checked where events enter (the ingest gateway), declared per stream field:
//
//   stream { name = "flights", ...,
//     expect = {
//       distance = { not_null = true, min = 1, max = 6000, on_fail = "reject" },
//       origin   = { pattern = "^[A-Z]{3}$", on_fail = "dead_letter" },
//       delay    = { min = -120, max = 2000, max_null_share = 0.05 },
//       carrier  = { values = { "AA", "UA", "DL" } },
//       date     = { max_lag = "2d" },
//     },
//     expect_slice = "origin",   -- soft failures are counted per value of this field
//     expect_window = "1h",      -- the event-time window of max_null_share
//   }
//
// Checks: not_null; min and max (numbers); values (allowed, compared as text); pattern (an
// ECMAScript regular expression the whole text must match); max_lag (how far the event time may
// lie behind the stream's clock: now for a live stream, the watermark for a replay one);
// max_null_share (the share of null values per slice and window, judged when the window ends).
// on_fail: "count" (soft, the default: the event is kept, the failure counted per slice with the
// last failing events), "reject" (the producer gets the reason in its rejections) or
// "dead_letter" (a dead-letter record on tsr.dlq.<stream> with the reason; the producer is told
// too). A null value fails only not_null (and counts toward max_null_share): the other checks
// are of present values.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tessera/result.h"
#include "value.h"

struct lua_State;

namespace tessera {

struct stream_def;

struct expectation {
  enum class action { count, reject, dead_letter };
  std::string field;
  int index = -1;  // in the stream's fields
  action on_fail = action::count;
  bool not_null = false;
  bool has_min = false, has_max = false;
  double min = 0, max = 0;
  std::vector<std::string> values;  // allowed values as text; empty: any
  std::string pattern;
  std::shared_ptr<const std::regex> re;
  double max_null_share = -1;    // < 0: none
  int64_t max_lag_us = 0;        // 0: none
  std::string describe() const;  // "min 1, max 6000, not null"
};
const char* action_name(expectation::action a);

class expectation_set {
 public:
  // Reads `expect`, `expect_slice` and `expect_window` of the stream table at `stream_table`
  // (its fields already read into `s`); null when none is declared. Errors name `where`.
  static result<std::shared_ptr<const expectation_set>> read(lua_State* L, int stream_table,
                                                             const stream_def& s,
                                                             const std::string& where);
  const std::vector<expectation>& all() const { return all_; }
  const std::string& slice_field() const { return slice_; }
  int slice_index() const { return slice_index_; }
  int64_t window_us() const { return window_us_; }

  // The reason `fields` fail expectation `e` (empty: it holds). `clock_us` 0: no lag check.
  static std::string failure(const expectation& e, const std::vector<value>& fields,
                             int64_t event_time, int64_t clock_us);

 private:
  std::vector<expectation> all_;
  std::string slice_;
  int slice_index_ = -1;
  int64_t window_us_ = 3600LL * 1000000;
};

// What a node's gateway saw of the expectations: per stream, expectation and slice, the events
// checked and failed, and the last failing events; null shares per slice and window.
// Bounded: at most kMaxSlices slices per expectation (the rest are counted under "(other)"),
// kLastKept failing events each. Thread-safe.
class validation_ledger {
 public:
  static constexpr size_t kMaxSlices = 5000;
  static constexpr size_t kLastKept = 5;

  // The first hard failure of the event (reject or dead-letter), if any; soft ones are counted.
  struct verdict {
    expectation::action action = expectation::action::count;  // count: the event is kept
    std::string field, reason;
  };
  verdict record(const stream_def& s, const std::vector<value>& fields, int64_t event_time,
                 int64_t clock_us);
  // {stream, slice_field, window, expectations: [{field, checks, on_fail, checked, failed,
  //  null_windows_failed, slices: [{slice, checked, failed, null_share, last: [...]}]}]};
  // the slices with most failures first (at most `top`).
  nlohmann::json report(const stream_def& s, size_t top = 20) const;
  uint64_t failed_total() const;

 private:
  struct slice_counts {
    uint64_t checked = 0, failed = 0;
    std::deque<std::string> last;  // JSON text of the last failing events, newest last
    int64_t window = INT64_MIN;    // null share: the window being counted
    uint64_t window_events = 0, window_nulls = 0;
    uint64_t windows_failed = 0;
    double last_share = 0;  // of the last complete window
  };
  using per_expectation = std::map<std::string, slice_counts>;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<per_expectation>> streams_;
  uint64_t failed_total_ = 0;
};

}  // namespace tessera
