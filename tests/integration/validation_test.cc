// Expectations at ingest (runtime/expectations.h) through a real node: a hard expectation
// rejects with its reason to the producer, a dead-letter one leaves a record with the reason on
// tsr.dlq.<stream>, soft ones are counted per slice with the last failing events, and every good
// event around the bad ones is applied (the features equal a count made here). `tessera validate
// report` shows it.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <fstream>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace tessera::test {
namespace {

const char* kDefs = R"lua(
stream { name = "trips", time_field = "date", clock = "replay",
  fields = { date = "timestamp", delay = "float", distance = "float", origin = "text", carrier = "text" },
  expect = {
    distance = { not_null = true, min = 1, max = 6000, on_fail = "reject" },
    origin = { pattern = "^[A-Z]{3}$", on_fail = "dead_letter" },
    delay = { min = -120, max = 1500, max_null_share = 0.1 },
    carrier = { values = { "AA", "UA", "DL" } },
  },
  expect_slice = "origin", expect_window = "1h",
}
entity { name = "airport", key = "origin" }
view { name = "airport_trips", entity = "airport", stream = "trips", ttl = "1d",
       features = { count { "n_1d", window = "1d" }, sum { "distance_1d", field = "distance", window = "1d" } } }
)lua";

client::event trip(int64_t t, std::optional<double> delay, std::optional<double> distance,
                   const std::string& origin, const std::string& carrier) {
  client::event e;
  e.fields.emplace_back("date", client::timestamp{t});
  if (delay) e.fields.emplace_back("delay", *delay);
  if (distance) e.fields.emplace_back("distance", *distance);
  e.fields.emplace_back("origin", origin);
  e.fields.emplace_back("carrier", carrier);
  e.known_time = -1;
  return e;
}

