// Inference end to end on a real node: the slice replayed, late_mlp trained and promoted, then
// predictions checked against independent references — the dataset build's rows for the same
// flights (the vector, bit for bit) and python3-torch running the exported artifact (the
// score) — plus batching, the prediction log, skew, and every kind of bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "actors/inference/batcher.h"
#include "actors/inference/prediction_log.h"
#include "actors/training/trainer.h"
#include "bus.h"
#include "nats_server.h"
#include "serving_support.h"
#include "test_support.h"

namespace tessera::test {
namespace {

using client::example;
using client::predict_options;

// One dataset row: its cells after prediction_time, entity, label (empty = missing).
struct row {
  std::vector<std::string> cells;
};

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char ch : line) {
    if (ch == '"') {
      quoted = !quoted;
    } else if (ch == ',' && !quoted) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  out.push_back(cur);
  return out;
}

TEST(Inference, PredictsTheDatasetVectorAndPythonTorchScoreForAThousandFlights) {
  serving_node s;
  ASSERT_TRUE(s.ready);
  client::connection& c = *s.c;
  ASSERT_TRUE(serves(c, "late_mlp", 1));

  // The reference rows: the dataset build of label `late` over the test period, every shard.
  std::vector<std::string> columns;
  std::map<std::pair<std::string, int64_t>, std::vector<row>> rows;  // (route, departure)
  for (uint32_t sh = 0; sh < 64; ++sh) {
    auto part = c.dataset_shard("late", sh, kJan8, kJan12);
    ASSERT_TRUE(part) << failure_text(part);
    if (columns.empty())
      for (auto col : (*part)->getColumns()) columns.push_back(col);
    std::string csv(reinterpret_cast<const char*>((*part)->getCsv().begin()),
                    (*part)->getCsv().size());
    std::istringstream in(csv);
    for (std::string line; std::getline(in, line);) {
      auto cells = split_csv(line);
      ASSERT_EQ(cells.size(), columns.size()) << line;
      rows[{cells[1], std::stoll(cells[0])}].push_back({{cells.begin() + 3, cells.end()}});
    }
  }
  auto shown = c.show_model("late_mlp", 1);
  ASSERT_TRUE(shown) << failure_text(shown);
  std::vector<std::string> inputs;
  for (auto in : (*shown)->getInputs()) inputs.push_back(in);
  ASSERT_EQ(inputs.size(), columns.size() - 3);

  // 1,000 departures of the test period, each with exactly one dataset row.
  std::vector<flight> chosen;
  for (const flight& f : slice()) {
    if (f.time < kJan8 || f.time >= kJan12) continue;
    auto it = rows.find({f.origin + "-" + f.destination, f.time});
    if (it == rows.end() || it->second.size() != 1) continue;
    chosen.push_back(f);
    if (chosen.size() == 1000) break;
  }
  ASSERT_EQ(chosen.size(), 1000u);
  std::vector<example> examples;
  for (size_t i = 0; i < chosen.size(); ++i)
    examples.push_back(departure(chosen[i], "parity-" + std::to_string(i)));

  predict_options o;
  o.return_vector = true;
  std::vector<client::prediction> got;
  for (size_t at = 0; at < examples.size(); at += 250) {
    std::vector<example> part(examples.begin() + static_cast<long>(at),
                              examples.begin() + static_cast<long>(at + 250));
    auto r = c.predict("late_mlp", part, o);
    ASSERT_TRUE(r) << failure_text(r);
    ASSERT_EQ(r->size(), part.size());
    for (auto& p : *r) got.push_back(std::move(p));
  }

  // The vector each prediction used is the dataset row's, bit for bit (as the model's floats).
  size_t mismatches = 0;
  std::ofstream py_rows(s.dir.path + "/rows.csv");
  for (size_t i = 0; i < chosen.size(); ++i) {
    const client::prediction& p = got[i];
    ASSERT_TRUE(p.ok()) << p.error;
    EXPECT_EQ(p.version, 1u);
    EXPECT_EQ(p.stage, "production");
    EXPECT_EQ(p.path, "model");
    EXPECT_EQ(p.request_id, "parity-" + std::to_string(i));
    EXPECT_EQ(p.prediction_time, chosen[i].time);
    ASSERT_EQ(p.features.size(), inputs.size());
    const row& ref = rows[{chosen[i].origin + "-" + chosen[i].destination, chosen[i].time}][0];
    for (size_t j = 0; j < inputs.size(); ++j) {
      EXPECT_EQ(p.features[j].name, inputs[j]);
      const std::string& cell = ref.cells[j];  // dataset columns are the model's inputs here
      const float want = cell.empty() ? std::nanf("") : static_cast<float>(std::stod(cell));
      const float have = static_cast<float>(p.features[j].value);
      const bool same =
          (std::isnan(want) && std::isnan(have)) || std::memcmp(&want, &have, sizeof want) == 0;
      if (!same && ++mismatches <= 10)
        ADD_FAILURE() << "flight " << i << " " << inputs[j] << ": predict used " << have
                      << ", the dataset row has " << cell;
      py_rows << (j ? "," : "") << (cell.empty() ? "" : cell);
    }
    py_rows << "\n";
  }
  py_rows.close();
  EXPECT_EQ(mismatches, 0u);

  // The score is what python3-torch computes from the exported artifact on the dataset row.
  auto artifact = c.export_model("late_mlp", 1);
  ASSERT_TRUE(artifact) << failure_text(artifact);
  std::ofstream(s.dir.path + "/m.pt", std::ios::binary) << artifact->artifact;
  const std::string cmd =
      "/usr/bin/python3 " TSR_SOURCE_DIR "/tests/training/score_torchscript.py " + s.dir.path +
      "/m.pt " + s.dir.path + "/rows.csv > " + s.dir.path + "/py_scores.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream py(s.dir.path + "/py_scores.txt");
  double max_diff = 0;
  for (size_t i = 0; i < chosen.size(); ++i) {
    double ref;
    ASSERT_TRUE(py >> ref) << "python scored fewer rows than " << chosen.size();
    max_diff = std::max(max_diff, std::fabs(ref - got[i].score));
  }
  // float32 probabilities printed with 9 digits: equal up to the print and the batched kernel.
  EXPECT_LE(max_diff, 1e-6);
  std::cerr << "predict vs python3-torch: max |score difference| " << max_diff << "\n";

  // Batched answers equal unbatched ones (one forward pass per example).
  predict_options alone = o;
  alone.no_batch = true;
  alone.return_vector = false;
  auto single = c.predict("late_mlp", examples, alone);
  ASSERT_TRUE(single) << failure_text(single);
  double batch_diff = 0;
  size_t exact = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    ASSERT_TRUE((*single)[i].ok()) << (*single)[i].error;
    batch_diff = std::max(batch_diff, std::fabs((*single)[i].score - got[i].score));
    exact += (*single)[i].score == got[i].score;
  }
  EXPECT_LE(batch_diff, 1e-6);
  std::cerr << "batched vs unbatched: " << exact << " of " << examples.size()
            << " scores identical, max |difference| " << batch_diff << "\n";

