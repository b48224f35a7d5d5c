// Reading prediction-log lines for monitoring (actors/monitoring/logged_prediction.h) gives what a
// full JSON parse of the same lines gives, for records of every shape the log writes.
#include "actors/monitoring/logged_prediction.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

namespace tessera::monitoring {
namespace {

TEST(LoggedPrediction, TheSaxReadingEqualsAFullParse) {
  std::mt19937_64 rng(13);
  for (int i = 0; i < 500; ++i) {
    nlohmann::json vec = nlohmann::json::array();
    const int n = static_cast<int>(rng() % 14);
    for (int k = 0; k < n; ++k)
      vec.push_back(rng() % 7 == 0 ? nlohmann::json() : nlohmann::json(double(rng() % 10000) / 7));
    nlohmann::json j{{"request_id", "r" + std::to_string(i)},
                     {"time", 991353600000000 + i},
                     {"model", "late_mlp"},
                     {"version", static_cast<int>(rng() % 5 + 1)},
                     {"stage", rng() % 2 ? "production" : "canary"},
                     {"path", "model"},
                     {"prediction_time", 991353600000000 + 1000 * i},
                     {"score", double(rng() % 1000) / 1000},
                     {"inputs", {"a", "b", {"nested", 1}}},
                     {"vector", vec},
                     {"keys", {{"route@1", "LAX-SFO"}, {"x", {{"deep", {1, 2}}}}}},
                     {"fields",
                      {{"origin", "LAX"},
                       {"destination", "SFO"},
                       {"distance", double(rng() % 3000) + 0.5},
                       {"flight", static_cast<int>(rng() % 9000)},
                       {"tags", {"a", "b"}},
                       {"gone", nullptr}}}};
    if (i % 50 == 0) j["decision"] = "late";
    logged_prediction r;
    ASSERT_TRUE(parse_logged(j.dump(), r)) << j.dump();
    EXPECT_EQ(r.version, j["version"].get<uint32_t>());
    EXPECT_EQ(r.stage, j["stage"].get<std::string>());
    EXPECT_EQ(r.score, j["score"].get<double>());
    EXPECT_EQ(r.prediction_time, j["prediction_time"].get<int64_t>());
    ASSERT_EQ(r.vector.size(), vec.size());
    for (size_t k = 0; k < vec.size(); ++k)
      if (vec[k].is_null())
        EXPECT_TRUE(std::isnan(r.vector[k]));
      else
        EXPECT_EQ(r.vector[k], vec[k].get<double>());
    std::map<std::string, std::string> f(r.fields.begin(), r.fields.end());
    EXPECT_EQ(f["origin"], "LAX");
    EXPECT_EQ(f["destination"], "SFO");
    EXPECT_EQ(f["flight"], std::to_string(j["fields"]["flight"].get<int>()));
    EXPECT_EQ(f["distance"], j["fields"]["distance"].dump());
    EXPECT_EQ(f.count("gone"), 0u);
  }
  logged_prediction r;
  EXPECT_FALSE(parse_logged("not json", r));
  EXPECT_FALSE(parse_logged(R"({"version": 1})", r));       // no fields
  EXPECT_FALSE(parse_logged(R"({"fields": {"a": 1})", r));  // truncated
}

}  // namespace
}  // namespace tessera::monitoring
