// `tessera predict`, `predictions tail` and `skew` run as a user runs them (the built binary),
// against a stand-in gateway whose Inference answers from the examples alone: a row's score is
// its distance / 1000, a row with fail=yes fails with `invalid`, one call in three is slow so
// that calls end out of order. The node's own inference comes with the inference family; these
// tests hold the CLI's side of the contract: one line per row in input order, per-row errors,
// the calls in flight, options on the wire, whole-call errors and their exit codes.
#include <capnp/ez-rpc.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/timer.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "rpc_edge.h"
#include "schemas/gateway.capnp.h"
#include "schemas/inference.capnp.h"
#include "test_support.h"

namespace tessera::test {
namespace {

constexpr int64_t kDefaultTime = 991382400000000LL;  // 2001-06-01T08:00:00Z

// What the stand-in saw. Written on its kj thread, read by the test after the CLI exited.
struct seen {
  std::mutex mu;
  int in_flight = 0, max_in_flight = 0, calls = 0;
  std::vector<int> finished;  // call numbers (in order of arrival), in order of completion
  size_t examples = 0;
  std::vector<std::vector<std::pair<std::string, std::string>>> first_fields;  // of each call
  uint32_t version = 0, deadline_ms = 0;
  int64_t max_feature_age = 0, as_of = -1;
  bool return_vector = false;
  uint64_t log_seq = 25;  // the prediction log: records 1..log_seq; each tail call adds one
};

std::string text_of(wire::Value::Reader v) {
  switch (v.which()) {
    case wire::Value::TEXT:
      return v.getText();
    case wire::Value::INT:
      return "int:" + std::to_string(v.getInt());
    case wire::Value::FLOAT:
      return "float:" + std::to_string(v.getFloat());
    default:
      return "?";
  }
}

class stand_in_inference final : public wire::Inference::Server {
 public:
  stand_in_inference(kj::Timer& timer, seen& s) : timer_(timer), seen_(s) {}