  // Every prediction is in the log (2,000 so far), with its exact vector; skew finds none.
  std::vector<std::string> logged;
  ASSERT_TRUE(eventually(
      [&] {
        auto page = c.tail_predictions("late_mlp", 3000);
        if (!page) return false;
        logged = page->records;
        return logged.size() >= 2000;
      },
      std::chrono::seconds(30)))
      << logged.size() << " records logged";
  auto rec = nlohmann::json::parse(logged.back());
  EXPECT_EQ(rec["model"], "late_mlp");
  EXPECT_EQ(rec["version"], 1);
  EXPECT_EQ(rec["vector"].size(), inputs.size());
  std::set<std::string> ids;
  for (auto& l : logged) ids.insert(nlohmann::json::parse(l)["request_id"].get<std::string>());
  EXPECT_EQ(ids.size(), 1000u);  // each flight twice (batched and unbatched)
  auto skew = c.skew("late_mlp", 2000);
  ASSERT_TRUE(skew) << failure_text(skew);
  auto report = nlohmann::json::parse(*skew);
  EXPECT_EQ(report["compared"], 2000) << *skew;
  EXPECT_EQ(report["mismatched_examples"], 0) << *skew;
  EXPECT_EQ(report["features"].size(), inputs.size()) << *skew;

  // The CLI, through the client: one departure, and a file of ten in input order.
  const std::string rpc = " --rpc " + s.h->rpc();
  auto iso = [](int64_t us) {
    char buf[32];
    const time_t secs = static_cast<time_t>(us / 1000000);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&secs));
    return std::string(buf);
  };
  auto fields = [&](const flight& f) {
    std::ostringstream o;
    o.precision(17);
    o << "origin=" << f.origin << " destination=" << f.destination << " distance=" << f.distance
      << " date=" << iso(f.time);
    return o.str();
  };
  std::string out;
  ASSERT_EQ(chosen[0].time % 1000000, 0);
  ASSERT_EQ(run_cli("predict --json late_mlp " + fields(chosen[0]) + rpc, &out), 0) << out;
  auto one = nlohmann::json::parse(out.substr(out.find('{')), nullptr, false);
  ASSERT_FALSE(one.is_discarded()) << out;
  EXPECT_EQ(one["score"].get<double>(), got[0].score) << out;
  EXPECT_EQ(one["version"], 1) << out;
  {
    std::ofstream csv(s.dir.path + "/departures.csv");
    csv.precision(17);
    csv << "origin,destination,distance,date\n";
    for (size_t i = 0; i < 10; ++i)
      csv << chosen[i].origin << "," << chosen[i].destination << "," << chosen[i].distance << ","
          << iso(chosen[i].time) << "\n";
  }
  ASSERT_EQ(run_cli("predict --quiet --file " + s.dir.path + "/departures.csv late_mlp" + rpc +
                        " > " + s.dir.path + "/scores.jsonl",
                    &out),
            0)
      << out;
  std::ifstream scores(s.dir.path + "/scores.jsonl");
  size_t lines = 0;
  for (std::string line; std::getline(scores, line); ++lines) {
    if (line.empty() || line[0] != '{') {  // the summary on stderr (run_cli merges them)
      --lines;
      continue;
    }
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    ASSERT_LT(lines, 10u);
    EXPECT_EQ(j["score"].get<double>(), got[lines].score) << line;
    EXPECT_EQ(j["path"], "model");
  }
  EXPECT_EQ(lines, 10u);
  ASSERT_EQ(run_cli("predictions tail late_mlp -n 3" + rpc, &out), 0) << out;
  EXPECT_NE(out.find("\"model\":\"late_mlp\""), std::string::npos) << out;
  ASSERT_EQ(run_cli("skew late_mlp --sample 100" + rpc, &out), 0) << out;

  // Status: the version served, its requests and latencies.
  auto st = c.status();
  ASSERT_TRUE(st) << failure_text(st);
  ASSERT_GE((*st)->getModels().size(), 1u);
  auto m = (*st)->getModels()[0];
  EXPECT_EQ(m.getModel(), "late_mlp");
  EXPECT_EQ(m.getRequests(), 2011u);
  EXPECT_EQ(m.getErrors(), 0u);
  EXPECT_GT(m.getP99Micros(), 0);
  EXPECT_GE(m.getMeanBatch(), 1);
}

