// Point-in-time reconstruction from the offline log against a brute force written from the
// rule's words: an event counts at t when its event time is in (t - W, t] and its known time
// is <= t.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "point_in_time.h"

namespace tessera {
namespace {

const char* kDefs = R"lua(
stream { name = "s", time_field = "time", fields = { time = "timestamp", x = "float", k = "text" } }
entity { name = "e", key = "k" }
view { name = "v", entity = "e", stream = "s", features = {
  count { "n_1h", window = "1h" }, mean { "mean_1h", field = "x", window = "1h" },
  max { "max_2h", field = "x", window = "2h" }, count { "big_2h", window = "2h", filter = "x > 50" } } }
label { name = "l", stream = "s", value = "x > 50", prediction_time = "time", features = { "v" } }
label { name = "daily", stream = "s", value = "x > 50", prediction_time = "time", features = { "v" }, snapshot = "1d" }
)lua";

constexpr int64_t kMin = 60'000'000;

struct fixture {
  std::shared_ptr<const definitions> defs;
  const view_def* v;
  const kind_plan* p;
  const stream_def* s;
  fixture() {
    auto d = definitions::load_string(kDefs, "t.lua");
    EXPECT_TRUE(d.ok()) << d.error_message();
    defs = *d;
    v = defs->find_view("v");
    p = defs->find_plan("s", "e");
    s = defs->find_stream("s");
  }
  log_entry entry(int64_t t, int64_t known, double x, uint64_t seq) const {
    log_entry e;
    e.r.time = t, e.r.seq = seq, e.r.idx = 0;
    e.r.fields.assign(s->fields.size(), std::monostate{});
    e.r.fields[s->field_index("time")] = timestamp_value{t};
    e.r.fields[s->field_index("x")] = x;
    e.r.fields[s->field_index("k")] = std::string("a");
    e.known = known;
    return e;
  }
};

double num(const feature_vector& fv, size_t i) {
  double d = -1;
  if (!is_null(fv.values[i].v)) as_number(fv.values[i].v, d);
  return d;
}

}  // namespace

TEST(PointInTime, MatchesBruteForceAndNeverUsesWhatWasNotKnownYet) {
  fixture f;
  std::mt19937_64 rng(11);
  std::vector<log_entry> log;
  for (uint64_t i = 0; i < 600; ++i) {
    int64_t t = 1'000'000'000'000'000LL + static_cast<int64_t>(rng() % (24 * 60)) * kMin;
    // A third of the events are adversarial: known long after they happened (late data).
    int64_t known = t + ((i % 3 == 0) ? static_cast<int64_t>(rng() % (180)) * kMin : 0);
    log.push_back(f.entry(t, known, static_cast<double>(rng() % 100), i + 1));
  }
  std::sort(log.begin(), log.end(), [](auto& a, auto& b) { return a.r < b.r; });
  std::deque<record> scratch;
  int leaked_somewhere = 0;
  for (int q = 0; q < 400; ++q) {
    const int64_t t = log[rng() % log.size()].r.time + static_cast<int64_t>(rng() % 3) -
                      1;  // on, before, after an event
    auto fv = vector_at(*f.v, *f.p, log, t, "a", scratch);
    int64_t n1 = 0, big2 = 0, all1 = 0;
    double sum1 = 0, max2 = -1;
    for (auto& e : log) {
      bool in1 = e.r.time > t - 60 * kMin && e.r.time <= t,
           in2 = e.r.time > t - 120 * kMin && e.r.time <= t;
      all1 += in1;
      if (e.known > t) continue;
      double x = std::get<double>(e.r.fields[f.s->field_index("x")]);
      if (in1) ++n1, sum1 += x;
      if (in2) max2 = std::max(max2, x), big2 += x > 50;
    }
    leaked_somewhere += all1 != n1;
    ASSERT_EQ(num(fv, 0), static_cast<double>(n1)) << "t=" << t;
    if (n1)
      EXPECT_NEAR(num(fv, 1), sum1 / static_cast<double>(n1), 1e-9);
    else
      EXPECT_TRUE(is_null(fv.values[1].v));
    EXPECT_EQ(num(fv, 2), max2);
    EXPECT_EQ(num(fv, 3), static_cast<double>(big2));
  }
  EXPECT_GT(leaked_somewhere, 50);  // the adversarial events really were in the windows
}

