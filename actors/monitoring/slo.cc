#include "slo.h"

namespace tessera::monitoring {

namespace {
constexpr int64_t kMinute = 60LL * 1000000;
}  // namespace

const char* level_name(burn_rates::level l) {
  switch (l) {
    case burn_rates::level::page:
      return "page";
    case burn_rates::level::ticket:
      return "ticket";
    default:
      return "none";
  }
}

void burn_rates::observe(int64_t now_us,
                         const std::map<std::string, std::pair<uint64_t, uint64_t>>& totals) {
  uint64_t total = 0, bad = 0;
  for (auto& [source, v] : totals) {
    auto it = last_.find(source);
    // A new source, or one that restarted from zero: everything it has counted is new.
    const bool fresh =
        it == last_.end() || v.first < it->second.first || v.second < it->second.second;
    total += fresh ? v.first : v.first - it->second.first;
    bad += fresh ? v.second : v.second - it->second.second;
  }
  last_ = totals;
  add(now_us, total, bad);
}

void burn_rates::add(int64_t now_us, uint64_t total, uint64_t bad) {
  ticks_.push_back({now_us, total, bad});
  while (!ticks_.empty() && ticks_.front().t <= now_us - 6 * 60 * kMinute) ticks_.pop_front();
}

void burn_rates::sums(int64_t now_us, int64_t window_us, uint64_t& total, uint64_t& bad) const {
  total = bad = 0;
  for (auto it = ticks_.rbegin(); it != ticks_.rend() && it->t > now_us - window_us; ++it) {
    total += it->total;
    bad += it->bad;
  }
}

uint64_t burn_rates::events(int64_t now_us, int64_t window_us) const {
  uint64_t total, bad;
  sums(now_us, window_us, total, bad);
  return total;
}

double burn_rates::burn(int64_t now_us, int64_t window_us) const {
  uint64_t total, bad;
  sums(now_us, window_us, total, bad);
  if (total < min_events_ || budget_ <= 0) return 0;
  return static_cast<double>(bad) / static_cast<double>(total) / budget_;
}

burn_rates::level burn_rates::judge(int64_t now_us) const {
  if (burn(now_us, 60 * kMinute) >= 14.4 && burn(now_us, 5 * kMinute) >= 14.4) return level::page;
  if (burn(now_us, 360 * kMinute) >= 6 && burn(now_us, 30 * kMinute) >= 6) return level::ticket;
  return level::none;
}

}  // namespace tessera::monitoring
