// The feature-freshness objective (`monitor = { slo_freshness_ms, slo_freshness_rate }`): the
// node counts its applied event batches and those slower than the objective from JetStream
// storing them to readable. With an objective no batch can meet (1 µs), every batch is bad: the
// burn rate is 1/budget and the page alert fires, naming the node; with one every batch meets
// (10 min), the same traffic burns nothing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serving_support.h"

namespace tessera::test {
namespace {

struct freshness_node {
  temp_dir dir;
  std::unique_ptr<node_harness> h;
  std::unique_ptr<client::connection> c;
  explicit freshness_node(const std::string& monitor) {
    const auto defs =
        slice_example_definitions(dir.path, "fresh", false, trips_definitions(monitor));
    h = std::make_unique<node_harness>(dir.path + "/node", 5 * 60 * 1000, defs);
    if (h->n) c = open_client(h->rpc());
  }
  // 150 ingest calls of one trip each: at least 150 applied batches (one per message).
  void ingest_one_by_one() {
    const auto& fl = slice();
    for (size_t i = 0; i < 150; ++i) {
      auto r = c->ingest("trips", {trip_event(fl[i])}, "fresh-" + std::to_string(i));
      ASSERT_TRUE(r) << failure_text(r);
      ASSERT_EQ(r->rejected.size(), 0u);
    }
  }
  // The freshness objective's (events in the last hour, burn over the last hour, level).
  std::optional<std::tuple<uint64_t, double, std::string>> freshness() {
    auto r = c->status();
    if (!r) return std::nullopt;
    for (auto m : (*r)->getQuality())
      if (m.getModel() == "trip_model")
        for (auto x : m.getSlos())
          if (x.getSli() == "freshness")
            return std::tuple{x.getEvents1h(), x.getBurn1h(), std::string(x.getLevel().cStr())};
    return std::nullopt;
  }
  nlohmann::json alerts() {
    auto a = c->alerts_json();
    return a ? nlohmann::json::parse(*a, nullptr, false) : nlohmann::json::array();
  }
};

TEST(FreshnessSlo, BatchesSlowerThanTheObjectiveBurnTheBudgetAndPage) {
  freshness_node s("slo_freshness_ms = 0.001, slo_freshness_rate = 0.001");
  ASSERT_TRUE(s.c);
  s.ingest_one_by_one();
  nlohmann::json firing;
  const bool fired = eventually(
      [&] {
        for (auto& a : s.alerts())
          if (a.value("name", "") == "slo_freshness" && a.value("state", "") == "firing" &&
              a.value("severity", "") == "page")
            firing = a;
        return !firing.is_null();
      },
      std::chrono::seconds(90));
  ASSERT_TRUE(fired) << s.alerts().dump();
  EXPECT_EQ(firing.value("key", "").rfind("slo_freshness.trip_model.", 0), 0u) << firing.dump();
  EXPECT_NE(firing.value("summary", "").find("readable later than the objective"),
            std::string::npos)
      << firing.dump();
  auto f = s.freshness();
  ASSERT_TRUE(f);
  EXPECT_GE(std::get<0>(*f), 100u);
  EXPECT_NEAR(std::get<1>(*f), 1000.0, 1.0);  // every batch bad: 1 / 0.001
  EXPECT_EQ(std::get<2>(*f), "page");
}

TEST(FreshnessSlo, BatchesWithinTheObjectiveBurnNothing) {
  freshness_node s("slo_freshness_ms = 600000, slo_freshness_rate = 0.001");
  ASSERT_TRUE(s.c);
  s.ingest_one_by_one();
  ASSERT_TRUE(eventually(
      [&] {
        auto f = s.freshness();
        return f && std::get<0>(*f) >= 100;
      },
      std::chrono::seconds(90)));
  auto f = s.freshness();
  EXPECT_EQ(std::get<1>(*f), 0.0);
  EXPECT_EQ(std::get<2>(*f), "none");
  for (auto& a : s.alerts()) EXPECT_NE(a.value("name", ""), "slo_freshness") << a.dump();
}

}  // namespace
}  // namespace tessera::test
