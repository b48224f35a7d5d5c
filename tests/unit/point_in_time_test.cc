// Point-in-time reconstruction from the offline log against a brute force written from the
// rule's words: an event counts at t when its event time is in (t - W, t] and its known time
// is <= t.
#include <gtest/gtest.h>

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
    const int64_t t = log[rng() % log.size()].r.time + static_cast<int64_t>(rng() % 3) - 1;  // on, before, after an event
    auto fv = vector_at(*f.v, *f.p, log, t, "a", scratch);
    int64_t n1 = 0, big2 = 0, all1 = 0;
    double sum1 = 0, max2 = -1;
    for (auto& e : log) {
      bool in1 = e.r.time > t - 60 * kMin && e.r.time <= t, in2 = e.r.time > t - 120 * kMin && e.r.time <= t;
      all1 += in1;
      if (e.known > t) continue;
      double x = std::get<double>(e.r.fields[f.s->field_index("x")]);
      if (in1) ++n1, sum1 += x;
      if (in2) max2 = std::max(max2, x), big2 += x > 50;
    }
    leaked_somewhere += all1 != n1;
    ASSERT_EQ(num(fv, 0), static_cast<double>(n1)) << "t=" << t;
    if (n1) EXPECT_NEAR(num(fv, 1), sum1 / static_cast<double>(n1), 1e-9);
    else EXPECT_TRUE(is_null(fv.values[1].v));
    EXPECT_EQ(num(fv, 2), max2);
    EXPECT_EQ(num(fv, 3), static_cast<double>(big2));
  }
  EXPECT_GT(leaked_somewhere, 50);  // the adversarial events really were in the windows
}

TEST(PointInTime, BoundariesAreInclusiveAtTAndExclusiveAtTMinusWindow) {
  fixture f;
  const int64_t t = 1'000'000'000'000'000LL;
  std::vector<log_entry> log{f.entry(t - 60 * kMin, t - 60 * kMin, 1, 1),  // exactly W before: outside (t - W, t]
                             f.entry(t - 30 * kMin, t, 2, 2),             // known exactly at t: counts
                             f.entry(t - 20 * kMin, t + 1, 4, 3),         // known 1 µs after t: never
                             f.entry(t, t, 8, 4),                         // at t, known at t: counts
                             f.entry(t + 1, t + 1, 16, 5)};               // after t: never
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

}  // namespace tessera
