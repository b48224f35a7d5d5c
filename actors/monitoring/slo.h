// Service-level objectives on what a node serves, evaluated with burn rates (plain C++).
//
// An objective allows a share of bad events (`budget`: e.g. 0.001 of predictions may fail).
// The burn rate over a window is the bad share in it divided by the budget: 1 spends the budget
// exactly over the objective's period, 14.4 spends a 30-day budget's 2% in an hour. As in the
// Google SRE workbook's multiwindow, multi-burn-rate alerts:
//   - page:   burn >= 14.4 over both the last hour and the last 5 minutes (fast: a real outage,
//             and still happening);
//   - ticket: burn >= 6 over both the last 6 hours and the last 30 minutes (slow: a leak).
// Windows with fewer than `min_events` events are not judged (a handful of requests is no
// evidence). Counters come as cumulative totals per source (a serving version), so a source
// that restarts from zero or disappears is not read as negative traffic.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace tessera::monitoring {

class burn_rates {
 public:
  explicit burn_rates(double budget, uint64_t min_events = 100)
      : budget_(budget), min_events_(min_events) {}
  // Cumulative (total, bad) of each source at `now_us`; deltas since the last call are counted.
  void observe(int64_t now_us, const std::map<std::string, std::pair<uint64_t, uint64_t>>& totals);
  // Adds (total, bad) events at `now_us` directly (tests, sources without totals).
  void add(int64_t now_us, uint64_t total, uint64_t bad);
  // The burn rate over (now - window, now]; 0 with fewer than min_events events.
  double burn(int64_t now_us, int64_t window_us) const;
  uint64_t events(int64_t now_us, int64_t window_us) const;
  enum class level { none, ticket, page };
  level judge(int64_t now_us) const;
  double budget() const { return budget_; }

 private:
  struct tick {
    int64_t t;
    uint64_t total, bad;
  };
  double budget_;
  uint64_t min_events_;
  std::deque<tick> ticks_;  // the last 6 hours
  std::map<std::string, std::pair<uint64_t, uint64_t>> last_;
  void sums(int64_t now_us, int64_t window_us, uint64_t& total, uint64_t& bad) const;
};

const char* level_name(burn_rates::level l);

}  // namespace tessera::monitoring