  kj::Promise<void> predict(PredictContext ctx) override {
    auto p = ctx.getParams();
    if (p.getModel() != "late_mlp")
      throw_rpc_error("unknown model '" + std::string(p.getModel().cStr()) + "'", errc::not_found);
    int call;
    {
      std::lock_guard<std::mutex> l(seen_.mu);
      call = seen_.calls++;
      seen_.max_in_flight = std::max(seen_.max_in_flight, ++seen_.in_flight);
      auto o = p.getOptions();
      seen_.version = o.getVersion();
      seen_.deadline_ms = o.getDeadlineMs();
      seen_.max_feature_age = o.getMaxFeatureAge();
      seen_.return_vector = o.getReturnVector();
      seen_.examples += p.getExamples().size();
      std::vector<std::pair<std::string, std::string>> fields;
      for (auto f : p.getExamples()[0].getFields())
        fields.emplace_back(f.getName(), text_of(f.getValue()));
      seen_.first_fields.push_back(fields);
      seen_.as_of = p.getExamples()[0].getAsOf();
    }
    auto delay = (call % 3 == 0 ? 60 : 2) * kj::MILLISECONDS;
    return timer_.afterDelay(delay).then([this, ctx, call]() mutable {
      auto p = ctx.getParams();
      auto ex = p.getExamples();
      auto out = ctx.getResults().initPredictions(ex.size());
      for (unsigned i = 0; i < ex.size(); ++i) {
        std::map<std::string, std::string> fields;
        for (auto f : ex[i].getFields()) fields[f.getName()] = text_of(f.getValue());
        auto r = out[i];
        r.setRequestId(ex[i].getRequestId());
        r.setVersion(3);
        r.setStage("production");
        r.setPath("model");
        r.setNode("stand-in");
        r.setLatencyUs(1500);
        r.setPredictionTime(ex[i].getAsOf() ? ex[i].getAsOf() : kDefaultTime);
        if (fields["fail"] == "yes") {
          r.setError("feature route_delay.mean_1h is 2h old (max 10m)");
          r.setCode(static_cast<uint8_t>(errc::invalid));
          continue;
        }
        std::string d = fields["distance"];
        if (d.rfind("int:", 0) == 0) d = d.substr(4);
        r.setScore(std::stod(d) / 1000);
        if (p.getOptions().getReturnVector()) {
          auto fs = r.initFeatures(2);
          fs[0].setName("dep_hour");
          fs[0].setValue(8);
          fs[0].setAge(-1);
          fs[0].setStatus(wire::Status::FRESH);
          fs[1].setName("route_delay.mean_1h");
          fs[1].setValue(NAN);
          fs[1].setEventTime(kDefaultTime - 3'600'000'000);
          fs[1].setAge(3'600'000'000);
          fs[1].setStatus(wire::Status::STALE);
        }
      }
      std::lock_guard<std::mutex> l(seen_.mu);
      --seen_.in_flight;
      seen_.finished.push_back(call);
    });
  }

  kj::Promise<void> tailPredictions(TailPredictionsContext ctx) override {
    auto p = ctx.getParams();
    std::lock_guard<std::mutex> l(seen_.mu);
    uint64_t last = seen_.log_seq;
    uint64_t from = p.getAfterSeq() ? p.getAfterSeq() + 1
                                    : (last >= p.getLimit() ? last - p.getLimit() + 1 : 1);
    uint64_t to = std::min<uint64_t>(last, from + p.getLimit() - 1);
    auto recs = ctx.getResults().initRecords(to >= from ? static_cast<unsigned>(to - from + 1) : 0);
    for (uint64_t s = from; s <= to; ++s) {
      auto rec = nlohmann::json{{"seq", s}, {"model", p.getModel().cStr()}}.dump();
      recs.set(static_cast<unsigned>(s - from), rec.c_str());
    }
    ctx.getResults().setLastSeq(to >= from ? to : p.getAfterSeq());
    ++seen_.log_seq;  // a prediction made meanwhile
    return kj::READY_NOW;
  }

  kj::Promise<void> skew(SkewContext ctx) override {
    auto sample = ctx.getParams().getSample();
    auto report =
        nlohmann::json{
            {"model", ctx.getParams().getModel().cStr()},
            {"version", 3},
            {"sampled", sample},
            {"compared", sample},
            {"skipped", 0},
            {"mismatched_examples", 1},
            {"features",
             {{{"name", "route_delay.mean_1h"},
               {"compared", sample},
               {"mismatches", 1},
               {"max_abs_diff", 2.5},
               {"examples", {{{"request_id", "r-1"}, {"logged", 4}, {"offline", 6.5}}}}}}},
            {"skipped_reasons", nlohmann::json::object()}}
            .dump();
    ctx.getResults().setJson(report.c_str());
    return kj::READY_NOW;
  }

 private:
  kj::Timer& timer_;
  seen& seen_;
};

class stand_in_gateway_impl final : public wire::Gateway::Server {
 public:
  explicit stand_in_gateway_impl(seen& s) : seen_(s) {}
  void set_timer(kj::Timer& t) { inference_ = kj::heap<stand_in_inference>(t, seen_); }
  kj::Promise<void> inference(InferenceContext ctx) override {
    ctx.getResults().setInference(inference_);
    return kj::READY_NOW;
  }

 private:
  seen& seen_;
  wire::Inference::Client inference_ = nullptr;
};

// The stand-in on its own kj thread, on a free loopback port; stops when destroyed.
struct stand_in_gateway {
  stand_in_gateway() {
    std::mutex mu;
    std::condition_variable cv;
    thread = std::thread([&] {
      auto impl = kj::heap<stand_in_gateway_impl>(state);
      auto* raw = impl.get();
      capnp::EzRpcServer server(kj::mv(impl), "127.0.0.1", 0);
      raw->set_timer(server.getIoProvider().getTimer());
      auto& ws = server.getWaitScope();
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard<std::mutex> l(mu);
        port = server.getPort().wait(ws);
        stop = kj::mv(paf.fulfiller);
        cv.notify_all();
      }
      paf.promise.wait(ws);
    });
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return port != 0; });
  }
  ~stand_in_gateway() {
    stop->fulfill();
    thread.join();
  }
  std::string rpc() const { return "127.0.0.1:" + std::to_string(port); }

