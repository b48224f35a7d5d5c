// Point-in-time training sets from a real node (nats-server, RocksDB, RPC, the CLI):
//  - every row of `tessera dataset build` equals a brute force over the flights slice, computed
//    here from the definition's words (arrival as event time, windows (t - W, t]);
//  - leakage: events whose event time is before a prediction time but which became known after
//    it never appear in that row; known exactly at the prediction time counts (documented);
//  - skew: the online path's vector at time t equals the dataset's, bit for bit;
//  - bad input: unknown label, empty range, times outside retention, non-finite values.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "test_support.h"

namespace tessera::test {
namespace {

using row = std::vector<std::string>;

struct csv_file {
  row header;
  std::vector<row> rows;
  size_t col(const std::string& name) const {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return i;
    ADD_FAILURE() << "no column " << name;
    return 0;
  }
};

row split(const std::string& line) {
  row out;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"')
      quoted = !quoted;
    else if (c == ',' && !quoted)
      out.push_back(std::move(cur)), cur.clear();
    else
      cur += c;
  }
  out.push_back(cur);
  return out;
}

csv_file read_csv(const std::string& path) {
  csv_file f;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  f.header = split(line);
  while (std::getline(in, line)) f.rows.push_back(split(line));
  return f;
}

std::optional<double> cell(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return std::strtod(s.c_str(),
                     nullptr);  // the shortest round-trip text: exactly the double written
}

// A flight sent over RPC with an explicit known time.
void send_flights(const std::string& rpc, const std::vector<flight>& fs, int64_t known) {
  std::vector<client::event> evs;
  for (auto& f : fs) {
    client::event e;
    e.known_time = known;
    e.fields = {{"date", client::timestamp{f.time}},
                {"delay", f.delay},
                {"distance", f.distance},
                {"origin", f.origin},
                {"destination", f.destination}};
    evs.push_back(std::move(e));
  }
  auto resp = open_client(rpc)->ingest("flights", evs);
  ASSERT_TRUE(resp) << failure_text(resp);
  ASSERT_EQ(resp->accepted, fs.size());
}

flight make_flight(int64_t departure, double delay, double distance, const std::string& o,
                   const std::string& d) {
  flight f{departure, delay, o, d, distance, 0};
  f.arrival =
      std::llround(static_cast<double>(departure) + 60000000.0 * (30.0 + distance / 8.0 + delay));
  return f;
}

// The example's flights with their arrival as the event time, as the references expect.
std::vector<flight> by_arrival(const std::vector<flight>& fs) {
  std::vector<flight> out = fs;
  for (auto& f : out) f.time = f.arrival;
  return out;
}

class Datasets : public ::testing::Test {
 protected:
  void SetUp() override {
    h = std::make_unique<node_harness>(dir.path, 5 * 60 * 1000, flights_example_definitions());
    ASSERT_TRUE(h->n);
    std::string out;
    ASSERT_EQ(
        run_cli("ingest --quiet --replay --rpc " + h->rpc() + " --stream flights " + slice_path(),
                &out),
        0)
        << out;
    ASSERT_EQ(wait_applied(h->rpc(), 2 * slice().size()), 2 * slice().size());
  }
  csv_file build(const std::string& name, const std::string& extra = "", int want_exit = 0,
                 std::string* output = nullptr) {
    std::string out;
    const std::string path = dir.path + "/" + name + ".csv";
    EXPECT_EQ(
        run_cli("dataset build late --quiet --rpc " + h->rpc() + " -o " + path + " " + extra, &out),
        want_exit)
        << out;
    if (output) *output = out;
    return want_exit == 0 ? read_csv(path) : csv_file{};
  }
  temp_dir dir;
  std::unique_ptr<node_harness> h;
};

const int64_t kHour = 3600LL * 1000000;

TEST_F(Datasets, EveryRowEqualsTheBruteForceAndLateKnownEventsNeverLeak) {
  // Adversarial LAX flights: they happen Jan 2-8 but become known only at K = 2001-01-09T00:00Z.
  const int64_t K = 978998400000000LL;
  std::vector<flight> late;
  for (int64_t t = K - 7 * 24 * kHour; t < K - 6 * kHour; t += 6 * kHour)
    late.push_back(make_flight(t, 600, 300, "LAX", "SFO"));
  send_flights(h->rpc(), late, K);
  // One more, departing exactly at K: its row's prediction time equals the others' known time.
  std::vector<flight> at_k{make_flight(K, 5, 300, "LAX", "SFO")};
  send_flights(h->rpc(), at_k, K);
  const uint64_t total = slice().size() + late.size() + 1;
  ASSERT_EQ(wait_applied(h->rpc(), 2 * total), 2 * total);

  csv_file d = build("all");
  ASSERT_EQ(d.rows.size(), total);
  const std::vector<flight> base = by_arrival(slice());
  std::vector<flight> with_late = base;
  for (auto& f : by_arrival(late)) with_late.push_back(f);
  for (auto& f : by_arrival(at_k)) with_late.push_back(f);
  std::vector<flight> base_plus_k = base;
  for (auto& f : by_arrival(at_k)) base_plus_k.push_back(f);

  const size_t c_t = d.col("prediction_time"), c_e = d.col("entity"), c_label = d.col("label");
  const size_t c_n1 = d.col("airport_delay.count_1h"), c_m1 = d.col("airport_delay.mean_delay_1h"),
               c_n24 = d.col("airport_delay.count_24h"),
               c_m24 = d.col("airport_delay.mean_delay_24h"),
               c_x24 = d.col("airport_delay.max_delay_24h"),
               c_l24 = d.col("airport_delay.late_24h"), c_r7 = d.col("route_delay.count_7d"),
               c_rm7 = d.col("route_delay.mean_delay_7d"), c_h = d.col("hour");
  size_t bad = 0, late_rows_checked = 0, labels = 0;
  auto same = [&](std::optional<double> got, std::optional<double> want) {
    bool ok = got.has_value() == want.has_value() &&
              (!got || std::fabs(*got - *want) <= 1e-9 * std::max(1.0, std::fabs(*want)));
    bad += !ok;
    return ok;
  };
  for (auto& r : d.rows) {
    const int64_t t = std::stoll(r[c_t]);
    const std::string route = r[c_e], origin = route.substr(0, route.find('-'));
    // What was known at t: the adversarial events only from K on (known == t counts).
    const std::vector<flight>& known = t >= K ? with_late : base_plus_k;
    if (origin == "LAX" && t < K && t > K - 7 * 24 * kHour) ++late_rows_checked;
    auto a = airport_at(known, origin, t);
    auto rt = route_at(known, route, t);
    if (!same(cell(r[c_n1]), a.count_1h) || !same(cell(r[c_m1]), a.mean_1h) ||
        !same(cell(r[c_n24]), a.count_24h) || !same(cell(r[c_m24]), a.mean_24h) ||
        !same(cell(r[c_x24]), a.max_24h) || !same(cell(r[c_l24]), a.late_24h) ||
        !same(cell(r[c_r7]), rt.count_7d) || !same(cell(r[c_rm7]), rt.mean_7d))
      if (bad < 10)
        ADD_FAILURE() << "row " << route << " at " << t << " differs from the brute force";
    labels += r[c_label] == "1";
    EXPECT_EQ(std::stoll(r[c_h]), (t / kHour) % 24);
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(late_rows_checked, 100u);  // rows where a leak would have shown
  size_t want_labels = 0;
  for (auto& f : with_late) want_labels += f.delay > 15;
  EXPECT_EQ(labels, want_labels);
  // The row predicted exactly at K sees the adversarial flights (known at K <= t).
  bool found_k = false;
  for (auto& r : d.rows)
    if (std::stoll(r[c_t]) == K && r[c_e] == "LAX-SFO") {
      found_k = true;
      EXPECT_EQ(cell(r[c_x24]), std::optional<double>(600));
    }
  EXPECT_TRUE(found_k);

  // Rebuilding gives the same bytes (the manifest's hash).
  std::string m1, m2;
  build("again");
  auto hash_of = [&](const std::string& name) {
    std::ifstream in(dir.path + "/" + name + ".csv.manifest.json");
    return nlohmann::json::parse(in)["fnv1a64"].get<std::string>();
  };
  EXPECT_EQ(hash_of("all"), hash_of("again"));
  // --from/--to select by prediction time.
  csv_file day = build("day", "--from 2001-01-05 --to 2001-01-06");
  size_t want_day = 0;
  for (const std::vector<flight>* fs : {&slice(), static_cast<const std::vector<flight>*>(&late),
                                        static_cast<const std::vector<flight>*>(&at_k)})
    for (auto& f : *fs)
      want_day += f.time >= 978652800000000LL && f.time < 978739200000000LL;  // by departure
  EXPECT_EQ(day.rows.size(), want_day);
}

TEST_F(Datasets, TheOnlineVectorEqualsTheOfflineOneBitForBit) {
  csv_file d = build("skew");
  auto c = open_client(h->rpc());
  int64_t wm = 0;
  for (auto& f : by_arrival(slice())) wm = std::max(wm, f.time);
  const size_t c_t = d.col("prediction_time"), c_e = d.col("entity");
  std::mt19937 rng(5);
  size_t compared = 0;
  for (int k = 0; k < 20000 && compared < 300; ++k) {
    const row& r = d.rows[rng() % d.rows.size()];
    const int64_t t = std::stoll(r[c_t]);
    if (t <= wm - 20 * kHour || t > wm)
      continue;  // online as-of reads reach back 24 h for airports
    const std::string route = r[c_e], origin = route.substr(0, route.find('-'));
    for (auto [view, key] : {std::pair{"airport_delay", origin}, std::pair{"route_delay", route}}) {
      auto resp = c->features(view, {key}, t);
      ASSERT_TRUE(resp) << view << " " << key << " at " << t << ": " << failure_text(resp);
      ASSERT_EQ(resp->size(), 1u);
      const client::feature_vector& v = (*resp)[0];
      for (auto& f : v.values) {
        std::optional<double> online = number_of(f.v);
        auto offline = cell(r[d.col(std::string(view) + "." + f.name)]);
        ASSERT_EQ(online.has_value(), offline.has_value())
            << view << " " << key << " " << f.name << " at " << t;
        if (online) {
          uint64_t a, b;
          std::memcpy(&a, &*online, 8);
          std::memcpy(&b, &*offline, 8);
          EXPECT_EQ(a, b) << view << " " << key << " " << f.name << " at " << t << ": " << *online
                          << " vs " << *offline;
        }
      }
    }
    ++compared;
  }
  EXPECT_EQ(compared, 300u);
}

TEST_F(Datasets, ANewEventChangesTheNextBuild) {
  // Airport logs are cached between the parts of a build; an applied event must invalidate them.
  csv_file d1 = build("before");
  const size_t c_t = d1.col("prediction_time"), c_e = d1.col("entity"),
               c_max = d1.col("airport_delay.max_delay_24h");
  const row* last_lax = nullptr;
  for (auto& r : d1.rows)
    if (r[c_e].rfind("LAX-", 0) == 0 &&
        (!last_lax || std::stoll(r[c_t]) > std::stoll((*last_lax)[c_t])))
      last_lax = &r;
  ASSERT_NE(last_lax, nullptr);
  const int64_t p = std::stoll((*last_lax)[c_t]);
  ASSERT_NE((*last_lax)[c_max], "999");
  // Departs 20 h before, arrives (30 + 0 + 999 min later) about 2.85 h before p, known then.
  send_flights(h->rpc(), {make_flight(p - 20 * kHour, 999, 0, "LAX", "ZZZ")}, -1);
  ASSERT_EQ(wait_applied(h->rpc(), 2 * (slice().size() + 1)), 2 * (slice().size() + 1));
  csv_file d2 = build("after");
  bool found = false;
  for (auto& r : d2.rows)
    if (r[c_e] == (*last_lax)[c_e] && std::stoll(r[c_t]) == p) {
      found = true;
      EXPECT_EQ(r[c_max], "999");
    }
  EXPECT_TRUE(found);
}

TEST_F(Datasets, BadRequestsGetClearErrors) {
  std::string out;
  EXPECT_EQ(
      run_cli("dataset build nope --quiet --rpc " + h->rpc() + " -o " + dir.path + "/x.csv", &out),
      2);
  EXPECT_NE(out.find("unknown label 'nope' (known: late, late_daily)"), std::string::npos) << out;
  build("empty", "--from 2005-01-01", 2, &out);
  EXPECT_NE(out.find("empty dataset: no example of label late"), std::string::npos) << out;
  EXPECT_FALSE(std::ifstream(dir.path + "/empty.csv").good());  // nothing half-written
  EXPECT_EQ(run_cli("dataset build late --quiet --rpc " + h->rpc() + " -o " + dir.path +
                        "/y.csv --from 2001-01-05 --to 2001-01-04",
                    &out),
            2);
  EXPECT_NE(out.find("--from must be before --to"), std::string::npos) << out;
}

// The example, with its text edited by `edit` (old → new), in `dir`.
std::string edited_example(const std::string& dir, const std::string& from, const std::string& to) {
  std::ifstream in(flights_example_definitions());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string defs = ss.str();
  auto at = defs.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) defs.replace(at, from.size(), to);
  std::ofstream(dir + "/edited.lua") << defs;
  return dir + "/edited.lua";
}

// A node in dir/node with `defs` that replayed the flights slice and built label `late` into
// dir/d.csv (stopped on return).
void build_slice_dataset(const std::string& dir, const std::string& defs) {
  node_harness h(dir + "/node", 5 * 60 * 1000, defs);
  ASSERT_TRUE(h.n);
  std::string out;
  ASSERT_EQ(
      run_cli("ingest --quiet --replay --rpc " + h.rpc() + " --stream flights " + slice_path(),
              &out),
      0)
      << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size()), 2 * slice().size());
  ASSERT_EQ(run_cli("dataset build late --quiet --rpc " + h.rpc() + " -o " + dir + "/d.csv", &out),
            0)
      << out;
}

