// Data expectations (runtime/expectations.h): each check against hand-made events, the ledger's
// counts per slice against a count made here, null shares per window, and declarations that do
// not parse refused with the line named.
#include "expectations.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "definitions.h"

namespace tessera {
namespace {

const char* kDefs = R"lua(
stream { name = "s", time_field = "t",
  fields = { t = "timestamp", x = "float", n = "int", code = "text", region = "text" },
  expect = {
    x = { not_null = true, min = 0, max = 100, on_fail = "reject" },
    n = { values = { 1, 2, 3 }, max_null_share = 0.2 },
    code = { pattern = "^[A-Z]{3}$", on_fail = "dead_letter" },
    t = { max_lag = "1h" },
  },
  expect_slice = "region", expect_window = "1h",
}
entity { name = "r", key = "region" }
view { name = "v", entity = "r", stream = "s", ttl = "1h", features = { count { "c", window = "1h" } } }
)lua";

constexpr int64_t kH = 3600LL * 1000000;

std::vector<value> event(const stream_def& s, int64_t t, value x, value n, value code,
                         std::string region) {
  std::vector<value> f(s.fields.size());
  f[static_cast<size_t>(s.field_index("t"))] = timestamp_value{t};
  f[static_cast<size_t>(s.field_index("x"))] = std::move(x);
  f[static_cast<size_t>(s.field_index("n"))] = std::move(n);
  f[static_cast<size_t>(s.field_index("code"))] = std::move(code);
  f[static_cast<size_t>(s.field_index("region"))] = std::move(region);
  return f;
}

TEST(Expectations, EachCheckFailsOnlyOnWhatItForbids) {
  auto d = definitions::load_string(kDefs);
  ASSERT_TRUE(d) << d.error_message();
  const stream_def& s = *(*d)->find_stream("s");
  ASSERT_TRUE(s.expect);
  const auto& all = s.expect->all();
  ASSERT_EQ(all.size(), 4u);  // sorted by field: code, n, t, x
  const expectation &code = all[0], &n = all[1], &t = all[2], &x = all[3];
  EXPECT_EQ(x.on_fail, expectation::action::reject);
  EXPECT_EQ(code.on_fail, expectation::action::dead_letter);
  EXPECT_EQ(n.on_fail, expectation::action::count);
  const int64_t t0 = 100 * kH;
  auto good = event(s, t0, 5.0, int64_t{2}, std::string("ABC"), "eu");
  for (auto& e : all) EXPECT_EQ(expectation_set::failure(e, good, t0, t0 + kH / 2), "") << e.field;
  auto why = [&](const expectation& e, std::vector<value> f, int64_t clock = 0) {
    return expectation_set::failure(e, f, t0, clock);
  };
  EXPECT_NE(why(x, event(s, t0, value{}, int64_t{2}, std::string("ABC"), "eu")), "");
  EXPECT_NE(why(x, event(s, t0, -0.5, int64_t{2}, std::string("ABC"), "eu")).find("below min"),
            std::string::npos);
  EXPECT_NE(why(x, event(s, t0, 100.5, int64_t{2}, std::string("ABC"), "eu")).find("above max"),
            std::string::npos);
  EXPECT_EQ(why(x, event(s, t0, 100.0, int64_t{2}, std::string("ABC"), "eu")), "");  // inclusive
  EXPECT_NE(why(n, event(s, t0, 5.0, int64_t{4}, std::string("ABC"), "eu")), "");
  EXPECT_EQ(why(n, event(s, t0, 5.0, value{}, std::string("ABC"), "eu")), "");  // null: share only
  EXPECT_NE(why(code, event(s, t0, 5.0, int64_t{1}, std::string("ABCD"), "eu")), "");
  EXPECT_NE(why(code, event(s, t0, 5.0, int64_t{1}, std::string("abc"), "eu")), "");
  EXPECT_NE(why(t, good, t0 + kH + 1), "");
  EXPECT_EQ(why(t, good, t0 + kH), "");
}

// 2,000 random events over 3 hours and 3 regions: the ledger's checked and failed per slice
// equal a count made here; the first hard failure decides the verdict; null shares are judged
// per window.
TEST(Expectations, TheLedgerCountsPerSliceWhatABruteForceCounts) {
  auto d = definitions::load_string(kDefs);
  ASSERT_TRUE(d) << d.error_message();
  const stream_def& s = *(*d)->find_stream("s");
  validation_ledger ledger;
  std::mt19937_64 rng(3);
  const std::vector<std::string> regions = {"eu", "us", "asia"};
  std::map<std::string, uint64_t> want_n_failed, want_checked;
  std::map<std::pair<std::string, int64_t>, std::pair<int, int>> nulls;  // (region, hour)
  uint64_t rejects = 0, dead = 0;
  const int64_t t0 = 100 * kH;
  for (int i = 0; i < 2000; ++i) {
    const int64_t t = t0 + static_cast<int64_t>(i) * 3 * kH / 2000;
    const std::string region = regions[rng() % 3];
    // asia sends many null n; everyone some bad x and codes.
    const bool null_n = region == "asia" ? rng() % 3 == 0 : rng() % 20 == 0;
    value n = null_n ? value{} : value{static_cast<int64_t>(rng() % 4 + 1)};  // 4 is not allowed
    value x = rng() % 50 == 0 ? value{-1.0} : value{static_cast<double>(rng() % 100)};
    value code = rng() % 40 == 0 ? value{std::string("bad")} : value{std::string("XYZ")};
    ++want_checked[region];
    if (!null_n && std::get<int64_t>(n) == 4) ++want_n_failed[region];
    auto& w = nulls[{region, t / kH}];
    ++w.first;
    w.second += null_n;
    const bool bad_x = std::holds_alternative<double>(x) && std::get<double>(x) < 0;
    const bool bad_code = std::get<std::string>(code) == "bad";
    auto v = ledger.record(s, event(s, t, x, n, code, region), t, 0);
    // Fields in order: code (dead_letter) before x (reject).
    if (bad_code) {
      EXPECT_EQ(v.action, expectation::action::dead_letter);
      ++dead;
    } else if (bad_x) {
      EXPECT_EQ(v.action, expectation::action::reject);
      EXPECT_NE(v.reason.find("x -1 is below min 0"), std::string::npos) << v.reason;
      ++rejects;
    } else {
      EXPECT_EQ(v.action, expectation::action::count);
    }
  }
  EXPECT_GT(rejects, 10u);
  EXPECT_GT(dead, 10u);
  const auto r = ledger.report(s);
  ASSERT_EQ(r["expectations"].size(), 4u);
  const auto& n = r["expectations"][1];
  ASSERT_EQ(n["field"], "n");
  uint64_t total = 0;
  for (auto& [region, c] : want_checked) total += c;
  EXPECT_EQ(n["checked"].get<uint64_t>(), total);
  uint64_t failed = 0;
  for (auto& sl : n["slices"]) {
    const std::string region = sl["slice"];
    EXPECT_EQ(sl["checked"].get<uint64_t>(), want_checked[region]) << region;
    EXPECT_EQ(sl["failed"].get<uint64_t>(), want_n_failed[region]) << region;
    EXPECT_LE(sl["last"].size(), validation_ledger::kLastKept);
    failed += sl["failed"].get<uint64_t>();
  }
  EXPECT_EQ(n["failed"].get<uint64_t>(), failed);
  // Null share over 0.2 in complete windows (hours 100 and 101; hour 102 is still open), with
  // at least 20 events.
  uint64_t want_windows = 0;
  for (auto& [k, c] : nulls)
    if (k.second < 102 && c.first >= 20 && static_cast<double>(c.second) / c.first > 0.2)
      ++want_windows;
  EXPECT_EQ(n["null_windows_failed"].get<uint64_t>(), want_windows);
  EXPECT_EQ(want_windows, 2u);  // asia's two complete hours, nobody else's
  for (auto& sl : n["slices"])
    EXPECT_EQ(sl["null_windows_failed"].get<uint64_t>(), sl["slice"] == "asia" ? 2u : 0u);
}

TEST(Expectations, DeclarationsThatDoNotParseAreRefusedWithTheLineNamed) {
  const std::string head =
      "stream { name = \"s\", time_field = \"t\",\n"
      "  fields = { t = \"timestamp\", x = \"float\", c = \"text\" },\n  expect = ";
  const std::string tail =
      ",\n}\nentity { name = \"e\", key = \"c\" }\n"
      "view { name = \"v\", entity = \"e\", stream = \"s\", ttl = \"1h\", features = { count { "
      "\"n\", window = \"1h\" } } }\n";
  for (auto [expect, want] : std::vector<std::pair<std::string, std::string>>{
           {"{ y = { min = 1 } }", "no field y"},
           {"{ x = { min = \"a\" } }", "must be a number"},
           {"{ c = { min = 1 } }", "for numbers"},
           {"{ x = { min = 5, max = 1 } }", "above max"},
           {"{ c = { pattern = \"([\" } }", "not a regular expression"},
           {"{ x = { pattern = \"a\" } }", "for text"},
           {"{ x = { max_lag = \"1h\" } }", "for the time field"},
           {"{ x = { on_fail = \"drop\" } }", "on_fail"},
           {"{ x = { bogus = 1 } }", "unknown key"},
           {"{ x = { } }", "no check"},
           {"{ x = { max_null_share = 2 } }", "max_null_share"},
           {"3", "must be a table"},
       }) {
    auto d = definitions::load_string(head + expect + tail, "defs.lua");
    ASSERT_FALSE(d) << expect;
    EXPECT_NE(d.error_message().find(want), std::string::npos) << d.error_message();
    EXPECT_NE(d.error_message().find("defs.lua:1"), std::string::npos) << d.error_message();
  }
}

}  // namespace
}  // namespace tessera
