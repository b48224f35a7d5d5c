// cli/predict_text.h: the arguments and output of `tessera predict` and `tessera skew`.
#include <gtest/gtest.h>

#include <cmath>

#include "cli/predict_text.h"

namespace tessera::cli {
namespace {

using pairs = assignments;

TEST(PredictArguments, FieldsSplitAtTheFirstEqualsSignInTheOrderGiven) {
  auto a = parse_assignments({"origin=LAX", "date=2001-06-01T08:00:00Z", "note=a=b", "empty="});
  ASSERT_TRUE(a) << a.error_message();
  EXPECT_EQ(
      *a,
      (pairs{{"origin", "LAX"}, {"date", "2001-06-01T08:00:00Z"}, {"note", "a=b"}, {"empty", ""}}));
  EXPECT_TRUE(parse_assignments({})->empty());
}

TEST(PredictArguments, AnArgumentWithoutAFieldNameIsInvalidAndNamed) {
  auto no_eq = parse_assignments({"origin=LAX", "SFO"});
  ASSERT_FALSE(no_eq);
  EXPECT_EQ(no_eq.error_code(), errc::invalid);
  EXPECT_NE(no_eq.error_message().find("'SFO' is not FIELD=VALUE"), std::string::npos);

  auto no_name = parse_assignments({"=LAX"});
  ASSERT_FALSE(no_name);
  EXPECT_EQ(no_name.error_code(), errc::invalid);
  EXPECT_NE(no_name.error_message().find("'=LAX'"), std::string::npos);
}

TEST(PredictArguments, AFieldGivenTwiceIsInvalid) {
  auto twice = parse_assignments({"origin=LAX", "origin=SFO"});
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error_code(), errc::invalid);
  EXPECT_EQ(twice.error_message(), "field origin is given twice");
}

// Expected times from Python's datetime.
TEST(PredictArguments, AsOfTakesTheTimesOtherCommandsTakeButNoDuration) {
  EXPECT_EQ(*parse_prediction_time(""), 0);
  EXPECT_EQ(*parse_prediction_time("2001-06-01T08:00:00Z"), 991382400000000LL);
  EXPECT_EQ(*parse_prediction_time("991382400"), 991382400000000LL);
  EXPECT_EQ(*parse_prediction_time("991382400000"), 991382400000000LL);

  auto relative = parse_prediction_time("-6h");
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error_code(), errc::invalid);
  EXPECT_NE(relative.error_message().find("not a duration"), std::string::npos);
  EXPECT_FALSE(parse_prediction_time("yesterday"));
  EXPECT_FALSE(parse_prediction_time("0"));
}