TEST(DatasetValues, NonFiniteValuesAreLeftEmptyAndCounted) {
  temp_dir dir;
  // An on-demand feature that overflows to infinity for every flight with a distance.
  auto defs =
      edited_example(dir.path, "on_demand = { distance = \"distance\",",
                     "on_demand = { huge = \"distance * 1e300 * 1e300\", distance = \"distance\",");
  ASSERT_NO_FATAL_FAILURE(build_slice_dataset(dir.path, defs));
  csv_file d = read_csv(dir.path + "/d.csv");
  ASSERT_EQ(d.rows.size(), slice().size());
  for (auto& r : d.rows) ASSERT_EQ(r[d.col("huge")], "");
  std::ifstream in(dir.path + "/d.csv.manifest.json");
  EXPECT_EQ(nlohmann::json::parse(in)["non_finite_values"].get<uint64_t>(), slice().size());
}

// Values that are not numbers (text from an on-demand field and from a `last` feature, which
// the window index does not compute) go into the rows quoted, each in its own row.
TEST(DatasetValues, TextValuesAreWrittenQuotedInTheirRows) {
  temp_dir dir;
  std::string defs = edited_example(dir.path, "on_demand = { distance = \"distance\",",
                                    "on_demand = { dest = \"destination\", quote = \"'a \\\"q\\\", "
                                    "b'\", distance = \"distance\",");
  std::ifstream in(defs);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  const std::string from = "    count { \"late_24h\", window = \"24h\", filter = \"delay > 15\" },";
  ASSERT_NE(text.find(from), std::string::npos);
  text.replace(
      text.find(from), from.size(),
      from + "\n    last { \"last_dest_24h\", field = \"destination\", window = \"24h\" },");
  std::ofstream(defs) << text;
  ASSERT_NO_FATAL_FAILURE(build_slice_dataset(dir.path, defs));
  std::ifstream raw(dir.path + "/d.csv");
  std::string header, first;
  std::getline(raw, header);
  std::getline(raw, first);
  EXPECT_NE(first.find(",\"a \"\"q\"\", b\","), std::string::npos)
      << first;  // quoted, quotes doubled (RFC 4180)
  csv_file d = read_csv(dir.path + "/d.csv");
  ASSERT_EQ(d.rows.size(), slice().size());
  // The brute force: the destination of the origin's latest arrival in (t - 24h, t], where that
  // arrival is unique (ties are ordered by the log's sequence, which this test does not know).
  const std::vector<flight> fs = by_arrival(slice());
  const size_t c_t = d.col("prediction_time"), c_e = d.col("entity"), c_dest = d.col("dest"),
               c_last = d.col("airport_delay.last_dest_24h");
  size_t checked = 0, bad = 0;
  for (auto& r : d.rows) {
    const std::string route = r[c_e], origin = route.substr(0, route.find('-'));
    bad += r[c_dest] != route.substr(route.find('-') + 1) || r[d.col("quote")] != "a q, b";
    const int64_t t = std::stoll(r[c_t]);
    int64_t latest = INT64_MIN;
    std::set<std::string> at_latest;
    for (auto& f : fs) {
      if (f.origin != origin || f.time > t || f.time <= t - 24 * kHour) continue;
      if (f.time > latest) latest = f.time, at_latest.clear();
      if (f.time == latest) at_latest.insert(f.destination);
    }
    if (at_latest.empty()) {
      bad += !r[c_last].empty();
    } else if (at_latest.size() == 1) {
      bad += r[c_last] != *at_latest.begin();
      ++checked;
    }
    if (bad && bad < 5)
      ADD_FAILURE() << "row " << route << " at " << t << ": dest " << r[c_dest] << ", last "
                    << r[c_last];
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(checked, d.rows.size() / 2);
}

TEST(DatasetRetention, PredictionTimesOutsideTheOfflineRetentionAreRefused) {
  temp_dir dir;
  // The example with a one-day offline log: every feature window reaches past it.
  node_harness h(
      dir.path + "/node", 5 * 60 * 1000,
      edited_example(dir.path, "offline_retention = \"400d\"", "offline_retention = \"1d\""));
  ASSERT_TRUE(h.n);
  std::string out;
  ASSERT_EQ(
      run_cli("ingest --quiet --replay --rpc " + h.rpc() + " --stream flights " + slice_path(),
              &out),
      0)
      << out;
  ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size()), 2 * slice().size());
  EXPECT_EQ(
      run_cli("dataset build late --quiet --rpc " + h.rpc() + " -o " + dir.path + "/d.csv", &out),
      2);
  EXPECT_NE(out.find("outside the offline retention"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::test

namespace tessera::test {
namespace {

// A new view version, reading a field the old views never stored, added after the events were
// applied: after a restart it is usable at once, offline (a dataset from the log) and online
// (the kind's records rebuilt from the log), with values equal to the brute force.
TEST(Backfill, ANewViewVersionIsComputedFromTheRetainedHistory) {
  temp_dir dir;
  std::string out;
  {
    node_harness h(dir.path + "/node", 5 * 60 * 1000, flights_example_definitions());
    ASSERT_TRUE(h.n);
    ASSERT_EQ(
        run_cli("ingest --quiet --replay --rpc " + h.rpc() + " --stream flights " + slice_path(),
                &out),
        0)
        << out;
    ASSERT_EQ(wait_applied(h.rpc(), 2 * slice().size()), 2 * slice().size());
  }
  std::ifstream in(flights_example_definitions());
  std::stringstream ss;
  ss << in.rdbuf();
  std::ofstream(dir.path + "/v2.lua") << ss.str() << R"lua(
view {
  name = "airport_delay", version = 2, entity = "origin", stream = "flights", ttl = "6h",
  features = { count { "count_6h", window = "6h" }, mean { "mean_distance_24h", field = "distance", window = "24h" } },
}
label { name = "late_v2", stream = "flights", entity = "route", value = "delay > 15", prediction_time = "date", features = { "airport_delay@2" } }
)lua";
  node_harness h(dir.path + "/node", 5 * 60 * 1000, dir.path + "/v2.lua");
  ASSERT_TRUE(h.n);
  const int64_t hour = 3600LL * 1000000;
  auto brute = [&](const std::string& origin, int64_t t) {
    int64_t n6 = 0, n24 = 0;
    double sum = 0;
    for (auto& f : slice()) {
      if (f.origin != origin || f.arrival > t) continue;
      if (f.arrival > t - 6 * hour) ++n6;
      if (f.arrival > t - 24 * hour) ++n24, sum += f.distance;
    }
    return std::tuple<int64_t, std::optional<double>>{
        n6, n24 ? std::optional<double>(sum / static_cast<double>(n24)) : std::nullopt};
  };
  // Offline: a dataset of the new version from the log.
  ASSERT_EQ(run_cli("dataset build late_v2 --quiet --rpc " + h.rpc() + " -o " + dir.path +
                        "/v2.csv --from 2001-01-09 --to 2001-01-10",
                    &out),
            0)
      << out;
  csv_file d = read_csv(dir.path + "/v2.csv");
  ASSERT_GT(d.rows.size(), 1000u);
  size_t bad = 0;
  for (auto& r : d.rows) {
    const int64_t t = std::stoll(r[d.col("prediction_time")]);
    const std::string route = r[d.col("entity")];
    auto [n6, mean] = brute(route.substr(0, route.find('-')), t);
    auto got_n = cell(r[d.col("airport_delay.count_6h")]);
    auto got_m = cell(r[d.col("airport_delay.mean_distance_24h")]);
    bad += !(got_n && *got_n == static_cast<double>(n6)) || got_m.has_value() != mean.has_value() ||
           (mean && std::fabs(*got_m - *mean) > 1e-9 * *mean);
  }
  EXPECT_EQ(bad, 0u);
  // Online: the records were rebuilt with `distance`, so the served v2 values are complete.
  int64_t wm = 0;
  for (auto& f : slice()) wm = std::max(wm, f.arrival);
  const int64_t t = wm - 2 * hour;
  std::vector<std::string> airports{"ORD", "ATL", "DFW", "LAX", "DEN", "PHX"};
  auto got = read_vectors(h.rpc(), "airport_delay@2", airports, t);
  ASSERT_EQ(got.size(), airports.size());
  for (size_t i = 0; i < airports.size(); ++i) {
    auto [n6, mean] = brute(airports[i], t);
    EXPECT_EQ(got[i].second["count_6h"], std::optional<double>(static_cast<double>(n6)))
        << airports[i];
    ASSERT_TRUE(mean && got[i].second["mean_distance_24h"]) << airports[i];
    EXPECT_NEAR(*got[i].second["mean_distance_24h"], *mean, 1e-9 * *mean) << airports[i];
  }
}

}  // namespace
}  // namespace tessera::test
