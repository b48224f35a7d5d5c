// The state the quality service keeps for one monitored model (quality_service.h), shared by
// the service's files: quality_service.cc (start, ownership, saving, the read loop),
// quality_objectives.cc (objectives and skew), quality_status.cc (status).
// Thread safety: `mu` guards the state; the model's own thread reads the streams.
#pragma once
#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cluster/registry.h"
#include "codec.h"
#include "definitions.h"
#include "drift_monitor.h"
#include "expr.h"
#include "label_join.h"
#include "logged_prediction.h"
#include "metrics.h"
#include "quality_service.h"
#include "slo.h"

namespace tessera {

struct quality_service::monitored {
  const model_def* model = nullptr;
  const label_def* label = nullptr;
  const stream_def* stream = nullptr;  // the label's
  const kind_plan* plan = nullptr;     // the label entity's
  std::vector<std::string> key_fields;
  natsSubscription* preds = nullptr;
  natsSubscription* labels = nullptr;
  std::thread thread;
  mutable std::mutex mu;  // what follows
  monitoring::label_join join;
  struct pair_row {
    double score, label;
    int64_t lag_us;
  };
  std::map<std::pair<std::string, uint32_t>, std::deque<pair_row>> windows;  // (stage, version)
  int64_t now = 0;  // latest label event time
  uint64_t verdicts = 0;
  std::vector<std::unique_ptr<monitoring::drift_monitor>> drifts;  // one per drift_window
  model_registry* registry = nullptr;                              // the versions' references
  int64_t predicted_until = 0;                                     // latest prediction time logged
  monitoring::logged_prediction parsed;                            // one line's, reused
  int64_t skew_at = 0;  // wall clock of the last skew sample (µs)
  uint64_t skew_compared = 0, skew_mismatched = 0;
  std::string skew_worst;
  // Objectives (slo.h): one burn-rate tracker per SLI declared.
  struct slo_tracker {
    std::string sli;
    monitoring::burn_rates rates;
  };
  std::vector<slo_tracker> slos;
  log_limiter limiter{std::chrono::seconds(10)};
  uint64_t bad = 0;
  // Saved state (checkpoint.h, state_store.h): the stream sequences of the last prediction-log
  // and label messages applied, when it was saved and restored (wall µs, 0: never).
  uint64_t plog_seq = 0, label_seq = 0;
  int64_t saved_at = 0, restored_at = 0;
  uint64_t saved_predictions = 0, saved_seq = 0;
  // Which node computes the model (owner_of); this one while `owned` (its consumers open).
  std::string owner;
  bool owned = false;

  // Empty state, as at a first start (the caller holds mu or is the only one to touch it).
  void reset() {
    monitoring::label_join::options jo;
    jo.max_label_delay_us = model->monitor.max_label_delay_us;
    jo.label_grace_us = model->monitor.label_grace_us;
    join = monitoring::label_join(jo);
    monitoring::drift_monitor::options dopt;
    dopt.step_us = model->monitor.drift_step_us;
    dopt.config.false_alarm_rate = model->monitor.drift_false_alarm_rate;
    dopt.config.min_psi = model->monitor.drift_min_psi;
    drifts.clear();
    for (const int64_t w : model->monitor.drift_windows_us) {
      dopt.window_us = w;
      drifts.push_back(std::make_unique<monitoring::drift_monitor>(dopt));
    }
    windows.clear();
    plog_seq = label_seq = 0;
    now = predicted_until = 0;
    saved_at = restored_at = 0;
    saved_predictions = saved_seq = 0;
  }