TEST(PredictOutput, AgesReadInTheirLargestSensibleUnit) {
  EXPECT_EQ(format_age(-1), "-");
  EXPECT_EQ(format_age(850), "850 µs");
  EXPECT_EQ(format_age(12'300), "12.3 ms");
  EXPECT_EQ(format_age(4'200'000), "4.2 s");
  EXPECT_EQ(format_age(450'000'000), "7.5 min");
  EXPECT_EQ(format_age(11'160'000'000), "3.1 h");
  EXPECT_EQ(format_age(172'800'000'000), "2.0 d");
}

client::prediction scored() {
  client::prediction p;
  p.score = 0.25;
  p.version = 3;
  p.stage = "production";
  p.path = "model";
  p.node = "node-a";
  p.request_id = "7";
  p.prediction_time = 991382400000000LL;
  p.latency_us = 1500;
  return p;
}

TEST(PredictOutput, APredictionAsJsonHasItsFieldsInAFixedOrder) {
  auto j = prediction_json(scored());
  EXPECT_EQ(j.dump(),
            R"({"request_id":"7","score":0.25,"version":3,"stage":"production","path":"model",)"
            R"("node":"node-a","latency_us":1500,"prediction_time":"2001-06-01T08:00:00Z"})");
}

TEST(PredictOutput, AFailedExampleHasANullScoreItsErrorAndItsCodeName) {
  client::prediction p;
  p.request_id = "12";
  p.error = "feature route_delay.mean_1h is 2h old (max 10m)";
  p.code = errc::invalid;
  auto j = prediction_json(p);
  EXPECT_TRUE(j["score"].is_null());
  EXPECT_EQ(j["error"], p.error);
  EXPECT_EQ(j["code"], "invalid");
  EXPECT_TRUE(j["prediction_time"].is_null());
  EXPECT_EQ(code_name(errc::not_found), std::string("not_found"));
  EXPECT_EQ(format_prediction(p, true), "error (invalid): " + p.error + "\n");
}

TEST(PredictOutput, FeaturesShowMissingValuesAndUnknownAgesAsNull) {
  auto p = scored();
  p.features.push_back({"dep_hour", 8, 0, -1, client::vector_status::fresh});
  p.features.push_back(
      {"route_delay.mean_1h", NAN, 991378800000000LL, 3'600'000'000, client::vector_status::stale});
  auto fs = prediction_json(p)["features"];
  ASSERT_EQ(fs.size(), 2u);
  EXPECT_EQ(fs[0].dump(),
            R"({"name":"dep_hour","value":8.0,"event_time":null,"age_us":null,"status":"fresh"})");
  EXPECT_EQ(fs[1].dump(),
            R"({"name":"route_delay.mean_1h","value":null,"event_time":"2001-06-01T07:00:00Z",)"
            R"("age_us":3600000000,"status":"stale"})");

  auto text = format_prediction(p, true);
  EXPECT_NE(text.find("score            0.250000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("version          3 (production)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency          1.5 ms\n"), std::string::npos) << text;
  EXPECT_NE(text.find("prediction time  2001-06-01T08:00:00Z\n"), std::string::npos) << text;
  EXPECT_NE(text.find("dep_hour                        8           -  fresh\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("route_delay.mean_1h       missing    60.0 min  stale\n"), std::string::npos)
      << text;
  // Without --vector, no table.
  EXPECT_EQ(format_prediction(p, false).find("dep_hour"), std::string::npos);
}

const char* kReport = R"({
  "model": "late_mlp", "version": 3, "sampled": 1000, "compared": 980, "skipped": 20,
  "mismatched_examples": 12,
  "features": [
    {"name": "dep_hour", "compared": 980, "mismatches": 0, "max_abs_diff": 0, "examples": []},
    {"name": "origin_delay.count_1h", "compared": 980, "mismatches": 2, "max_abs_diff": 1,
     "examples": [{"request_id": "r-9", "logged": 4, "offline": 5}]},
    {"name": "route_delay.mean_1h", "compared": 975, "mismatches": 10, "max_abs_diff": 3.5,
     "examples": [{"request_id": "r-1", "logged": 12.5, "offline": 9},
                  {"request_id": "r-2", "logged": null, "offline": 7.25},
                  {"request_id": "r-3", "logged": 1, "offline": 2},
                  {"request_id": "r-4", "logged": 1, "offline": 2}]}
  ],
  "skipped_reasons": {"no offline events at the logged time": 5, "vector not logged": 15}
})";

TEST(SkewReport, ReadsAsCountsThenFeaturesByMismatchesThenExamplesThenSkips) {
  auto text = format_skew_report(kReport);
  ASSERT_TRUE(text) << text.error_message();
  const std::string expected =
      "skew of late_mlp version 3: 1,000 logged predictions sampled, 980 compared, 20 skipped\n"
      "12 of 980 compared examples (1.2 %) differ in at least one feature\n"
      "\n"
      "feature                  compared  mismatches    max |diff|\n"
      "route_delay.mean_1h           975          10           3.5\n"
      "origin_delay.count_1h         980           2             1\n"
      "dep_hour                      980           0             0\n"
      "\n"
      "mismatches, for example:\n"
      "  route_delay.mean_1h\n"
      "    request r-1: served 12.5, offline 9\n"
      "    request r-2: served missing, offline 7.25\n"
      "    request r-3: served 1, offline 2\n"
      "  origin_delay.count_1h\n"
      "    request r-9: served 4, offline 5\n"
      "\n"
      "skipped:\n"
      "          15  vector not logged\n"
      "           5  no offline events at the logged time\n";
  EXPECT_EQ(*text, expected);
}

TEST(SkewReport, SaysWhenNothingDiffersOrNothingWasCompared) {
  auto clean = format_skew_report(
      R"({"model":"m","version":1,"sampled":10,"compared":10,"skipped":0,"mismatched_examples":0,
          "features":[{"name":"f","compared":10,"mismatches":0,"max_abs_diff":0,"examples":[]}],
          "skipped_reasons":{}})");
  ASSERT_TRUE(clean) << clean.error_message();
  EXPECT_NE(clean->find("no skew"), std::string::npos) << *clean;
  EXPECT_EQ(clean->find("for example"), std::string::npos) << *clean;
  EXPECT_EQ(clean->find("skipped:"), std::string::npos) << *clean;

  auto none = format_skew_report(
      R"({"model":"m","version":1,"sampled":0,"compared":0,"skipped":0,"mismatched_examples":0,
          "features":[],"skipped_reasons":{}})");
  ASSERT_TRUE(none) << none.error_message();
  EXPECT_NE(none->find("nothing compared"), std::string::npos) << *none;
}

TEST(SkewReport, TextThatIsNotAReportIsInvalidAndSaysWhy) {
  auto not_json = format_skew_report("oops");
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error_code(), errc::invalid);

  auto bad_count = format_skew_report(R"({"model":"m","compared":"many"})");
  ASSERT_FALSE(bad_count);
  EXPECT_EQ(bad_count.error_code(), errc::invalid);
  EXPECT_NE(bad_count.error_message().find("\"compared\""), std::string::npos)
      << bad_count.error_message();

  auto bad_features = format_skew_report(R"({"model":"m","features":{"a":1}})");
  ASSERT_FALSE(bad_features);
  EXPECT_NE(bad_features.error_message().find("\"features\""), std::string::npos);
}

}  // namespace
}  // namespace tessera::cli