TEST(Validation, HardExpectationsRejectOrDeadLetterSoftOnesCountAndGoodEventsAllApply) {
  temp_dir dir;
  const std::string defs = dir.path + "/trips.lua";
  std::ofstream(defs) << kDefs;
  node_harness h(dir.path + "/node", 5 * 60 * 1000, defs);
  ASSERT_TRUE(h.n);
  auto c = open_client(h.rpc());

  // 600 trips in 3 batches over an hour at 3 airports; some break an expectation.
  const int64_t t0 = 978307200000000;  // 2001-01-01
  std::mt19937_64 rng(41);
  const std::vector<std::string> airports = {"LAX", "SFO", "ORD"};
  std::map<std::string, std::pair<int, double>> want;  // airport -> (count, distance sum)
  int rejected = 0, dead = 0, bad_delay = 0, bad_carrier = 0;
  std::map<std::string, int> bad_carrier_at;
  for (int batch = 0; batch < 3; ++batch) {
    std::vector<client::event> events;
    std::vector<int> expect_kind;  // 0 good, 1 rejected, 2 dead-lettered
    for (int i = 0; i < 200; ++i) {
      const int64_t t = t0 + (batch * 200 + i) * 6000000LL;  // every 6 s
      const std::string origin = airports[rng() % 3];
      double distance = 100 + static_cast<double>(rng() % 3000);
      std::optional<double> dist = distance, delay = static_cast<double>(rng() % 60);
      std::string carrier = "AA", o = origin;
      int kind = 0;
      switch (rng() % 25) {
        case 0:
          dist = 9000;  // over max: rejected
          kind = 1;
          break;
        case 1:
          dist.reset();  // null: rejected
          kind = 1;
          break;
        case 2:
          o = "lax";  // pattern: dead-lettered
          kind = 2;
          break;
        case 3:
          delay = 5000;  // soft: counted, applied
          ++bad_delay;
          break;
        case 4:
          carrier = "ZZ";  // soft: counted, applied
          ++bad_carrier;
          ++bad_carrier_at[origin];
          break;
        default:
          break;
      }
      events.push_back(trip(t, delay, dist, o, carrier));
      expect_kind.push_back(kind);
      if (kind == 0) {
        want[origin].first += 1;
        want[origin].second += distance;
      }
    }
    auto r = c->ingest("trips", events, "batch-" + std::to_string(batch));
    ASSERT_TRUE(r) << failure_text(r);
    std::map<uint32_t, std::pair<std::string, std::string>> rej;
    for (auto& x : r->rejected) rej[x.index] = {x.field, x.reason};
    for (size_t i = 0; i < events.size(); ++i) {
      if (expect_kind[i] == 0) {
        EXPECT_EQ(rej.count(static_cast<uint32_t>(i)), 0u) << rej[static_cast<uint32_t>(i)].second;
        continue;
      }
      ASSERT_EQ(rej.count(static_cast<uint32_t>(i)), 1u) << i;
      const auto& [field, reason] = rej[static_cast<uint32_t>(i)];
      if (expect_kind[i] == 1) {
        ++rejected;
        EXPECT_EQ(field, "distance");
        EXPECT_NE(reason.find("expectation failed: distance"), std::string::npos) << reason;
      } else {
        ++dead;
        EXPECT_EQ(field, "origin");
        EXPECT_NE(reason.find("does not match pattern"), std::string::npos) << reason;
        EXPECT_NE(reason.find("dead-lettered"), std::string::npos) << reason;
      }
    }
    EXPECT_EQ(r->accepted,
              static_cast<uint32_t>(std::count(expect_kind.begin(), expect_kind.end(), 0)));
  }
  ASSERT_GT(rejected, 5);
  ASSERT_GT(dead, 5);
  ASSERT_GT(bad_carrier, 5);

  // Every good event applied: the day's count and distance per airport equal the sums here.
  int good = 0;
  for (auto& [a, w] : want) good += w.first;
  ASSERT_EQ(wait_applied(h.rpc(), static_cast<uint64_t>(good)), static_cast<uint64_t>(good));
  for (auto& [a, w] : want) {
    auto v = read_vectors(h.rpc(), "airport_trips", {a}, t0 + 3600LL * 1000000);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].second["n_1d"].value_or(-1), w.first) << a;
    EXPECT_NEAR(v[0].second["distance_1d"].value_or(-1), w.second, 1e-6) << a;
  }

  // The dead letters carry their reasons on tsr.dlq.trips.
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, h.n->nats_url().c_str()), NATS_OK);
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  int stored = 0;
  ASSERT_TRUE(eventually(
      [&] {
        jsStreamInfo* si = nullptr;
        if (js_GetStreamInfo(&si, js, "TSR_DLQ", nullptr, nullptr) != NATS_OK) return false;
        stored = static_cast<int>(si->State.Msgs);
        jsStreamInfo_Destroy(si);
        return stored >= dead;
      },
      std::chrono::seconds(30)));
  EXPECT_EQ(stored, dead);
  natsMsg* m = nullptr;
  ASSERT_EQ(js_GetMsg(&m, js, "TSR_DLQ", 1, nullptr, nullptr), NATS_OK);
  auto dl = nlohmann::json::parse(std::string(natsMsg_GetData(m), natsMsg_GetDataLength(m)));
  natsMsg_Destroy(m);
  EXPECT_EQ(dl["stream"], "trips");
  EXPECT_EQ(dl["event"]["origin"], "lax");
  EXPECT_NE(dl["reason"].get<std::string>().find("does not match pattern"), std::string::npos);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);

  // The report: soft failures per slice with the last failing events.
  auto rep = c->validation_report("trips");
  ASSERT_TRUE(rep) << failure_text(rep);
  auto j = nlohmann::json::parse(*rep);
  std::map<std::string, nlohmann::json> by_field;
  for (auto& e : j["expectations"]) by_field[e["field"]] = e;
  EXPECT_EQ(by_field["carrier"]["failed"].get<int>(), bad_carrier);
  EXPECT_EQ(by_field["carrier"]["on_fail"], "count");
  for (auto& sl : by_field["carrier"]["slices"]) {
    EXPECT_EQ(sl["failed"].get<int>(), bad_carrier_at[sl["slice"]]) << sl.dump();
    ASSERT_FALSE(sl["last"].empty());
    EXPECT_EQ(sl["last"].back()["event"]["carrier"], "ZZ");
  }
  EXPECT_GE(by_field["delay"]["failed"].get<int>(), bad_delay);
  EXPECT_EQ(by_field["distance"]["failed"].get<int>(), rejected);
  std::string out;
  ASSERT_EQ(run_cli("validate report trips --rpc " + h.rpc(), &out), 0) << out;
  EXPECT_NE(out.find("carrier"), std::string::npos) << out;
  EXPECT_NE(out.find("not an allowed value"), std::string::npos) << out;
  EXPECT_NE(run_cli("validate report nope --rpc " + h.rpc(), &out), 0);
  EXPECT_NE(out.find("unknown stream 'nope'"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::test