TEST(PointInTime, BoundariesAreInclusiveAtTAndExclusiveAtTMinusWindow) {
  fixture f;
  const int64_t t = 1'000'000'000'000'000LL;
  std::vector<log_entry> log{
      f.entry(t - 60 * kMin, t - 60 * kMin, 1, 1),  // exactly W before: outside (t - W, t]
      f.entry(t - 30 * kMin, t, 2, 2),              // known exactly at t: counts
      f.entry(t - 20 * kMin, t + 1, 4, 3),          // known 1 µs after t: never
      f.entry(t, t, 8, 4),                          // at t, known at t: counts
      f.entry(t + 1, t + 1, 16, 5)};                // after t: never
  std::deque<record> scratch;
  auto fv = vector_at(*f.v, *f.p, log, t, "a", scratch);
  EXPECT_EQ(num(fv, 0), 2);
  EXPECT_EQ(num(fv, 1), 5);
  EXPECT_EQ(num(fv, 2), 8);  // max over 2h includes the one exactly 1h before
  EXPECT_EQ(fv.event_time, t);
  // One microsecond later the late event is known and counts.
  fv = vector_at(*f.v, *f.p, log, t + 1, "a", scratch);
  EXPECT_EQ(num(fv, 0), 4);
}

TEST(PointInTime, SnapshotLabelsReadFeaturesAtThePreviousMidnight) {
  fixture f;
  const int64_t day = 86400LL * 1000000;
  const int64_t t = 11315 * day + 13 * 3600LL * 1000000;  // 2000-12-24T13:00Z
  EXPECT_EQ(feature_time(*f.defs->find_label("l"), t), t);
  EXPECT_EQ(feature_time(*f.defs->find_label("daily"), t), 11315 * day);
  EXPECT_EQ(feature_time(*f.defs->find_label("daily"), 11315 * day), 11315 * day);
}

namespace {

bool same_bits(const value& a, const value& b) {
  if (a.index() != b.index()) return false;
  if (auto* x = std::get_if<double>(&a))
    return std::memcmp(x, &std::get<double>(b), sizeof(double)) == 0;
  return a == b;
}

}  // namespace

