// Time to compute drift over a prediction log (issue 17: "time to compute drift for 3M
// predictions over the flights features"; Evidently users report hours for 3M rows x 1k columns).
//
//   bench_drift [ROWS] [COLS] [WIDE_COLS]
// Defaults: 3,000,000 rows; 12 columns (late_mlp's inputs) plus the score; 1,000 wide columns.
//
// Synthetic predictions, one a second of event time (35 days for 3M), each column a normal
// value, the last 20% of rows shifted in three columns. References: deciles of the first 100k
// rows (training's describe_distribution). Three figures, each in this process:
//   1. reading only: the prediction log's JSON lines fully parsed (a DOM), and read as the
//      monitoring service reads them (SAX, only the fields it uses: the baseline, what reading
//      the log costs anyway);
//   2. reading + drift: the same, fed to the drift monitor (1-day windows tested every hour);
//   3. drift only, WIDE_COLS columns: values generated on the fly into the monitor (no JSON).
// Each printed as rows/s and seconds for ROWS, with the drift monitor's verdict (which columns
// alarm) so that the work is not optimised away.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/monitoring/drift_monitor.h"
#include "actors/monitoring/logged_prediction.h"
#include "evaluation.h"

using namespace tessera;
using namespace tessera::monitoring;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// A cheap generator of standard normal values (the Box-Muller of a xorshift).
struct fast_normal {
  uint64_t s = 88172645463325252ULL;
  bool have = false;
  double spare = 0;
  double u() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (static_cast<double>(s >> 11) + 0.5) / 9007199254740992.0;
  }
  double operator()() {
    if (have) {
      have = false;
      return spare;
    }
    const double r = std::sqrt(-2 * std::log(u())), a = 6.283185307179586 * u();
    spare = r * std::sin(a);
    have = true;
    return r * std::cos(a);
  }
};

drift_reference reference(const std::string& name, std::vector<float> xs) {
  const distribution d = describe_distribution(name, std::move(xs));
  drift_reference r;
  r.name = d.name;
  r.n = d.n;
  r.missing = d.missing;
  r.mean = d.mean;
  r.stddev = d.stddev;
  r.edges = d.edges;
  r.counts = d.counts;
  return r;
}

std::vector<drift_reference> references(size_t cols, fast_normal& g) {
  std::vector<drift_reference> refs;
  for (size_t c = 0; c < cols; ++c) {
    std::vector<float> xs(100000);
    for (auto& x : xs) x = static_cast<float>(g() + static_cast<double>(c));
    refs.push_back(reference("f" + std::to_string(c), std::move(xs)));
  }
  return refs;
}

double value_of(fast_normal& g, size_t c, size_t row, size_t rows) {
  const bool shifted = row >= rows * 8 / 10 && c < 3;
  return g() + static_cast<double>(c) + (shifted ? 0.3 * static_cast<double>(c + 1) : 0);
}

