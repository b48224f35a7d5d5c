// Shared by the inference tests: the flights example adapted for serving on the committed
// slice, departures as prediction examples, and waiting for a node to serve a version.
#pragma once
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "test_support.h"

namespace tessera::test {

inline constexpr int64_t kJan8 = 978912000000000;   // 2001-01-08T00:00:00Z
inline constexpr int64_t kJan12 = 979257600000000;  // 2001-01-12T00:00:00Z

// The flights example with its split moved onto the committed slice (2001-01-01..11), written
// to DIR/NAME.lua with `extra` appended; with `serving`, views that keep 30 days for as-of reads
// (the inference tests predict flights days before the stream's clock).
inline std::string slice_example_definitions(const std::string& dir, const std::string& name,
                                             bool serving, const std::string& extra = "") {
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

}  // namespace tessera::test
