#include "checkpoint.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "drift.h"
#include "drift_monitor.h"
#include "label_join.h"

namespace tessera::monitoring {

using nlohmann::json;

std::string encode_state(const json& doc) {
  const std::vector<std::uint8_t> bytes = json::to_msgpack(doc);
  return std::string(bytes.begin(), bytes.end());
}

result<json> decode_state(const std::string& bytes) {
  json j = json::from_msgpack(bytes, true, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(
        "not a saved monitor state (" + std::to_string(bytes.size()) + " bytes that do not decode)",
        errc::invalid);
  return j;
}

// label_join ---------------------------------------------------------------------------------

json label_join::save() const {
  json keys = json::array();
  for (const auto& [key, k] : keys_) {
    json preds = json::array();
    for (const pending& p : k.preds)
      preds.push_back({p.model, p.stage, p.version, p.score, p.time});
    json seen = json::array();
    for (const auto& [model, stage] : k.seen) seen.push_back({model, stage});
    keys.push_back({key, preds, seen, k.labelled, k.joined, k.orphan_counted, k.label_time, k.y});
  }
  json expiry = json::array();
  for (const auto& [at, key] : expiry_) expiry.push_back({at, key});
  return {{"counts",
           {c_.predictions, c_.labels, c_.joined, c_.unlabelled, c_.late, c_.unmatched,
            c_.duplicate_labels, c_.duplicate_predictions, c_.dropped}},
          {"keys", keys},
          {"expiry", expiry},
          {"pending", pending_count_},
          {"orphans", orphans_}};
}

void label_join::restore(const json& j) {
  counts c;
  const json& cj = j.at("counts");
  for (auto [field, i] : {std::pair{&counts::predictions, 0},
                          {&counts::labels, 1},
                          {&counts::joined, 2},
                          {&counts::unlabelled, 3},
                          {&counts::late, 4},
                          {&counts::unmatched, 5},
                          {&counts::duplicate_labels, 6},
                          {&counts::duplicate_predictions, 7},
                          {&counts::dropped, 8}})
    c.*field = cj.at(static_cast<size_t>(i)).get<uint64_t>();
  std::unordered_map<std::string, key_state> keys;
  for (const json& e : j.at("keys")) {
    key_state k;
    for (const json& p : e.at(1))
      k.preds.push_back({p.at(0).get<std::string>(), p.at(1).get<std::string>(),
                         p.at(2).get<uint32_t>(), p.at(3).get<double>(), p.at(4).get<int64_t>()});
    for (const json& s : e.at(2))
      k.seen.emplace_back(s.at(0).get<std::string>(), s.at(1).get<std::string>());
    k.labelled = e.at(3).get<bool>();
    k.joined = e.at(4).get<bool>();
    k.orphan_counted = e.at(5).get<bool>();
    k.label_time = e.at(6).get<int64_t>();
    k.y = e.at(7).get<double>();
    keys.emplace(e.at(0).get<std::string>(), std::move(k));
  }
  std::multimap<int64_t, std::string> expiry;
  for (const json& e : j.at("expiry"))
    expiry.emplace(e.at(0).get<int64_t>(), e.at(1).get<std::string>());
  const auto pending_count = j.at("pending").get<size_t>();
  const auto orphans = j.at("orphans").get<size_t>();
  c_ = c;
  keys_ = std::move(keys);
  expiry_ = std::move(expiry);
  pending_count_ = pending_count;
  orphans_ = orphans;
}

// drift ----------------------------------------------------------------------------------------

json drift_alarm::save() const {
  return {{"recent", std::vector<bool>(recent_.begin(), recent_.end())},
          {"firing", firing_},
          {"since_resolved", since_resolved_}};
}

void drift_alarm::restore(const json& j) {
  const auto recent = j.at("recent").get<std::vector<bool>>();
  firing_ = j.at("firing").get<bool>();
  since_resolved_ = j.at("since_resolved").get<int>();
  recent_.assign(recent.begin(), recent.end());
}

namespace {

json reference_json(const drift_reference& r) {
  return {{"name", r.name},       {"edges", r.edges}, {"counts", r.counts}, {"n", r.n},
          {"missing", r.missing}, {"mean", r.mean},   {"stddev", r.stddev}};
}

json result_json(const ranked& r) {
  const drift_result& x = r.result;
  return {x.name,          x.n,   x.tested,  x.psi,         x.js, x.p_value, x.threshold,
          x.mean_shift_sd, x.dof, x.drifted, r.contribution};
}

ranked result_from(const json& j) {
  ranked r;
  drift_result& x = r.result;
  x.name = j.at(0).get<std::string>();
  x.n = j.at(1).get<uint64_t>();
  x.tested = j.at(2).get<bool>();
  x.psi = j.at(3).get<double>();
  x.js = j.at(4).get<double>();
  x.p_value = j.at(5).get<double>();
  x.threshold = j.at(6).get<double>();
  x.mean_shift_sd = j.at(7).get<double>();
  x.dof = j.at(8).get<int>();
  x.drifted = j.at(9).get<bool>();
  r.contribution = j.at(10).get<double>();
  return r;
}

}  // namespace

json sliding_counts::save() const {
  json ring = json::array();
  for (const bucket& b : ring_)
    ring.push_back(
        {b.index, b.counts.counts, b.counts.missing, b.counts.sum, b.counts.sum_squares});
  return {{"reference", reference_json(ref_)}, {"width", width_}, {"span", span_}, {"ring", ring}};
}

sliding_counts::sliding_counts(const json& saved)
    : ref_(reference_from_json(saved.at("reference")).value()),
      width_(saved.at("width").get<int64_t>()),
      span_(saved.at("span").get<int64_t>()) {
  for (const json& b : saved.at("ring")) {
    bucket x;
    x.index = b.at(0).get<int64_t>();
    x.counts.counts = b.at(1).get<std::vector<uint64_t>>();
    x.counts.missing = b.at(2).get<uint64_t>();
    x.counts.sum = b.at(3).get<double>();
    x.counts.sum_squares = b.at(4).get<double>();
    ring_.push_back(std::move(x));
  }
  if (width_ <= 0 || span_ <= 0 || ring_.empty())
    throw std::runtime_error("a drift window without buckets");
}

json drift_monitor::save() const {
  json versions = json::array();
  for (const auto& [v, t] : versions_) {
    json inputs = json::array();
    for (const sliding_counts& s : t.inputs) inputs.push_back(s.save());
    json alarms = json::array();
    for (const drift_alarm& a : t.alarms) alarms.push_back(a.save());
    json values = json::array();
    for (const ranked& r : t.last.values) values.push_back(result_json(r));
    versions.push_back({{"version", v},
                        {"has_reference", t.has_reference},
                        {"why", t.why},
                        {"inputs", inputs},
                        {"score", t.score ? t.score->save() : json()},
                        {"alarms", alarms},
                        {"last",
                         {{"at", t.last.at_us},
                          {"n", t.last.n},
                          {"tests", t.last.tests},
                          {"values", values},
                          {"alarming", t.last.alarming}}}});
  }
  return {{"window_us", o_.window_us},       {"step_us", o_.step_us},
          {"next_boundary", next_boundary_}, {"first", first_us_},
          {"mismatched", mismatched_},       {"versions", versions}};
}

bool drift_monitor::restore(const json& j) {
  if (j.at("window_us").get<int64_t>() != o_.window_us ||
      j.at("step_us").get<int64_t>() != o_.step_us)
    return false;
  std::map<uint32_t, tracked> versions;
  for (const json& e : j.at("versions")) {
    tracked t;
    const auto v = e.at("version").get<uint32_t>();
    t.has_reference = e.at("has_reference").get<bool>();
    t.why = e.at("why").get<std::string>();
    for (const json& s : e.at("inputs")) t.inputs.emplace_back(s);
    if (!e.at("score").is_null()) t.score.emplace(e.at("score"));
    for (const json& a : e.at("alarms")) {
      drift_alarm x(o_.persist);
      x.restore(a);
      t.alarms.push_back(std::move(x));
    }
    if (t.alarms.size() != t.inputs.size() + (t.score ? 1 : 0))
      throw std::runtime_error("drift alarms and values do not match");
    const json& last = e.at("last");
    t.last.version = v;
    t.last.has_reference = t.has_reference;
    t.last.why = t.why;
    t.last.at_us = last.at("at").get<int64_t>();
    t.last.n = last.at("n").get<uint64_t>();
    t.last.tests = last.at("tests").get<uint64_t>();
    for (const json& r : last.at("values")) t.last.values.push_back(result_from(r));
    t.last.alarming = last.at("alarming").get<std::vector<std::string>>();
    versions[v] = std::move(t);
  }
  const auto next_boundary = j.at("next_boundary").get<int64_t>();
  const auto first = j.at("first").get<int64_t>();
  const auto mismatched = j.at("mismatched").get<uint64_t>();
  versions_ = std::move(versions);
  next_boundary_ = next_boundary;
  first_us_ = first;
  mismatched_ = mismatched;
  return true;
}

}  // namespace tessera::monitoring
