#include <gtest/gtest.h>

#include "definitions.h"

namespace tessera {
namespace {

std::string error_of(const std::string& src) {
  auto r = definitions::load_string(src, "defs.lua");
  return r.ok() ? std::string("<loaded>") : r.error_message();
}

const char* kStream = R"lua(
stream { name = "flights", time_field = "date", fields = { date = "timestamp", delay = "float", origin = "text", destination = "text" } }
entity { name = "origin", key = "origin" }
entity { name = "route", key = { "origin", "destination" } }
)lua";

}  // namespace

TEST(Definitions, LoadsTheFlightsExample) {
  auto r = definitions::load_file(TSR_EXAMPLES_DIR "/flights/flights.lua");
  ASSERT_TRUE(r.ok()) << r.error_message();
  auto& d = **r;
  const view_def* v = d.find_view("airport_delay");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->features.size(), 6u);
  EXPECT_EQ(v->features[5].name, "late_24h");
  EXPECT_NE(v->features[5].filter, nullptr);
  EXPECT_EQ(d.find_view("route_delay@1")->entity, "route");
  const kind_plan* route = d.find_plan("flights", "route");
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->key_fields, (std::vector<std::string>{"origin", "destination"}));
  // Retention: longest window plus the default as-of horizon (one more window).
  EXPECT_EQ(route->retention_us, 14LL * 86400 * 1000000);
}

TEST(Definitions, LatestVersionByDefault) {
  auto r = definitions::load_string(std::string(kStream) + R"lua(
view { name = "v", version = 1, entity = "origin", stream = "flights", features = { count { "n", window = "1h" } } }
view { name = "v", version = 2, entity = "origin", stream = "flights", features = { count { "n", window = "2h" } } }
)lua");
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ((*r)->find_view("v")->version, 2u);
  EXPECT_EQ((*r)->find_view("v@1")->version, 1u);
  EXPECT_EQ((*r)->find_view("v@3"), nullptr);
}

