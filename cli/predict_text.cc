#include "predict_text.h"

#include "tessera/wire_error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "cli_util.h"
#include "time_util.h"

namespace tessera::cli {
namespace {

// A number of the skew report: integers as such, other numbers in 6 significant digits;
// null (NaN in the report: a missing value) as `null_text`.
std::string report_number(const nlohmann::json& v, const char* null_text) {
  if (v.is_null()) return null_text;
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return fmt::format("{:.6g}", v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

uint64_t count_of(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (!it->is_number() || it->get<double>() < 0)
    throw std::invalid_argument(std::string("\"") + key + "\" is not a count: " + it->dump());
  return it->get<uint64_t>();
}

std::string text_of(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

}  // namespace

result<assignments> parse_assignments(const std::vector<std::string>& args) {
  assignments out;
  std::set<std::string> seen;
  for (auto& a : args) {
    auto eq = a.find('=');
    if (eq == std::string::npos)
      return make_error("'" + a + "' is not FIELD=VALUE (e.g. origin=LAX)", errc::invalid);
    if (eq == 0)
      return make_error("'" + a + "' has no field name before '=' (e.g. origin=LAX)",
                        errc::invalid);
    std::string name = a.substr(0, eq);
    if (!seen.insert(name).second)
      return make_error("field " + name + " is given twice", errc::invalid);
    out.emplace_back(std::move(name), a.substr(eq + 1));
  }
  return out;
}

result<int64_t> parse_prediction_time(const std::string& text) {
  if (text.empty()) return int64_t{0};
  if (text[0] == '-')
    return make_error("--as-of " + text +
                          ": predict takes a time (ISO-8601 such as 2001-06-01T08:00:00Z, or "
                          "epoch), not a duration before the clock",
                      errc::invalid);
  auto t = parse_timestamp(text);
  if (!t) return make_error("--as-of: " + t.error_message(), errc::invalid);
  if (*t <= 0) return make_error("--as-of " + text + ": a time after 1970", errc::invalid);
  return *t;
}

std::string code_name(errc c) {
  return errc_token(c);
}

std::string format_age(int64_t us) {
  if (us < 0) return "-";
  const double u = static_cast<double>(us);
  if (us < 1000) return fmt::format("{} µs", us);
  if (us < 1'000'000) return fmt::format("{:.1f} ms", u / 1e3);
  if (us < 120'000'000) return fmt::format("{:.1f} s", u / 1e6);
  if (us < 7'200'000'000) return fmt::format("{:.1f} min", u / 60e6);
  if (us < 172'800'000'000) return fmt::format("{:.1f} h", u / 3600e6);
  return fmt::format("{:.1f} d", u / 86400e6);
}

nlohmann::ordered_json prediction_json(const client::prediction& p) {
  nlohmann::ordered_json j;
  j["request_id"] = p.request_id;
  j["score"] = p.ok() && std::isfinite(p.score) ? nlohmann::ordered_json(p.score) : nullptr;
  j["version"] = p.version;
  j["stage"] = p.stage;
  j["path"] = p.path;
  if (!p.decision.empty()) {
    j["decision"] = p.decision;
    j["rule"] = p.rule;
  }
  j["node"] = p.node;
  j["latency_us"] = p.latency_us;
  j["prediction_time"] =
      p.prediction_time ? nlohmann::ordered_json(format_timestamp(p.prediction_time)) : nullptr;
  if (!p.ok()) {
    j["error"] = p.error;
    j["code"] = code_name(p.code);
  }
  if (!p.features.empty()) {
    auto& fs = j["features"] = nlohmann::ordered_json::array();
    for (auto& f : p.features)
      fs.push_back(
          {{"name", f.name},
           {"value", std::isfinite(f.value) ? nlohmann::ordered_json(f.value) : nullptr},
           {"event_time",
            f.event_time ? nlohmann::ordered_json(format_timestamp(f.event_time)) : nullptr},
           {"age_us", f.age_us >= 0 ? nlohmann::ordered_json(f.age_us) : nullptr},
           {"status", status_name(f.status)}});
  }
  return j;
}

std::string format_prediction(const client::prediction& p, bool vector) {
  if (!p.ok()) return fmt::format("error ({}): {}\n", code_name(p.code), p.error);
  std::string s;
  s += fmt::format("score            {:.6f}\n", p.score);
  s += fmt::format("version          {}{}\n", p.version,
                   p.stage.empty() ? "" : " (" + p.stage + ")");
  s += fmt::format("path             {}\n", p.path);
  if (!p.decision.empty()) s += fmt::format("decision         {} (rule {})\n", p.decision, p.rule);
  s += fmt::format("node             {}\n", p.node);
  s += fmt::format("latency          {}\n", format_age(p.latency_us));
  s += fmt::format("prediction time  {}\n",
                   p.prediction_time ? format_timestamp(p.prediction_time) : "-");
  if (vector && !p.features.empty()) {
    size_t w = std::string("feature").size();
    for (auto& f : p.features) w = std::max(w, f.name.size());
    s += fmt::format("\n{:<{}}  {:>12}  {:>10}  {}\n", "feature", w, "value", "age", "status");
    for (auto& f : p.features)
      s += fmt::format("{:<{}}  {:>12}  {:>10}  {}\n", f.name, w,
                       std::isnan(f.value) ? "missing" : fmt::format("{:.6g}", f.value),
                       format_age(f.age_us), status_name(f.status));
  } else if (vector) {
    s += "(the node returned no features)\n";
  }
  return s;
}

result<std::string> format_skew_report(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error("the skew report is not a JSON object: " + text.substr(0, 200),
                      errc::invalid);
  try {
    std::string s;
    const uint64_t sampled = count_of(j, "sampled"), compared = count_of(j, "compared"),
                   skipped = count_of(j, "skipped"),
                   mismatched = count_of(j, "mismatched_examples");
    s += fmt::format(
        "skew of {} version {}: {} logged predictions sampled, {} compared, {} skipped\n",
        text_of(j, "model"), text_of(j, "version"), human(sampled), human(compared),
        human(skipped));
    if (compared == 0)
      s += "nothing compared: no logged prediction could be recomputed (see skipped below)\n";
    else if (mismatched == 0)
      s += "no skew: every compared feature has the same value offline as when it was served\n";
    else
      s += fmt::format("{} of {} compared examples ({:.1f} %) differ in at least one feature\n",
                       human(mismatched), human(compared),
                       100.0 * static_cast<double>(mismatched) / static_cast<double>(compared));

    struct feature {
      std::string name;
      uint64_t compared = 0, mismatches = 0;
      std::string max_abs_diff;
      std::vector<std::string> examples;  // request, logged, offline
    };
    std::vector<feature> features;
    if (auto it = j.find("features"); it != j.end() && !it->is_null()) {
      if (!it->is_array()) throw std::invalid_argument("\"features\" is not a list");
      for (auto& f : *it) {
        if (!f.is_object()) throw std::invalid_argument("a feature is not an object");
        feature x;
        x.name = text_of(f, "name");
        x.compared = count_of(f, "compared");
        x.mismatches = count_of(f, "mismatches");
        x.max_abs_diff = report_number(f.value("max_abs_diff", nlohmann::json()), "-");
        if (auto e = f.find("examples"); e != f.end() && e->is_array())
          for (auto& ex : *e) {
            if (x.examples.size() == 3) break;
            if (!ex.is_object()) continue;
            x.examples.push_back(
                fmt::format("request {}: served {}, offline {}", text_of(ex, "request_id"),
                            report_number(ex.value("logged", nlohmann::json()), "missing"),
                            report_number(ex.value("offline", nlohmann::json()), "missing")));
          }
        features.push_back(std::move(x));
      }
    }
    std::stable_sort(features.begin(), features.end(), [](const feature& a, const feature& b) {
      return a.mismatches > b.mismatches;
    });
    if (!features.empty()) {
      size_t w = std::string("feature").size();
      for (auto& f : features) w = std::max(w, f.name.size());
      s += fmt::format("\n{:<{}}  {:>10}  {:>10}  {:>12}\n", "feature", w, "compared", "mismatches",
                       "max |diff|");
      for (auto& f : features)
        s += fmt::format("{:<{}}  {:>10}  {:>10}  {:>12}\n", f.name, w, human(f.compared),
                         human(f.mismatches), f.max_abs_diff);
      bool header = false;
      for (auto& f : features) {
        if (f.examples.empty()) continue;
        if (!header) s += "\nmismatches, for example:\n";
        header = true;
        s += "  " + f.name + "\n";
        for (auto& e : f.examples) s += "    " + e + "\n";
      }
    }
    if (auto it = j.find("skipped_reasons"); it != j.end() && it->is_object() && !it->empty()) {
      std::vector<std::pair<uint64_t, std::string>> reasons;
      for (auto& [reason, n] : it->items())
        reasons.emplace_back(n.is_number() ? n.get<uint64_t>() : 0, reason);
      std::stable_sort(reasons.begin(), reasons.end(),
                       [](const auto& a, const auto& b) { return a.first > b.first; });
      s += "\nskipped:\n";
      for (auto& [n, reason] : reasons) s += fmt::format("  {:>10}  {}\n", human(n), reason);
    }
    return s;
  } catch (const std::exception& e) {
    return make_error(std::string("the skew report is not in the expected shape: ") + e.what(),
                      errc::invalid);
  }
}

}  // namespace tessera::cli