  seen state;
  unsigned port = 0;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;
  std::thread thread;
};

struct cli_run {
  int code = -1;
  std::string out, err;
  std::vector<nlohmann::json> lines() const {
    std::vector<nlohmann::json> v;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) v.push_back(nlohmann::json::parse(l));
    return v;
  }
};

// The binary with `args`: stdout and stderr apart.
cli_run run(const std::string& args, const std::string& dir) {
  cli_run r;
  const std::string err_path = dir + "/stderr.txt";
  std::string cmd = std::string(TSR_BINARY) + " " + args + " 2>" + err_path;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_path);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  return r;
}

TEST(PredictCli, AFileComesBackOneLinePerRowInInputOrderWhateverOrderTheCallsEndIn) {
  temp_dir dir;
  stand_in_gateway g;
  // 101 rows: every 17th fails at the node, row 51 has a column too many (never sent).
  const std::string csv = dir.path + "/examples.csv";
  {
    std::ofstream f(csv);
    f << "origin,destination,distance,date,fail\n";
    for (int row = 1; row <= 101; ++row) {
      if (row == 51) {
        f << "LAX,SFO,1,2001-06-01T08:00:00Z,no,extra\n";
        continue;
      }
      f << "LAX,SFO," << row * 10 << ",2001-06-01T08:00:00Z," << (row % 17 == 0 ? "yes" : "no")
        << "\n";
    }
  }
  auto r = run(
      "predict --quiet --batch 7 --concurrency 3 --rpc " + g.rpc() + " --file " + csv + " late_mlp",
      dir.path);
  EXPECT_EQ(r.code, 1) << r.err;  // some rows failed
  auto lines = r.lines();
  ASSERT_EQ(lines.size(), 101u) << r.out << r.err;
  for (int row = 1; row <= 101; ++row) {
    const auto& l = lines[static_cast<size_t>(row - 1)];
    EXPECT_EQ(l["request_id"], std::to_string(row)) << l;
    if (row == 51) {
      EXPECT_TRUE(l["score"].is_null()) << l;
      EXPECT_EQ(l["code"], "invalid") << l;
      EXPECT_EQ(l["error"], "line 52: has 6 columns, the header has 5") << l;
    } else if (row % 17 == 0) {
      EXPECT_TRUE(l["score"].is_null()) << l;
      EXPECT_EQ(l["code"], "invalid") << l;
      EXPECT_EQ(l["error"], "feature route_delay.mean_1h is 2h old (max 10m)") << l;
    } else {
      EXPECT_DOUBLE_EQ(l["score"].get<double>(), row * 10 / 1000.0) << l;
      EXPECT_EQ(l["version"], 3) << l;
      EXPECT_EQ(l["stage"], "production") << l;
      EXPECT_EQ(l["path"], "model") << l;
      EXPECT_FALSE(l.contains("error")) << l;
    }
  }
  EXPECT_NE(r.err.find("predicted 101 rows with late_mlp"), std::string::npos) << r.err;
  // Rows 17, 34, 68 and 85 at the node, and the unreadable row 51.
  EXPECT_NE(r.err.find(", 5 failed"), std::string::npos) << r.err;
  EXPECT_NE(
      r.err.find("  row 17, line 18: invalid: feature route_delay.mean_1h is 2h old (max 10m)\n"
                 "  row 34, line 35: invalid: feature"),
      std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("  row 51, line 52: invalid: has 6 columns, the header has 5\n"),
            std::string::npos)
      << r.err;

  std::lock_guard<std::mutex> l(g.state.mu);
  EXPECT_EQ(g.state.examples, 100u);  // the unreadable row was not sent
  EXPECT_EQ(g.state.calls, 15);       // ceil(101 / 7)
  EXPECT_LE(g.state.max_in_flight, 3);
  EXPECT_GE(g.state.max_in_flight, 2);
  EXPECT_FALSE(std::is_sorted(g.state.finished.begin(), g.state.finished.end()))
      << "the calls ended in the order they were sent: the test shows nothing about ordering";
  // Fields go as the file has them: text, for the node to parse.
  ASSERT_FALSE(g.state.first_fields.empty());
  EXPECT_EQ(g.state.first_fields[0][2], (std::pair<std::string, std::string>{"distance", "10"}));
}