TEST(Definitions, ErrorsNameFileLineAndProblem) {
  std::string s = kStream;
  EXPECT_NE(error_of("stream { name = ").find("defs.lua:1:"), std::string::npos);
  EXPECT_NE(error_of(s + "view { name = 'v', entity = 'origin', stream = 'nope', features = {} }")
                .find("unknown stream 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of(s + "view { name = 'v', entity = 'who', stream = 'flights', features = { "
                         "count { 'n', window = '1h' } } }")
                .find("unknown entity 'who'"),
            std::string::npos);
  EXPECT_NE(error_of(s + "\n\nview { name = 'v', entity = 'origin', stream = 'flights', features = "
                         "{ count { 'n', window = 'soon' } } }")
                .find("defs.lua:7:"),
            std::string::npos);
  EXPECT_NE(error_of(s + "view { name = 'v', entity = 'origin', stream = 'flights', features = { "
                         "mean { 'm', field = 'origin', window = '1h' } } }")
                .find("needs a numeric field"),
            std::string::npos);
  EXPECT_NE(error_of(s + "view { name = 'v', entity = 'origin', stream = 'flights', features = { "
                         "count { 'n', window = '1h', filter = 'speed > 1' } } }")
                .find("unknown field 'speed'"),
            std::string::npos);
  EXPECT_NE(error_of(s + "view { name = 'v', entity = 'origin', stream = 'flights', features = { "
                         "count { 'n', windw = '1h' } } }")
                .find("unknown key(s) windw"),
            std::string::npos);
  EXPECT_NE(error_of(s + "view { name = 'v', entity = 'origin', stream = 'flights', features = { "
                         "count { 'n', window = '1h' }, count { 'n', window = '2h' } } }")
                .find("duplicate feature name n"),
            std::string::npos);
  EXPECT_NE(error_of("stream { name = 's', time_field = 'x', fields = { x = 'float' } }")
                .find("time_field must name a field of type timestamp"),
            std::string::npos);
  EXPECT_NE(
      error_of(
          "stream { name = 's', time_field = 't', fields = { t = 'timestamp', y = 'complex' } }")
          .find("unknown type 'complex'"),
      std::string::npos);
  EXPECT_NE(error_of("").find("no stream defined"), std::string::npos);
}

TEST(Definitions, SandboxHasNoIoAndBoundsWork) {
  EXPECT_NE(error_of("io.open('/etc/passwd')").find("io"), std::string::npos);
  EXPECT_NE(error_of("os.execute('true')").find("os"), std::string::npos);
  EXPECT_NE(error_of("require('socket')").find("require"), std::string::npos);
  EXPECT_NE(error_of("while true do end").find("instruction limit"), std::string::npos);
  EXPECT_NE(error_of("error('custom failure')").find("custom failure"), std::string::npos);
}

// Reading the declared tables runs their metamethods: one that raises, or never ends, is an
// error naming it (it used to be a Lua panic that aborted the process), and one that supplies a
// value is honoured.
TEST(Definitions, MetamethodsOfDeclaredTablesAreBoundedAndTheirErrorsReported) {
  const std::string fields =
      R"(fields = { date = "timestamp", delay = "float", origin = "text", destination = "text" })";
  auto with_index = [&](const std::string& index) {
    return "stream(setmetatable({ name = 'flights', time_field = 'date', " + fields +
           " }, { __index = " + index + " }))\nentity { name = 'origin', key = 'origin' }\n";
  };
  std::string raised = error_of(with_index("function(_, k) error('no default for ' .. k) end"));
  EXPECT_NE(raised.find("no default for"), std::string::npos) << raised;
  EXPECT_NE(raised.find("defs.lua:1:"), std::string::npos) << raised;
  std::string looped = error_of(with_index("function() while true do end end"));
  EXPECT_NE(looped.find("instruction limit"), std::string::npos) << looped;
  std::string not_text = error_of(with_index("function() error({}) end"));
  EXPECT_NE(not_text.find("not a string"), std::string::npos) << not_text;
  auto r = definitions::load_string("stream(setmetatable({ name = 'flights', " + fields +
                                        " }, { __index = { time_field = 'date' } }))\nentity { "
                                        "name = 'origin', key = 'origin' }\n",
                                    "defs.lua");
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ((*r)->find_stream("flights")->time_field, "date");
}

}  // namespace tessera

namespace tessera {

TEST(Definitions, LabelsAndModelsOfTheFlightsExample) {
  auto r = definitions::load_file(TSR_EXAMPLES_DIR "/flights/flights.lua");
  ASSERT_TRUE(r.ok()) << r.error_message();
  const label_def* l = (*r)->find_label("late");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->entity, "route");
  EXPECT_EQ(l->views.size(), 2u);
  auto cols = l->feature_columns();
  EXPECT_EQ(cols.front(), "distance");
  EXPECT_EQ(cols.back(), "route_delay.mean_delay_7d");
  EXPECT_EQ((*r)->find_label("late_daily")->snapshot_us, 86400LL * 1000000);
  const model_def* m = (*r)->find_model("late_mlp");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->kind, "mlp");
  EXPECT_EQ(m->hidden, (std::vector<int>{32, 16}));
  EXPECT_LT(m->train_from, m->valid_from);
  const stream_def* s = (*r)->find_stream("flights");
  EXPECT_EQ(s->time_field, "arrival");
  EXPECT_NE(s->fields[s->field_index("arrival")].derive, nullptr);
}

