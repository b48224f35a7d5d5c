// Shared by the inference tests: the flights example adapted for serving on the committed
// slice, departures as prediction examples, and waiting for a node to serve a version.
#pragma once
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "test_support.h"

namespace tessera::test {

inline constexpr int64_t kJan8 = 978912000000000;   // 2001-01-08T00:00:00Z
inline constexpr int64_t kJan12 = 979257600000000;  // 2001-01-12T00:00:00Z

// The flights example with its split moved onto the committed slice (2001-01-01..11), written
// to DIR/NAME.lua with `extra` appended; with `serving`, views that keep 30 days for as-of reads
// (the inference tests predict flights days before the stream's clock). `late_mlp_options`
// (e.g. "follow = { ... },") go into late_mlp's declaration.
inline std::string slice_example_definitions(const std::string& dir, const std::string& name,
                                             bool serving, const std::string& extra = "",
                                             const std::string& late_mlp_options = "") {
  std::ifstream in(flights_example_definitions());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string d = ss.str();
  auto replace = [&](const std::string& a, const std::string& b) {
    auto at = d.find(a);
    EXPECT_NE(at, std::string::npos) << a;
    if (at != std::string::npos) d.replace(at, a.size(), b);
  };
  replace("train = { \"2001-01-01\", \"2001-05-01\" }",
          "train = { \"2001-01-01\", \"2001-01-07\" }");
  replace("validation = { \"2001-05-01\", \"2001-06-01\" }",
          "validation = { \"2001-01-07\", \"2001-01-08\" }");
  replace("test = { \"2001-06-01\", \"2001-07-01\" }", "test = { \"2001-01-08\", \"2001-01-12\" }");
  if (!late_mlp_options.empty())
    replace("model { name = \"late_mlp\", label = \"late\",",
            "model { name = \"late_mlp\", label = \"late\", " + late_mlp_options);
  if (serving) {
    replace("ttl = \"6h\",", "ttl = \"6h\", as_of_horizon = \"30d\",");
    replace("ttl = \"7d\",", "ttl = \"7d\", as_of_horizon = \"30d\",");
  }
  std::ofstream(dir + "/" + name + ".lua") << d << extra;
  return dir + "/" + name + ".lua";
}

inline std::string serving_definitions(const std::string& dir) {
  return slice_example_definitions(dir, "serving", true);
}

inline client::example departure(const flight& f, const std::string& id = "") {
  client::example e;
  e.fields = {{"origin", f.origin},
              {"destination", f.destination},
              {"distance", f.distance},
              {"date", client::timestamp{f.time}}};
  e.request_id = id;
  return e;
}

// Waits until the node serves `version` of `model` in production (it follows the registry).
inline bool serves(client::connection& c, const std::string& model, uint32_t version) {
  return eventually(
      [&] {
        auto st = c.status();
        if (!st) return false;
        for (auto m : (*st)->getModels())
          if (m.getModel() == model && m.getVersion() == version && m.getStage() == "production")
            return true;
        return false;
      },
      std::chrono::seconds(30));
}

// A node on the serving definitions (plus `extra_models`) with the slice applied and late_mlp
// version 1 trained and in production (`ready` once all of it succeeded).
struct serving_node {
  temp_dir dir;
  std::string defs;
  std::unique_ptr<node_harness> h;
  std::unique_ptr<client::connection> c;
  bool ready = false;
  explicit serving_node(const std::string& extra_models = "",
                        const std::string& late_mlp_options = "") {
    defs = slice_example_definitions(dir.path, "serving", true, extra_models, late_mlp_options);
    start();
    if (!h->n) return;
    std::string out;
    if (run_cli("ingest --quiet --replay --rpc " + h->rpc() + " --stream flights " + slice_path(),
                &out) != 0) {
      ADD_FAILURE() << out;
      return;
    }
    if (wait_applied(h->rpc(), 2 * slice().size()) != 2 * slice().size()) return;
    if (run_cli("train late_mlp --quiet --rpc " + h->rpc(), &out) != 0) {
      ADD_FAILURE() << out;
      return;
    }
    auto st = c->promote_model("late_mlp", 1, "production");
    if (!st) {
      ADD_FAILURE() << failure_text(st);
      return;
    }
    ready = true;
  }
  // (Re)starts the node on the same data dir and definitions.
  void start() {
    c.reset();
    h.reset();
    h = std::make_unique<node_harness>(dir.path + "/node", 5 * 60 * 1000, defs);
    if (h->n) c = open_client(h->rpc());
  }
};

// The monitoring tests' own label stream: trips (a flight's arrival with its delay, at its
// arrival time), a view, the label trip_late (delay > 15 at the scheduled departure) and the
// model trip_model with `monitor = { <monitor> }` (models are imported into it).
inline std::string trips_definitions(const std::string& monitor) {
  return R"lua(
stream {
  name = "trips", time_field = "arrival",
  fields = { date = "timestamp", delay = "float", distance = "float", origin = "text", destination = "text" },
  derive = { arrival = { type = "timestamp", expr = "date + 60000000 * (30 + distance / 8 + delay)" } },
  clock = "replay",
}
view { name = "trip_delay", version = 1, entity = "route", stream = "trips", ttl = "7d",
       features = { count { "n_7d", window = "7d" } } }
label { name = "trip_late", stream = "trips", entity = "route", value = "delay > 15",
        prediction_time = "date", features = { "trip_delay" }, on_demand = { distance = "distance" } }
model { name = "trip_model", label = "trip_late", split = split, monitor = { )lua" +
         monitor + " } }\n";
}

// The first `n` flights from Jan 8 on with distinct join keys (route and scheduled departure):
// the monitoring tests' departures, each labelled by its own arrival.
inline std::vector<const flight*> distinct_trips(size_t n) {
  std::vector<const flight*> fl;
  std::set<std::string> keys;
  for (const flight& f : slice()) {
    if (f.time < kJan8 || fl.size() == n) continue;
    if (keys.insert(f.origin + "-" + f.destination + "@" + std::to_string(f.time)).second)
      fl.push_back(&f);
  }
  return fl;
}

// A trip's arrival (the label of its departure), `shift` µs later.
inline client::event trip_event(const flight& f, int64_t shift = 0) {
  client::event e;
  e.fields = {{"date", client::timestamp{f.time + shift}},
              {"delay", f.delay},
              {"distance", f.distance},
              {"origin", f.origin},
              {"destination", f.destination}};
  e.known_time = -1;
  return e;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A special TorchScript model of tests/training/make_special_torchscript.py (`kind`: by_distance,
// nan_when_far, ...; 11 inputs) written under `dir`; its bytes.
inline std::string special(const std::string& dir, const std::string& kind) {
  const std::string path = dir + "/" + kind + ".pt";
  const std::string cmd = "/usr/bin/python3 " TSR_SOURCE_DIR
                          "/tests/training/make_special_torchscript.py " +
                          path + " 11 " + kind;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return read_file(path);
}

}  // namespace tessera::test