TEST(PredictCli, JsonLinesKeepTheirTypesAndAsOfAppliesToEveryRow) {
  temp_dir dir;
  stand_in_gateway g;
  const std::string path = dir.path + "/examples.jsonl.gz";
  {
    gzFile f = gzopen(path.c_str(), "wb");
    for (int row = 1; row <= 5; ++row) {
      std::string line = nlohmann::json{{"origin", "LAX"}, {"distance", row * 100}}.dump() + "\n";
      gzwrite(f, line.data(), static_cast<unsigned>(line.size()));
    }
    gzclose(f);
  }
  auto r = run("predict --quiet --as-of 2001-06-02T00:00:00Z --rpc " + g.rpc() + " --file " + path +
                   " late_mlp",
               dir.path);
  EXPECT_EQ(r.code, 0) << r.err;
  auto lines = r.lines();
  ASSERT_EQ(lines.size(), 5u) << r.out << r.err;
  for (int row = 1; row <= 5; ++row) {
    EXPECT_DOUBLE_EQ(lines[static_cast<size_t>(row - 1)]["score"].get<double>(), row / 10.0);
    EXPECT_EQ(lines[static_cast<size_t>(row - 1)]["prediction_time"], "2001-06-02T00:00:00Z");
  }
  std::lock_guard<std::mutex> l(g.state.mu);
  EXPECT_EQ(g.state.as_of, 991440000000000LL);  // Python's datetime
  // A JSON number stays a number (the file's line had "distance":100).
  const auto& sent = g.state.first_fields[0];
  EXPECT_NE(std::find(sent.begin(), sent.end(),
                      std::pair<std::string, std::string>{"distance", "int:100"}),
            sent.end());
}

TEST(PredictCli, OneExampleSendsItsFieldsAsTextWithTheOptionsGiven) {
  temp_dir dir;
  stand_in_gateway g;
  auto r =
      run("predict --json --vector --version 3 --deadline-ms 250 --max-feature-age 10m --rpc " +
              g.rpc() + " late_mlp origin=LAX distance=337 date=2001-06-01T08:00:00Z",
          dir.path);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["score"].get<double>(), 0.337);
  EXPECT_EQ(j["version"], 3);
  EXPECT_EQ(j["node"], "stand-in");
  EXPECT_EQ(j["prediction_time"], "2001-06-01T08:00:00Z");
  ASSERT_EQ(j["features"].size(), 2u);
  EXPECT_TRUE(j["features"][1]["value"].is_null());
  EXPECT_EQ(j["features"][1]["status"], "stale");
  {
    std::lock_guard<std::mutex> l(g.state.mu);
    EXPECT_EQ(g.state.version, 3u);
    EXPECT_EQ(g.state.deadline_ms, 250u);
    EXPECT_EQ(g.state.max_feature_age, 600'000'000);
    EXPECT_TRUE(g.state.return_vector);
    EXPECT_EQ(g.state.as_of, 0);
    EXPECT_EQ(g.state.first_fields[0],
              (std::vector<std::pair<std::string, std::string>>{
                  {"origin", "LAX"}, {"distance", "337"}, {"date", "2001-06-01T08:00:00Z"}}));
  }

  auto human =
      run("predict --vector --rpc " + g.rpc() + " late_mlp origin=LAX distance=337", dir.path);
  ASSERT_EQ(human.code, 0) << human.err;
  EXPECT_NE(human.out.find("score            0.337000\n"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("route_delay.mean_1h"), std::string::npos) << human.out;
}