TEST(Definitions, BadLabelsAndModelsNameTheProblem) {
  const std::string base = R"lua(
stream { name = "s", time_field = "t", fields = { t = "timestamp", x = "float", k = "text" } }
entity { name = "e", key = "k" }
view { name = "v", entity = "e", stream = "s", features = { count { "n", window = "1h" } } }
)lua";
  auto err = [&](const std::string& extra) {
    auto r = definitions::load_string(base + extra, "d.lua");
    return r.ok() ? std::string("<loaded>") : r.error_message();
  };
  EXPECT_NE(err(R"(label { name = "l", stream = "s", value = "x > 1", features = { "nope" } })")
                .find("d.lua:5: label l: unknown view 'nope'"),
            std::string::npos);
  EXPECT_NE(err(R"(label { name = "l", stream = "s", value = "y > 1", features = { "v" } })")
                .find("unknown field 'y'"),
            std::string::npos);
  EXPECT_NE(err(R"(label { name = "l", stream = "q", value = "x", features = { "v" } })")
                .find("unknown stream 'q'"),
            std::string::npos);
  EXPECT_NE(
      err(R"(label { name = "l", stream = "s", value = "x", features = { "v" }, on_demand = { h = "hour(t" } })")
          .find("on-demand h"),
      std::string::npos);
  const std::string l = R"(label { name = "l", stream = "s", value = "x > 1", features = { "v" } }
)";
  const std::string split =
      R"(split = { train = { "2001-01-01", "2001-02-01" }, validation = { "2001-02-01", "2001-03-01" }, test = { "2001-03-01", "2001-04-01" } })";
  EXPECT_EQ(err(l + "model { name = \"m\", label = \"l\", " + split + " }"), "<loaded>");
  EXPECT_NE(
      err(l + "model { name = \"m\", label = \"zz\", " + split + " }").find("unknown label 'zz'"),
      std::string::npos);
  EXPECT_NE(err(l + "model { name = \"m\", label = \"l\", kind = \"forest\", " + split + " }")
                .find("kind must be"),
            std::string::npos);
  EXPECT_NE(err(l + "model { name = \"m\", label = \"l\", features = { \"v.zz\" }, " + split + " }")
                .find("'v.zz' is not a column"),
            std::string::npos);
  EXPECT_NE(err(l + "model { name = \"m\", label = \"l\" }").find("split = {"), std::string::npos);
  EXPECT_NE(
      err(l +
          R"(model { name = "m", label = "l", split = { train = { "2001-01-01", "2001-02-01" }, validation = { "2001-02-02", "2001-03-01" }, test = { "2001-03-01", "2001-04-01" } } })")
          .find("follow each other"),
      std::string::npos);
  EXPECT_NE(
      err(R"(stream { name = "d", time_field = "a", fields = { t = "timestamp" }, derive = { a = { type = "timestamp", expr = "t + zz" } } })")
          .find("unknown field 'zz'"),
      std::string::npos);
}

TEST(Definitions, DriftWindowsAreOneDurationOrAListOfThem) {
  const std::string base = R"lua(
stream { name = "s", time_field = "t", fields = { t = "timestamp", x = "float", k = "text" } }
entity { name = "e", key = "k" }
view { name = "v", entity = "e", stream = "s", features = { count { "n", window = "1h" } } }
label { name = "l", stream = "s", entity = "e", value = "x > 1", features = { "v" } }
)lua";
  const std::string split =
      R"(split = { train = { "2001-01-01", "2001-02-01" }, validation = { "2001-02-01", "2001-03-01" }, test = { "2001-03-01", "2001-04-01" } })";
  auto load = [&](const std::string& monitor) {
    return definitions::load_string(base + "model { name = \"m\", label = \"l\", " + split +
                                        ", monitor = { " + monitor + " } }",
                                    "d.lua");
  };
  auto windows = [&](const std::string& monitor) {
    auto r = load(monitor);
    EXPECT_TRUE(r.ok()) << r.error_message();
    return r.ok() ? (*r)->models().at(0).monitor.drift_windows_us : std::vector<int64_t>{};
  };
  auto err = [&](const std::string& monitor) {
    auto r = load(monitor);
    return r.ok() ? std::string("<loaded>") : r.error_message();
  };
  constexpr int64_t h = 3600LL * 1000000;
  EXPECT_EQ(windows(""), std::vector<int64_t>{24 * h});
  EXPECT_EQ(windows(R"(drift_window = "12h")"), std::vector<int64_t>{12 * h});
  EXPECT_EQ(windows(R"(drift_window = { "1h", "1d" }, drift_step = "1h")"),
            (std::vector<int64_t>{h, 24 * h}));
  EXPECT_EQ(
      load(R"(drift_window = { "1h", "1d" })").value()->models().at(0).monitor.drift_window_us,
      h);  // the first
  EXPECT_NE(err(R"(drift_window = { "1h", "1h" })").find("twice"), std::string::npos);
  EXPECT_NE(
      err(R"(drift_window = { "1h", 5 })").find("drift_window[2] must be a positive duration"),
      std::string::npos);
  EXPECT_NE(err(R"(drift_window = {})").find("1 to 4 durations"), std::string::npos);
  EXPECT_NE(err(R"(drift_window = { "30m", "1d" }, drift_step = "1h")").find("must divide each"),
            std::string::npos);
  EXPECT_NE(err(R"(drift_window = "soon")").find("drift_window must be a positive duration"),
            std::string::npos);
}

}  // namespace tessera