std::string special_model(const std::string& dir, const std::string& kind) {
  const std::string path = dir + "/" + kind + ".pt";
  const std::string cmd = "/usr/bin/python3 " TSR_SOURCE_DIR
                          "/tests/training/make_special_torchscript.py " +
                          path + " 11 " + kind;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const flight& some_flight(double min_distance, double max_distance) {
  for (const flight& f : slice())
    if (f.time >= kJan8 && f.distance >= min_distance && f.distance <= max_distance) return f;
  return slice().back();
}

TEST(Inference, BadInputGetsAClearErrorPerExampleOrCallAndTheOldVersionKeepsServing) {
  serving_node s;
  ASSERT_TRUE(s.ready);
  client::connection& c = *s.c;
  ASSERT_TRUE(serves(c, "late_mlp", 1));
  const flight& near = some_flight(0, 800);
  const flight& far = some_flight(2100, 5000);

  // Unknown model: the call fails, not found.
  auto r = c.predict("nope", {departure(near)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error_code(), errc::not_found);
  EXPECT_NE(r.error_message().find("unknown model 'nope'"), std::string::npos) << failure_text(r);

  // No production version: the error lists the stages that exist.
  ASSERT_TRUE(c.import_model("odd", "late", special_model(s.dir.path, "nan_when_far")));
  r = c.predict("odd", {departure(near)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error_code(), errc::not_found);
  EXPECT_NE(r.error_message().find("no production version (versions: 1 candidate)"),
            std::string::npos)
      << failure_text(r);

  // Examples fail alone: a missing key field, a wrong type, an unknown field, a prediction time
  // outside the retained window; the good example in the same call is scored.
  example missing = departure(near);
  missing.fields.erase(missing.fields.begin() + 1);  // destination
  example wrong = departure(near);
  wrong.fields[2].second = std::string("far");  // distance
  example unknown = departure(near);
  unknown.fields.push_back({"gate", std::string("B12")});
  example old = departure(near);
  old.as_of = 946684800000000;  // 2000-01-01, a year before the slice
  r = c.predict("late_mlp", {departure(near), missing, wrong, unknown, old});
  ASSERT_TRUE(r) << failure_text(r);
  ASSERT_EQ(r->size(), 5u);
  EXPECT_TRUE((*r)[0].ok()) << (*r)[0].error;
  EXPECT_EQ((*r)[1].code, errc::invalid);
  EXPECT_NE((*r)[1].error.find("field destination: missing entity key field for route"),
            std::string::npos)
      << (*r)[1].error;
  EXPECT_EQ((*r)[2].code, errc::invalid);
  EXPECT_NE((*r)[2].error.find("field distance: expected float, got 'far'"), std::string::npos)
      << (*r)[2].error;
  EXPECT_EQ((*r)[3].code, errc::invalid);
  EXPECT_NE((*r)[3].error.find("field gate: not a field of stream flights"), std::string::npos)
      << (*r)[3].error;
  EXPECT_EQ((*r)[4].code, errc::invalid);
  EXPECT_NE((*r)[4].error.find("before the retained window"), std::string::npos) << (*r)[4].error;

  // Stale features refused under a bound: the route's last flight is hours before departure.
  predict_options strict;
  strict.max_feature_age_us = 1;  // 1 µs: every feature is older
  r = c.predict("late_mlp", {departure(near)}, strict);
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_EQ((*r)[0].code, errc::invalid);
  EXPECT_NE((*r)[0].error.find("over the bound"), std::string::npos) << (*r)[0].error;

  // A NaN score is an error of that example, counted.
  ASSERT_TRUE(c.promote_model("odd", 1, "production"));
  ASSERT_TRUE(serves(c, "odd", 1));
  r = c.predict("odd", {departure(near), departure(far)});
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_TRUE((*r)[0].ok()) << (*r)[0].error;
  EXPECT_EQ((*r)[0].score, 0.25);
  EXPECT_EQ((*r)[1].code, errc::internal);
  EXPECT_NE((*r)[1].error.find("non-finite score"), std::string::npos) << (*r)[1].error;

  // A version that fails to load (its warm-up throws) leaves the previous one serving, and
  // status says why.
  auto v2 = c.import_model("odd", "late", special_model(s.dir.path, "throws_alone"));
  ASSERT_TRUE(v2) << failure_text(v2);
  ASSERT_TRUE(c.promote_model("odd", *v2, "production"));
  std::string load_error;
  ASSERT_TRUE(eventually(
      [&] {
        auto st = c.status();
        if (!st) return false;
        for (auto m : (*st)->getModels())
          if (m.getModel() == "odd" && m.getLoadError().size()) load_error = m.getLoadError();
        return !load_error.empty();
      },
      std::chrono::seconds(30)));
  EXPECT_NE(load_error.find("version 2 not served"), std::string::npos) << load_error;
  EXPECT_NE(load_error.find("only scores pairs"), std::string::npos) << load_error;
  r = c.predict("odd", {departure(near)});
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_TRUE((*r)[0].ok()) << (*r)[0].error;
  EXPECT_EQ((*r)[0].version, 1u);

  // Deadline exceeded: the model takes ~0.4 s for a far flight; the call allows 50 ms.
  auto v3 = c.import_model("odd", "late", special_model(s.dir.path, "slow_when_far"));
  ASSERT_TRUE(v3) << failure_text(v3);
  ASSERT_TRUE(c.promote_model("odd", *v3, "production"));
  ASSERT_TRUE(serves(c, "odd", *v3));
  predict_options hurry;
  hurry.deadline = std::chrono::milliseconds(50);
  r = c.predict("odd", {departure(near), departure(far)}, hurry);
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_EQ((*r)[1].code, errc::deadline) << (*r)[1].error << " / " << (*r)[0].error;
  hurry.deadline = std::chrono::milliseconds(5000);
  r = c.predict("odd", {departure(near)}, hurry);  // the same model in time
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_TRUE((*r)[0].ok()) << (*r)[0].error;

  // Errors are counted per version in status (the version serving now: the deadline error).
  auto st = c.status();
  ASSERT_TRUE(st) << failure_text(st);
  uint64_t errors = 0;
  for (auto m : (*st)->getModels())
    if (m.getModel() == "odd") errors += m.getErrors();
  EXPECT_GE(errors, 1u);
}

// A full queue refuses at once with overloaded and a retry-after; what it accepted is answered.
TEST(Inference, AFullModelQueueRefusesAtOnceAndAnswersEverythingItAccepted) {
  temp_dir dir;
  auto model = torchscript_model::load(special_model(dir.path, "slow_when_far"), 11);
  ASSERT_TRUE(model) << failure_text(model);
  batcher::options o;
  o.max_batch = 1;
  o.max_queued_rows = 4;
  auto b = std::make_unique<batcher>(**model, o);
  std::atomic<int> answered{0};
  auto row = [](float distance) {
    std::vector<float> x(11, 0.f);
    x[0] = distance;
    return x;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  auto done = [&](status st, const float* scores) {
    EXPECT_TRUE(st) << failure_text(st);
    if (st) EXPECT_EQ(scores[0], 0.75f);
    ++answered;
  };
  int accepted = 0;
  status refused = ok_status();
  for (int i = 0; i < 20 && refused; ++i) {  // slow rows: the worker falls behind at once
    refused = b->submit(row(2500), 1, false, deadline, done);
    accepted += refused ? 1 : 0;
  }
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error_code(), errc::overloaded);
  EXPECT_NE(refused.error_message().find("retry after"), std::string::npos)
      << refused.error_message();
  EXPECT_LE(accepted, 5);  // the queue's 4 rows and the one being scored: bounded memory
  EXPECT_TRUE(eventually([&] { return answered == accepted; }, std::chrono::seconds(60)));
}

// The prediction log never makes a request wait: past its buffer, records are dropped and
// counted; what it accepted is written and read back in order.
TEST(Inference, APredictionLogPastItsBufferDropsAndCountsAndWritesWhatItAccepted) {
  temp_dir dir;
  auto nats = embedded_nats::start(dir.path + "/nats");
  ASSERT_TRUE(nats) << nats.error_message();
  auto b = bus::connect({(*nats)->url(), "logtest", 1});
  ASSERT_TRUE(b) << b.error_message();
  prediction_log::options o;
  o.max_records = 16;
  auto log = prediction_log::start((*b)->jetstream(), o);
  ASSERT_TRUE(log) << log.error_message();
  const int n = 20000;
  int accepted = 0;
  std::string last_accepted;
  for (int i = 0; i < n; ++i) {
    prediction_record r;
    r.model = "m";
    r.request_id = std::to_string(i);
    r.vector = {1.5, std::nan("")};
    if ((*log)->append(std::move(r))) {
      ++accepted;
      last_accepted = std::to_string(i);
    }
  }
  EXPECT_EQ((*log)->appended() + (*log)->drops(), static_cast<uint64_t>(n));
  EXPECT_GT((*log)->drops(), 0u);  // 20,000 appends outrun a writer publishing to JetStream
  ASSERT_TRUE((*log)->flush(std::chrono::seconds(60)));
  EXPECT_EQ((*log)->written(), static_cast<uint64_t>(accepted));
  auto page = (*log)->tail("m", 3, 0);
  ASSERT_TRUE(page) << failure_text(page);
  ASSERT_EQ(page->records.size(), 3u);
  auto rec = nlohmann::json::parse(page->records.back());
  EXPECT_EQ(rec["request_id"], last_accepted);
  EXPECT_EQ(rec["vector"], nlohmann::json::parse("[1.5, null]"));
  auto all = (*log)->tail("m", 100000, 0);
  ASSERT_TRUE(all) << failure_text(all);
  EXPECT_EQ(all->records.size(), static_cast<size_t>(accepted));
  (*log)->stop();
}

}  // namespace
}  // namespace tessera::test
