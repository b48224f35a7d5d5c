// Every aggregation and window edge against a brute-force reference written independently here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "aggregate.h"
#include "definitions.h"

namespace tessera {
namespace {

constexpr int64_t H = 3600LL * 1000000;

const char* kDefs = R"lua(
stream { name = "s", time_field = "t", fields = { t = "timestamp", x = "float", tag = "text" } }
entity { name = "e", key = "tag" }
view { name = "v", entity = "e", stream = "s", ttl = "2h", features = {
  count { "n_1h", window = "1h" },
  sum { "sum_3h", field = "x", window = "3h" },
  mean { "mean_1h", field = "x", window = "1h" },
  min { "min_1h", field = "x", window = "1h" },
  max { "max_1h", field = "x", window = "1h" },
  stddev { "sd_3h", field = "x", window = "3h" },
  last { "last_1h", field = "x", window = "1h" },
  last_n_distinct { "tags_3h", field = "tag", window = "3h", n = 3 },
  time_since_last { "since_3h", window = "3h" },
  count { "big_3h", window = "3h", filter = "x > 5" },
  mean { "big_mean_3h", field = "x", window = "3h", filter = "x > 5 and tag != 'c'" },
} }
)lua";

struct ev {
  int64_t t;
  std::optional<double> x;
  std::string tag;
};

// Brute force: scan all events, no ordering assumptions beyond what is stated.
struct reference {
  std::vector<ev> evs;  // in arrival order; ties in time keep arrival order
  std::vector<const ev*> in(int64_t t, int64_t w) const {
    std::vector<const ev*> out;
    for (auto& e : evs)
      if (e.t > t - w && e.t <= t) out.push_back(&e);
    std::stable_sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->t < b->t; });
    return out;
  }
};

const feature_value& get(const feature_vector& v, const std::string& n) {
  for (auto& f : v.values)
    if (f.name == n) return f;
  throw std::runtime_error("no feature " + n);
}

void expect_num(const feature_value& f, std::optional<double> want, const std::string& ctx) {
  if (!want) {
    EXPECT_TRUE(is_null(f.v)) << ctx << " " << f.name << " should be null";
    return;
  }
  double got;
  ASSERT_TRUE(as_number(f.v, got)) << ctx << " " << f.name << " is null, want " << *want;
  EXPECT_NEAR(got, *want, 1e-9 * std::max(1.0, std::fabs(*want))) << ctx << " " << f.name;
}

class AggregateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = definitions::load_string(kDefs);
    ASSERT_TRUE(d.ok()) << d.error_message();
    defs = *d;
    view = defs->find_view("v");
    plan = defs->find_plan("s", "e");
    slot_x = std::find(plan->stored_field_names.begin(), plan->stored_field_names.end(), "x") -
             plan->stored_field_names.begin();
    slot_tag = std::find(plan->stored_field_names.begin(), plan->stored_field_names.end(), "tag") -
               plan->stored_field_names.begin();
  }
  void add(int64_t t, std::optional<double> x, std::string tag) {
    ref.evs.push_back({t, x, tag});
    record r;
    r.time = t;
    r.seq = ++seq;
    r.fields.resize(plan->stored_field_names.size());
    if (x) r.fields[slot_x] = *x;
    r.fields[slot_tag] = tag;
    ASSERT_TRUE(insert_record(records, r));
  }
  void check(int64_t t) {
    auto v = compute_vector(*view, records, t, "k");
    std::string ctx = "t=" + std::to_string(t);
    auto nums = [&](int64_t w, std::function<bool(const ev&)> keep) {
      std::vector<double> xs;
      for (auto* e : ref.in(t, w))
        if (e->x && keep(*e)) xs.push_back(*e->x);
      return xs;
    };
    auto all = [](const ev&) { return true; };
    EXPECT_EQ(std::get<int64_t>(get(v, "n_1h").v), static_cast<int64_t>(ref.in(t, H).size()))
        << ctx;
    auto x3 = nums(3 * H, all), x1 = nums(H, all);
    double s3 = 0;
    for (double x : x3) s3 += x;
    expect_num(get(v, "sum_3h"), s3, ctx);
    std::optional<double> mean1, mn1, mx1, sd3;
    if (!x1.empty()) {
      double s = 0;
      for (double x : x1) s += x;
      mean1 = s / x1.size();
      mn1 = *std::min_element(x1.begin(), x1.end());
      mx1 = *std::max_element(x1.begin(), x1.end());
    }
    if (!x3.empty()) {
      double m = s3 / x3.size(), ss = 0;
      for (double x : x3) ss += (x - m) * (x - m);
      sd3 = std::sqrt(ss / x3.size());
    }
    expect_num(get(v, "mean_1h"), mean1, ctx);
    expect_num(get(v, "min_1h"), mn1, ctx);
    expect_num(get(v, "max_1h"), mx1, ctx);
    expect_num(get(v, "sd_3h"), sd3, ctx);
    std::optional<double> last1;
    for (auto* e : ref.in(t, H))
      if (e->x) last1 = *e->x;
    expect_num(get(v, "last_1h"), last1, ctx);
    std::vector<std::string> tags;
    auto w3 = ref.in(t, 3 * H);
    for (auto it = w3.rbegin(); it != w3.rend() && tags.size() < 3; ++it)
      if (std::find(tags.begin(), tags.end(), (*it)->tag) == tags.end()) tags.push_back((*it)->tag);
    if (w3.empty())
      EXPECT_TRUE(is_null(get(v, "tags_3h").v)) << ctx;
    else
      EXPECT_EQ(std::get<std::vector<std::string>>(get(v, "tags_3h").v), tags) << ctx;
    std::optional<double> since;
    if (!w3.empty()) since = static_cast<double>(t - w3.back()->t) / 1e6;
    expect_num(get(v, "since_3h"), since, ctx);
    EXPECT_EQ(std::get<int64_t>(get(v, "big_3h").v),
              static_cast<int64_t>(nums(3 * H, [](const ev& e) { return *e.x > 5; }).size()))
        << ctx;
    auto big = nums(3 * H, [](const ev& e) { return *e.x > 5 && e.tag != "c"; });
    std::optional<double> bm;
    if (!big.empty()) {
      double s = 0;
      for (double x : big) s += x;
      bm = s / big.size();
    }
    expect_num(get(v, "big_mean_3h"), bm, ctx);
    // Status and event time: latest event within the longest window.
    int64_t latest = w3.empty() ? 0 : w3.back()->t;
    EXPECT_EQ(v.event_time, latest) << ctx;
    vector_status want = latest == 0
                             ? vector_status::missing
                             : (t - latest > 2 * H ? vector_status::stale : vector_status::fresh);
    EXPECT_EQ(v.status, want) << ctx;
  }

  std::shared_ptr<const definitions> defs;
  const view_def* view = nullptr;
  const kind_plan* plan = nullptr;
  size_t slot_x = 0, slot_tag = 0;
  std::deque<record> records;
  reference ref;
  uint64_t seq = 0;
};

TEST_F(AggregateTest, EmptyWindowsAreMissingWithZeroCounts) {
  auto v = compute_vector(*view, records, 10 * H, "k");
  EXPECT_EQ(v.status, vector_status::missing);
  EXPECT_EQ(std::get<int64_t>(get(v, "n_1h").v), 0);
  EXPECT_TRUE(is_null(get(v, "mean_1h").v));
}

TEST_F(AggregateTest, WindowIsOpenAtStartAndClosedAtEnd) {
  const int64_t t0 = 100 * H;
  add(t0, 1.0, "a");
  // (t - W, t]: the event is in the 1h window at t0 and t0 + 1h - 1us, not at t0 + 1h.
  EXPECT_EQ(std::get<int64_t>(get(compute_vector(*view, records, t0, "k"), "n_1h").v), 1);
  EXPECT_EQ(std::get<int64_t>(get(compute_vector(*view, records, t0 + H - 1, "k"), "n_1h").v), 1);
  EXPECT_EQ(std::get<int64_t>(get(compute_vector(*view, records, t0 + H, "k"), "n_1h").v), 0);
  EXPECT_EQ(std::get<int64_t>(get(compute_vector(*view, records, t0 - 1, "k"), "n_1h").v), 0);
  check(t0 - 1), check(t0), check(t0 + H - 1), check(t0 + H), check(t0 + 3 * H);
}

TEST_F(AggregateTest, StaleAfterTtl) {
  add(100 * H, 1.0, "a");
  EXPECT_EQ(compute_vector(*view, records, 102 * H, "k").status, vector_status::fresh);
  EXPECT_EQ(compute_vector(*view, records, 102 * H + 1, "k").status, vector_status::stale);
  EXPECT_EQ(compute_vector(*view, records, 103 * H, "k").status, vector_status::missing);
}