  // The whole state with the sequences it covers (the caller holds mu).
  nlohmann::json save() const {
    nlohmann::json arms = nlohmann::json::array();
    for (auto& [k, w] : windows) {
      nlohmann::json rows = nlohmann::json::array();
      for (auto& r : w) rows.push_back({r.score, r.label, r.lag_us});
      arms.push_back({k.first, k.second, rows});
    }
    return {{"format", 1},
            {"model", model->name},
            {"plog_seq", plog_seq},
            {"label_seq", label_seq},
            {"now", now},
            {"predicted_until", predicted_until},
            {"join", join.save()},
            {"arms", arms},
            {"drifts", [&] {
               nlohmann::json all = nlohmann::json::array();
               for (auto& d : drifts) all.push_back(d->save());
               return all;
             }()}};
  }
  // Replaces the state with a saved one; throws (std::exception) on a malformed one, leaving
  // the join or the pairs half restored: the caller then starts afresh.
  void restore(const nlohmann::json& j) {
    if (j.at("format").get<int>() != 1 || j.at("model").get<std::string>() != model->name)
      throw std::runtime_error("another model's state, or another format");
    std::map<std::pair<std::string, uint32_t>, std::deque<pair_row>> w;
    for (const auto& a : j.at("arms")) {
      auto& rows = w[{a.at(0).get<std::string>(), a.at(1).get<uint32_t>()}];
      for (const auto& r : a.at(2))
        rows.push_back({r.at(0).get<double>(), r.at(1).get<double>(), r.at(2).get<int64_t>()});
      while (rows.size() > static_cast<size_t>(model->monitor.window)) rows.pop_front();
    }
    join.restore(j.at("join"));
    windows = std::move(w);
    plog_seq = j.at("plog_seq").get<uint64_t>();
    label_seq = j.at("label_seq").get<uint64_t>();
    now = j.at("now").get<int64_t>();
    predicted_until = j.at("predicted_until").get<int64_t>();
    // Each window restores from the saved one of its length (and step); a window the
    // definitions added since starts afresh.
    for (auto& d : drifts) {
      bool restored = false;
      for (const auto& saved : j.at("drifts")) restored = restored || d->restore(saved);
      if (!restored)
        warn(
            "no saved drift window of this length and step (the definitions changed): that "
            "window starts afresh");
    }
  }
  void add(const std::vector<monitoring::labelled_pair>& pairs) {
    for (auto& p : pairs) {
      auto& w = windows[{p.stage, p.version}];
      w.push_back({p.score, p.label, p.label_time - p.prediction_time});
      while (w.size() > static_cast<size_t>(model->monitor.window)) w.pop_front();
    }
  }
  void warn(const std::string& what) {
    ++bad;
    uint64_t suppressed = 0;
    if (limiter.allow(what.substr(0, 40), suppressed))
      spdlog::warn("quality {}: {}{}", model->name, what,
                   suppressed ? " (" + std::to_string(suppressed) + " more)" : "");
  }
  // One prediction-log message: JSON lines.
  void on_predictions(const std::string& data) {
    std::vector<monitoring::labelled_pair> out;
    std::istringstream lines(data);
    std::string line;
    std::lock_guard<std::mutex> l(mu);
    while (std::getline(lines, line)) {
      if (line.empty()) continue;
      monitoring::logged_prediction& r = parsed;
      if (!monitoring::parse_logged(line, r)) {
        warn("a prediction-log line that is not a record");
        continue;
      }
      on_vector(r);
      std::string key;
      for (auto& f : key_fields) {
        const auto it = std::find_if(r.fields.begin(), r.fields.end(),
                                     [&](const auto& kv) { return kv.first == f; });
        if (it == r.fields.end()) {
          key.clear();
          break;
        }
        key += (key.empty() ? "" : "-") + it->second;
      }
      if (key.empty()) continue;  // an example without the label entity's key: nothing to join
      key += "@" + std::to_string(r.prediction_time);
      join.prediction(key, model->name, r.version, r.stage, r.score, r.prediction_time, out);
    }
    add(out);
  }
  // The logged vector and score into the drift windows of its version (whose reference is read
  // from the registry the first time the version is seen).
  void on_vector(const monitoring::logged_prediction& r) {
    if (drifts.empty() || r.version == 0 || r.prediction_time <= 0) return;
    if (!drifts.front()->knows(r.version)) load_reference(r.version);
    predicted_until = std::max(predicted_until, r.prediction_time);
    // Each step's boundary is tested as the predictions cross it, however many a prediction-log
    // message holds: advanced once per message, a monitor that fell behind (the log batches
    // more under load) tested only the last boundary of each message and skipped the others.
    for (auto& d : drifts) {
      d->add(r.version, r.prediction_time, r.vector, r.score);
      d->advance(predicted_until);
    }
  }
  void load_reference(uint32_t version) {
    auto rec = registry->show(model->name, version);
    if (!rec) {
      // Not recorded as known: the next prediction of this version asks again.
      warn("cannot read the reference of version " + std::to_string(version) + ": " +
           rec.error_message());
      return;
    }
    const auto& ref = (*rec)["reference"];
    if (!ref.is_object() || !ref.contains("inputs") || !ref["inputs"].is_array()) {
      for (auto& d : drifts)
        d->set_no_reference(version, "no reference distributions recorded (imported?)");
      return;
    }
    std::vector<monitoring::drift_reference> inputs;
    for (auto& x : ref["inputs"]) {
      auto r = monitoring::reference_from_json(x);
      if (!r) {
        for (auto& d : drifts) d->set_no_reference(version, r.error_message());
        return;
      }
      inputs.push_back(std::move(r.value()));
    }
    std::optional<monitoring::drift_reference> score;
    if (ref.contains("predictions")) {
      auto r = monitoring::reference_from_json(ref["predictions"]);
      if (r) {
        score = std::move(r.value());
        score->name = "score";
      }
    }
    for (auto& d : drifts) d->set_reference(version, inputs, score);
  }
  // One event message of the label stream.
  void on_events(const std::string& data) {
    std::vector<monitoring::labelled_pair> out;
    std::lock_guard<std::mutex> l(mu);
    const bool ok = with_message<wire::EventBatch>(data, [&](wire::EventBatch::Reader b) {
      const std::vector<int> positional = positional_fields(b, *stream);
      for (auto e : b.getEvents()) {
        normalized_event ne;
        event_error err;
        if (!normalize_event(e, *stream, ne, err, &positional)) continue;  // dead-lettered there
        double y = 0;
        const value v = label->value->eval(ne.fields);
        if (is_null(v) || !as_number(v, y)) continue;  // no label for this event
        const value t = label->time->eval(ne.fields);
        if (!std::holds_alternative<timestamp_value>(t)) continue;
        const std::string k = entity_key(ne, *plan, err);
        if (k.empty()) continue;
        const int64_t pt = std::get<timestamp_value>(t).micros;
        join.label(k + "@" + std::to_string(pt), y != 0 ? 1.0 : 0.0, ne.time, out);
        now = std::max(now, ne.time);
      }
    });
    if (!ok) warn("a malformed event message");
    join.advance(now);
    add(out);
  }
};

}  // namespace tessera