void print_verdict(const drift_monitor& m) {
  for (auto& v : m.status()) {
    std::printf("    verdict: %llu windows tested, %zu columns alarming:",
                static_cast<unsigned long long>(v.tests), v.alarming.size());
    for (size_t i = 0; i < v.alarming.size() && i < 6; ++i)
      std::printf(" %s", v.alarming[i].c_str());
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const size_t rows = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 3000000;
  const size_t cols = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 12;
  const size_t wide = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1000;
  const int64_t t0 = 991353600000000;  // 2001-06-01
  fast_normal g;
  drift_monitor::options o;  // 1-day windows, tested every hour
  std::printf("bench_drift: %zu predictions (one a second of event time), %zu inputs + score\n",
              rows, cols);

  // The log's lines, as the prediction log writes them (fields, vector, inputs, keys).
  std::vector<std::string> lines;
  lines.reserve(rows);
  nlohmann::json inputs = nlohmann::json::array();
  for (size_t c = 0; c < cols; ++c) inputs.push_back("f" + std::to_string(c));
  for (size_t r = 0; r < rows; ++r) {
    nlohmann::json vec = nlohmann::json::array();
    for (size_t c = 0; c < cols; ++c) vec.push_back(value_of(g, c, r, rows));
    const int64_t t = t0 + static_cast<int64_t>(r) * 1000000;
    lines.push_back(nlohmann::json{{"request_id", ""},
                                   {"time", t},
                                   {"model", "late_mlp"},
                                   {"version", 1},
                                   {"stage", "production"},
                                   {"path", "model"},
                                   {"prediction_time", t},
                                   {"score", 0.2 + 0.05 * g()},
                                   {"inputs", inputs},
                                   {"vector", vec},
                                   {"keys", {{"route_delay", "LAX-SFO"}}},
                                   {"fields", {{"origin", "LAX"}, {"destination", "SFO"}}}}
                        .dump());
  }
  std::vector<float> scores(100000);
  for (auto& x : scores) x = static_cast<float>(0.2 + 0.05 * g());
  const auto refs = references(cols, g);
  const auto score_ref = reference("score", scores);

  static const nlohmann::json::parser_callback_t skip_names =
      [](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
        return !(depth == 1 && ev == nlohmann::json::parse_event_t::key &&
                 (parsed == "inputs" || parsed == "keys"));
      };
  // 1. Parse only.
  double sink = 0;
  auto t = std::chrono::steady_clock::now();
  std::vector<double> vec;
  for (auto& l : lines) {
    auto j = nlohmann::json::parse(l, skip_names, false);
    vec.clear();
    for (auto& x : j["vector"]) vec.push_back(x.is_number() ? x.get<double>() : std::nan(""));
    sink += vec[0] + j.value("score", 0.0);
  }
  const double parse_s = seconds_since(t);
  // 1b. What the service does: the SAX reading of the fields it uses (logged_prediction.h).
  t = std::chrono::steady_clock::now();
  logged_prediction lp;
  for (auto& l : lines) {
    parse_logged(l, lp);
    sink += lp.vector[0] + lp.score;
  }
  const double sax_s = seconds_since(t);
  // 2. Read (as the service does) + drift.
  drift_monitor m(o);
  m.set_reference(1, refs, score_ref);
  t = std::chrono::steady_clock::now();
  int64_t until = 0;
  for (auto& l : lines) {
    parse_logged(l, lp);
    m.add(1, lp.prediction_time, lp.vector, lp.score);
    until = std::max(until, lp.prediction_time);
    m.advance(until);
  }
  const double both_s = seconds_since(t);
  std::printf("  full JSON parse          %8.2f s  %10.0f rows/s\n", parse_s,
              static_cast<double>(rows) / parse_s);
  std::printf("  SAX reading (baseline)   %8.2f s  %10.0f rows/s  (%.1fx the full parse)\n", sax_s,
              static_cast<double>(rows) / sax_s, parse_s / sax_s);
  std::printf(
      "  SAX reading + drift      %8.2f s  %10.0f rows/s  (drift adds %.0f%% to reading the log)\n",
      both_s, static_cast<double>(rows) / both_s, 100 * (both_s - sax_s) / sax_s);
  print_verdict(m);
  lines.clear();
  lines.shrink_to_fit();

  // 3. Drift only, wide.
  if (wide > 0) {
    fast_normal gw;
    drift_monitor mw(o);
    mw.set_reference(1, references(wide, gw), score_ref);
    std::vector<double> row(wide);
    t = std::chrono::steady_clock::now();
    double gen_s = 0;
    for (size_t r = 0; r < rows; ++r) {
      const auto g0 = std::chrono::steady_clock::now();
      for (size_t c = 0; c < wide; ++c) row[c] = value_of(gw, c, r, rows);
      gen_s += seconds_since(g0);
      const int64_t pt = t0 + static_cast<int64_t>(r) * 1000000;
      mw.add(1, pt, row, 0.2 + 0.05 * gw());
      mw.advance(pt);
    }
    const double wide_s = seconds_since(t) - gen_s;
    std::printf(
        "  drift only, %zu columns %8.2f s  %10.0f rows/s  (%.0f M values/s; generating "
        "the values took another %.2f s)\n",
        wide, wide_s, static_cast<double>(rows) / wide_s,
        static_cast<double>(rows * wide) / wide_s / 1e6, gen_s);
    print_verdict(mw);
  }
  return sink == 12345.678 ? 1 : 0;
}