TEST(PredictCli, AFailedExampleOrCallSaysWhyAndExitsTwo) {
  temp_dir dir;
  stand_in_gateway g;
  auto failed = run("predict --rpc " + g.rpc() + " late_mlp distance=1 fail=yes", dir.path);
  EXPECT_EQ(failed.code, 2);
  EXPECT_NE(failed.err.find("error (invalid): feature route_delay.mean_1h is 2h old"),
            std::string::npos)
      << failed.err;

  auto unknown = run("predict --rpc " + g.rpc() + " nope distance=1", dir.path);
  EXPECT_EQ(unknown.code, 2);
  EXPECT_TRUE(unknown.out.empty()) << unknown.out;
  EXPECT_NE(unknown.err.find("error: unknown model 'nope'"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("tessera models list"), std::string::npos) << unknown.err;

  const std::string csv = dir.path + "/x.csv";
  std::ofstream(csv) << "distance\n1\n2\n";
  auto file = run("predict --quiet --rpc " + g.rpc() + " --file " + csv + " nope", dir.path);
  EXPECT_EQ(file.code, 2);
  EXPECT_TRUE(file.out.empty()) << file.out;
  EXPECT_NE(file.err.find("predict of rows 1-2 (lines 2-3) failed"), std::string::npos) << file.err;

  auto bad = run("predict --rpc " + g.rpc() + " late_mlp origin LAX", dir.path);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("'origin' is not FIELD=VALUE"), std::string::npos) << bad.err;
}

TEST(PredictionsCli, TailPrintsTheLastRecordsAndFollowPrintsEachNewOneOnce) {
  temp_dir dir;
  stand_in_gateway g;
  auto r = run("predictions tail -n 3 --rpc " + g.rpc() + " late_mlp", dir.path);
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = r.lines();
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0]["seq"], 23);
  EXPECT_EQ(lines[2]["seq"], 25);

  // The stand-in logs one more prediction per call: --follow must print each once, in order.
  auto f = run("predictions tail -n 2 --follow --rpc " + g.rpc() +
                   " late_mlp & pid=$!; sleep 3; "
                   "kill $pid",
               dir.path);
  auto followed = f.lines();
  ASSERT_GE(followed.size(), 3u) << f.out << f.err;
  EXPECT_EQ(followed[0]["seq"], 25);  // 26 after the first tail call above
  for (size_t i = 1; i < followed.size(); ++i)
    EXPECT_EQ(followed[i]["seq"], followed[i - 1]["seq"].get<uint64_t>() + 1) << f.out;
}

TEST(SkewCli, PrintsTheReportAsATableOrAsJson) {
  temp_dir dir;
  stand_in_gateway g;
  auto table = run("skew --sample 50 --rpc " + g.rpc() + " late_mlp", dir.path);
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("skew of late_mlp version 3: 50 logged predictions sampled, 50 "
                           "compared, 0 skipped\n"),
            std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("    request r-1: served 4, offline 6.5\n"), std::string::npos)
      << table.out;

  auto json = run("skew --json --rpc " + g.rpc() + " late_mlp", dir.path);
  ASSERT_EQ(json.code, 0) << json.err;
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["sampled"], 1000);  // the default --sample
  EXPECT_EQ(j["features"][0]["max_abs_diff"], 2.5);
}

}  // namespace
}  // namespace tessera::test