// The window index against the window walk (itself checked against a brute force above), bit
// for bit: integer values (prefix sums), fractional ones (summed in order), NaN, nulls, -0.0
// beside 0.0 (extremes keep the first of equals), events at equal times, late-known events.
TEST(PointInTime, WindowIndexGivesTheBitsOfTheWindowWalk) {
  const char* defs_src = R"lua(
stream { name = "s", time_field = "time", fields = { time = "timestamp", x = "float", k = "text" } }
entity { name = "e", key = "k" }
view { name = "w", entity = "e", stream = "s", ttl = "20m", features = {
  count { "n_1h", window = "1h" }, count { "nx_1h", window = "1h", filter = "x >= -1000" },
  sum { "sum_1h", field = "x", window = "1h" }, mean { "mean_3h", field = "x", window = "3h" },
  min { "min_2h", field = "x", window = "2h" }, max { "max_2h", field = "x", window = "2h" },
  max { "max_big_5h", field = "x", window = "5h", filter = "x > 20" }, max { "max_nonpos_2h", field = "x", window = "2h", filter = "x <= 0" },
  min { "min_nonneg_1h", field = "x", window = "1h", filter = "x >= 0" },
  time_since_last { "since_big", window = "5h", filter = "x > 20" } } }
)lua";
  auto d = definitions::load_string(defs_src, "w.lua");
  ASSERT_TRUE(d.ok()) << d.error_message();
  const view_def* v = (*d)->find_view("w");
  const kind_plan* p = (*d)->find_plan("s", "e");
  const stream_def* s = (*d)->find_stream("s");
  // Integers, fractions, and a clean log (every event known at its time, x always present:
  // the index keeps no known times and its unfiltered tracks no positions).
  for (int mode = 0; mode < 3; ++mode) {
    const bool fractional = mode == 1, clean = mode == 2;
    std::mt19937_64 rng(7 + mode);
    std::vector<log_entry> log;
    for (uint64_t i = 0; i < 3000; ++i) {
      log_entry e;
      e.r.time = 1'000'000'000'000'000LL +
                 static_cast<int64_t>(rng() % (48 * 60)) * kMin / 4;  // many equal times
      e.r.seq = i + 1;
      e.known = e.r.time + ((i % 300 == 0 && !clean) ? static_cast<int64_t>(rng() % 90) * kMin : 0);
      if (i % 7 == 0) e.known -= kMin;  // known before its event time: as good as known at it
      e.r.fields.assign(s->fields.size(), std::monostate{});
      e.r.fields[s->field_index("time")] = timestamp_value{e.r.time};
      double x = static_cast<double>(static_cast<int>(rng() % 61) - 30);
      if (fractional) x = x / 7.0 + 1e-3 * static_cast<double>(rng() % 1000);
      switch (clean ? 19 : rng() % 20) {
        case 0:
          e.r.fields[s->field_index("x")] = std::nan("");
          break;
        case 1:
          break;  // null
        case 2:
          e.r.fields[s->field_index("x")] = -0.0;
          break;
        case 3:
          e.r.fields[s->field_index("x")] = 0.0;
          break;
        default:
          e.r.fields[s->field_index("x")] = x;
      }
      e.r.fields[s->field_index("k")] = std::string("a");
      log.push_back(std::move(e));
    }
    std::sort(log.begin(), log.end(), [](auto& a, auto& b) { return a.r < b.r; });
    projected_log pl;
    pl.assign(*p, log);
    window_index index(*v, pl);
    ASSERT_TRUE(index.supported());
    std::deque<record> scratch;
    int fast = 0;
    for (int q = 0; q < 2000; ++q) {
      const int64_t t = log[rng() % log.size()].r.time + static_cast<int64_t>(rng() % 3) - 1;
      feature_vector probe;
      fast += index.at(t, "a", probe);
      feature_vector want = vector_at(*v, pl, t, "a", scratch);
      feature_vector got = vector_at(*v, pl, index, t, "a", scratch);
      ASSERT_EQ(got.values.size(), want.values.size());
      EXPECT_EQ(got.event_time, want.event_time) << "t=" << t;
      EXPECT_EQ(got.status, want.status) << "t=" << t;
      for (size_t i = 0; i < want.values.size(); ++i) {
        EXPECT_TRUE(same_bits(got.values[i].v, want.values[i].v))
            << want.values[i].name << " at t=" << t << " fractional=" << fractional;
        EXPECT_EQ(got.values[i].event_time, want.values[i].event_time) << want.values[i].name;
      }
    }
    if (clean) {
      EXPECT_EQ(fast, 2000);  // nothing known late: the index serves every read
    } else {
      EXPECT_GT(fast, 200);   // the index served many reads itself...
      EXPECT_LT(fast, 1990);  // ...and left those with late-known events to the filtering walk
    }
    // Reads through a cursor (searches start where the last read's windows were): times mostly
    // increasing in small steps, sometimes jumping back or far ahead, from before the first
    // record to past the last. Same bits as the walk.
    window_index::cursor cur;
    int64_t t = log.front().r.time - 6 * 60 * kMin;
    const int64_t last = log.back().r.time + 6 * 60 * kMin;
    int cursor_fast = 0;
    for (int q = 0; q < 3000; ++q) {
      const uint64_t step = rng() % 100;
      if (step < 3)
        t -= static_cast<int64_t>(rng() % (8 * 60)) * kMin;  // back
      else if (step < 5)
        t += static_cast<int64_t>(rng() % (8 * 60)) * kMin;  // far ahead
      else
        t += static_cast<int64_t>(rng() % 5) * kMin / 2;
      if (t > last) t = log.front().r.time - 6 * 60 * kMin;
      std::vector<value> vals(v->features.size());
      std::vector<int64_t> times(v->features.size());
      if (!index.cells(t, vals.data(), times.data(), &cur))
        continue;  // late-known: the caller walks
      ++cursor_fast;
      feature_vector want = vector_at(*v, pl, t, "a", scratch);
      ASSERT_EQ(vals.size(), want.values.size());
      for (size_t i = 0; i < want.values.size(); ++i) {
        EXPECT_TRUE(same_bits(vals[i], want.values[i].v))
            << want.values[i].name << " at t=" << t << " (cursor)";
        EXPECT_EQ(times[i], want.values[i].event_time) << want.values[i].name << " (cursor)";
      }
    }
    EXPECT_GT(cursor_fast, 1000);
  }
}

}  // namespace tessera
