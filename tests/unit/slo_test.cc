// Burn-rate SLOs (actors/monitoring/slo.h) on simulated traffic, 100 requests every 10 s: errors
// within budget never alert; a full outage pages within minutes and stops paging within 5 minutes
// of recovery; a slow leak opens a ticket, never a page; counters that restart from zero or
// disappear are not read as negative traffic.
#include "actors/monitoring/slo.h"

#include <gtest/gtest.h>

#include <random>

namespace tessera::monitoring {
namespace {

constexpr int64_t kS = 1000000, kMin = 60 * kS;

struct sim {
  burn_rates b{0.01};  // 1% of requests may fail
  std::mt19937_64 rng{7};
  int64_t t = 0;
  // 10-second ticks of 100 requests at `bad_share` until `until`; the first tick at which the
  // level is `want` (or -1).
  int64_t run(int64_t until, double bad_share, burn_rates::level want) {
    int64_t first = -1;
    std::binomial_distribution<uint64_t> bad(100, bad_share);
    for (; t < until; t += 10 * kS) {
      b.add(t, 100, bad(rng));
      if (first < 0 && b.judge(t) == want) first = t;
    }
    return first;
  }
};

TEST(Slo, ErrorsWithinBudgetNeverAlert) {
  sim s;
  EXPECT_EQ(s.run(24 * 60 * kMin, 0.005, burn_rates::level::ticket), -1);
  EXPECT_EQ(s.b.judge(s.t), burn_rates::level::none);
  EXPECT_NEAR(s.b.burn(s.t, 60 * kMin), 0.5, 0.2);
}

TEST(Slo, AnOutagePagesWithinMinutesAndStopsPagingSoonAfterRecovery) {
  sim s;
  s.run(8 * 60 * kMin, 0.002, burn_rates::level::page);
  const int64_t start = s.t;
  const int64_t paged = s.run(start + 30 * kMin, 1.0, burn_rates::level::page);
  ASSERT_GE(paged, 0);
  EXPECT_LE(paged - start, 10 * kMin);  // 1h burn >= 14.4 needs 8.6 min of 100% errors
  const int64_t back = s.t;
  const int64_t quiet = s.run(back + 90 * kMin, 0.002, burn_rates::level::none);
  // Paging stops once the 5-minute window is clean (the hour still burns: a ticket may stay).
  ASSERT_GE(quiet, 0);
  EXPECT_LE(quiet - back, 60 * kMin);
  sim again;
  again.run(8 * 60 * kMin, 0.002, burn_rates::level::page);
  again.run(again.t + 30 * kMin, 1.0, burn_rates::level::page);
  const int64_t recovered = again.t;
  bool paging_after_5min = false;
  for (; again.t < recovered + 20 * kMin; again.t += 10 * kS) {
    again.b.add(again.t, 100, 0);
    if (again.t >= recovered + 5 * kMin + 10 * kS)
      paging_after_5min |= again.b.judge(again.t) == burn_rates::level::page;
  }
  EXPECT_FALSE(paging_after_5min);
}

TEST(Slo, ASlowLeakOpensATicketNotAPage) {
  sim s;
  s.run(2 * 60 * kMin, 0.002, burn_rates::level::page);
  const int64_t start = s.t;
  sim copy = s;
  const int64_t ticket = s.run(start + 8 * 60 * kMin, 0.08, burn_rates::level::ticket);  // burn 8
  ASSERT_GE(ticket, 0);
  EXPECT_LE(ticket - start, 6 * 60 * kMin);
  EXPECT_EQ(copy.run(start + 8 * 60 * kMin, 0.08, burn_rates::level::page), -1);
}

TEST(Slo, CountersThatRestartOrDisappearAreNotNegativeTraffic) {
  burn_rates b(0.01, 1);
  b.observe(0, {{"v1", {1000, 10}}, {"v2", {500, 0}}});
  b.observe(10 * kS, {{"v1", {1100, 12}}, {"v2", {600, 0}}});
  EXPECT_EQ(b.events(10 * kS, 5 * kS), 200u);
  b.observe(20 * kS, {{"v1", {50, 1}}});  // v1 reloaded (from zero), v2 gone
  EXPECT_EQ(b.events(20 * kS, 5 * kS), 50u);
  EXPECT_NEAR(b.burn(20 * kS, 5 * kS), (1.0 / 50) / 0.01, 1e-9);
}

}  // namespace
}  // namespace tessera::monitoring