TEST_F(AggregateTest, RandomEventsMatchBruteForce) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> minute(0, 12 * 60);
  std::uniform_real_distribution<double> x(-10, 20);
  const char* tags[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 400; ++i) {
    int64_t t = 50 * H + minute(rng) * 60 * 1000000;  // many exact ties and boundary hits
    std::optional<double> val;
    if (rng() % 10) val = std::round(x(rng) * 4) / 4;
    add(t, val, tags[rng() % 4]);
  }
  for (int64_t m = -60; m <= 14 * 60; m += 7) check(50 * H + m * 60 * 1000000);
  for (auto& e : ref.evs) check(e.t), check(e.t + H), check(e.t + 3 * H - 1);
}

// A vector stays valid over [as_of, valid_until): re-read anywhere in there, the same records
// give the same values, event times and status. This is what lets the vector cache answer reads
// at a clock that moves on every read (a live stream's now). Checked against a fresh
// computation at random times inside and at the edge of each interval.
TEST_F(AggregateTest, AVectorIsTheSameAnywhereInItsValidity) {
  auto d = definitions::load_string(R"lua(
stream { name = "s", time_field = "t", fields = { t = "timestamp", x = "float", tag = "text" } }
entity { name = "e", key = "tag" }
view { name = "w", entity = "e", stream = "s", ttl = "2h", features = {
  count { "n_1h", window = "1h" }, sum { "sum_3h", field = "x", window = "3h" },
  max { "max_1h", field = "x", window = "1h" }, last { "last_1h", field = "x", window = "1h" },
  count { "big_3h", window = "3h", filter = "x > 5" },
} }
)lua");
  ASSERT_TRUE(d.ok()) << d.error_message();
  const view_def* w = (*d)->find_view("w");
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> minute(0, 24 * 60);
  for (int i = 0; i < 120; ++i)
    add(50 * H + minute(rng) * 60 * 1000000, static_cast<double>(rng() % 10), "a");
  auto same = [](const feature_vector& a, const feature_vector& b) {
    if (a.status != b.status || a.event_time != b.event_time || a.values.size() != b.values.size())
      return false;
    for (size_t i = 0; i < a.values.size(); ++i)
      if (to_text(a.values[i].v) != to_text(b.values[i].v) ||
          a.values[i].event_time != b.values[i].event_time)
        return false;
    return true;
  };
  size_t intervals = 0, long_ones = 0, reads = 0;
  for (int64_t t0 = 48 * H; t0 < 80 * H; t0 += 7 * 60 * 1000000 + 13) {
    auto v0 = compute_vector(*w, records, t0, "k");
    ASSERT_GT(v0.valid_until, t0);
    ++intervals;
    const int64_t end = std::min(v0.valid_until, t0 + 30 * H);
    long_ones += end - t0 > 60 * 1000000;
    std::uniform_int_distribution<int64_t> inside(t0, end - 1);
    for (int k = 0; k < 20; ++k) {
      int64_t t = k == 0 ? end - 1 : inside(rng);
      EXPECT_TRUE(same(v0, compute_vector(*w, records, t, "k")))
          << "computed at " << t0 << ", valid until " << v0.valid_until << ", differs at " << t;
      ++reads;
    }
  }
  std::fprintf(stderr, "%zu intervals (%zu longer than a minute), %zu reads inside them\n",
               intervals, long_ones, reads);
  EXPECT_GT(long_ones, intervals / 4);  // the cache has something to hit
  // time_since_last changes with every read: such a vector is valid at its own time only.
  add(100 * H, 1.0, "a");
  auto v = compute_vector(*view, records, 100 * H + 5, "k");
  EXPECT_EQ(v.valid_until, 100 * H + 6);
}

TEST(InsertRecord, KeepsOrderAndRejectsDuplicates) {
  std::deque<record> rs;
  EXPECT_TRUE(insert_record(rs, record{5, 1, 0, {}}));
  EXPECT_TRUE(insert_record(rs, record{3, 2, 0, {}}));
  EXPECT_TRUE(insert_record(rs, record{5, 1, 1, {}}));
  EXPECT_FALSE(insert_record(rs, record{3, 2, 0, {}}));
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].time, 3);
  EXPECT_EQ(rs[2].idx, 1u);
}

}  // namespace
}  // namespace tessera
