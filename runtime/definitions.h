// Feature definitions: streams, entities and feature views, loaded from a sandboxed Lua file.
// Immutable after load and shared read-only by every thread (shared_ptr<const definitions>).
//
// Files: definitions.cc the lookups below; definitions_reader*.cc and definitions_monitor.cc
// loading (Lua tables → these structs, definitions_reader_internal.h); lua_host.h the sandboxed
// Lua state; storage_plan.h the per-(stream, kind) plan.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "expr.h"
#include "storage_plan.h"
#include "tessera/result.h"
#include "value.h"

namespace tessera {

class rule_set;         // rules.h
class expectation_set;  // expectations.h

struct field_def {
  std::string name;
  field_type type;
  // A derived field is computed from the event's other fields (never taken from the producer),
  // e.g. arrival = "date + 60000000 * (30 + distance / 8 + delay)".
  std::string derive_src;
  std::shared_ptr<const expr> derive;  // slots = indices into stream_def::fields
};

// How a stream's clock runs (DESIGN.md, "One clock per stream"): the default read time of every
// entity of the stream, on every node.
//   live:   the wall clock. Windows decay as time passes, even for an entity with no events.
//   replay: the stream's watermark, the latest event time applied on any of its shards on any
//           node (history replayed at its own pace). It stops when the stream stops.
enum class clock_mode : uint8_t { live, replay };
const char* clock_mode_name(clock_mode m);

struct stream_def {
  std::string name;
  std::string time_field;  // event-time field, of type timestamp
  std::vector<field_def> fields;
  int64_t max_age_us = 0;                          // JetStream retention; 0 = unlimited
  int64_t duplicate_window_us = 3600 * 1000000LL;  // JetStream de-duplication window
  // How long the offline log (every event with its event and known time) keeps an event,
  // counted back from the shard's watermark (a live stream: the wall clock) in event time.
  int64_t offline_retention_us = 365LL * 86400 * 1000000;
  clock_mode clock = clock_mode::live;
  // Outliers are refused, never applied: an event more than max_future past the wall clock, or
  // more than max_jump past the stream's watermark. The defaults accept real data's spread (in
  // the flights file an arrival lies up to 24.5 h past every arrival replayed before it).
  int64_t max_future_us = 86400LL * 1000000;    // 1d
  int64_t max_jump_us = 2 * 86400LL * 1000000;  // 2d
  // Expectations checked where events enter (expectations.h; `expect = { field = { ... } }`):
  // null when none are declared.
  std::shared_ptr<const expectation_set> expect;
  int field_index(const std::string& name) const;
};

struct entity_def {
  std::string name;                     // the entity kind, e.g. "origin", "route"
  std::vector<std::string> key_fields;  // key = values joined with '-', e.g. "LAX-SFO"
};

enum class agg_kind : uint8_t {
  count,
  sum,
  mean,
  min,
  max,
  stddev,
  last,
  last_n_distinct,
  time_since_last
};
const char* agg_name(agg_kind k);

struct feature_def {
  std::string name;
  agg_kind agg;
  std::string field;       // empty for count and time_since_last
  int slot = -1;           // index of `field` in the kind plan's stored fields
  int64_t window_us = 0;   // the window (t - W, t]
  std::string filter_src;  // empty = no filter
  std::shared_ptr<const expr> filter;
  int n = 0;  // for last_n_distinct
};

struct view_def {
  std::string name;
  uint32_t version = 1;
  std::string entity;
  std::string stream;
  int64_t ttl_us = 0;            // values older than this are stale; 0 = max window
  int64_t as_of_horizon_us = 0;  // how far before the watermark an as-of read may go
  std::vector<feature_def> features;
  int64_t max_window_us() const;
  std::string qualified() const { return name + "@" + std::to_string(version); }
};

// A label definition: which events are labelled examples, their label, when the prediction is
// made, and the features a model reads. `tessera dataset build` joins each example to the
// views' values as of its prediction time, using only what was known then.
struct label_def {
  std::string name;
  std::string stream;
  std::string entity;  // the entity kind whose offline log is scanned for examples
  std::string value_src, time_src;
  std::shared_ptr<const expr> value;  // the label: bool or number (slots = stream fields)
  std::shared_ptr<const expr> time;   // the prediction time (a timestamp)
  std::vector<const view_def*> views;
  struct on_demand_feature {
    std::string name, src;
    std::shared_ptr<const expr> e;
  };
  std::vector<on_demand_feature> on_demand;  // features computed from the example's own fields
  // 0: features as of the prediction time; otherwise as of its period's start (e.g. 1d =
  // frozen at the previous midnight UTC, as a daily batch job would have them).
  int64_t snapshot_us = 0;
  // Column names of a dataset built from it, after prediction_time, entity and label.
  std::vector<std::string> feature_columns() const;
};

// A training job: model kind, label, split by prediction time, hyper-parameters and seed.
struct model_def {
  std::string name;
  std::string label;
  std::string kind = "logistic";    // logistic | mlp
  std::vector<int> hidden{32, 16};  // mlp only
  int epochs = 5;
  int batch_size = 512;
  double learning_rate = 0.01;
  double weight_decay = 0;
  uint64_t seed = 1;
  std::vector<std::string> features;  // dataset columns; empty = every feature of the label
  // Examples with prediction time in [train_from, valid_from) train, [valid_from, test_from)
  // validate (early stopping, calibration check), [test_from, test_to) test.
  int64_t train_from = 0, valid_from = 0, test_from = 0, test_to = 0;
  // Serving: the share of predictions written to the prediction log (1 = every one).
  double log_sample = 1;
  // The share of production's examples that its shadow versions score too (1 = every one).
  double shadow_sample = 1;
  // Serving: feature values older than this (event time to read time) are not used; the example
  // goes to the fallback (or fails without one). 0: any age.
  int64_t max_feature_age_us = 0;
  // What answers when the model cannot: another model (its production version) or a constant
  // score, used when the model fails, its features are missing or older than the bound, or the
  // deadline would be missed (the model gets the deadline less `reserve`). Empty: none.
  struct fallback_def {
    std::string model;
    bool has_constant = false;
    double constant = 0;
    int64_t reserve_us = 20000;  // 20 ms of the deadline kept for the fallback
    bool any() const { return has_constant || !model.empty(); }
  } fallback;
  // Stream-following (`follow = { stream = "departures", when = "distance > 100" }`): one
  // prediction per event of `stream` for which `when` holds, at the event's time, built from
  // the event's fields that the label's stream has; published on tsr.pred.<model>
  // (actors/inference/follower.h). `from_start`: a new follower starts at the stream's first
  // event instead of its next one. Empty stream: the model follows nothing.
  struct follow_def {
    std::string stream;
    std::string when;
    std::shared_ptr<const expr> when_expr;  // slots = indices into the stream's fields
    bool from_start = false;
    bool any() const { return !stream.empty(); }
  } follow;
  // Decisions from the score and the features (rules.h); null: none (answers carry no decision).
  std::shared_ptr<const rule_set> rules;
  // Live quality (actors/monitoring/quality_service.h): `monitor = { max_label_delay = "2d",
  // label_grace = "1h", window = 50000 }` joins the label's events (the label stream: a flight's
  // arrival) to the model's logged predictions by the label entity and prediction time.
  struct monitor_def {
    bool on = false;
    int64_t max_label_delay_us = 2LL * 86400 * 1000000;
    int64_t label_grace_us = 3600LL * 1000000;
    int64_t window = 50000;  // pairs per version and stage the figures are over (the latest)
    // Automatic rollback (`rollback = true`): a canary significantly worse than production
    // (quality.h compare() at `alpha`, both with at least `min_pairs` pairs) goes back to
    // candidate; a production version whose live AUC is significantly below `min_auc` (the
    // interval's upper end under it) or log loss above `max_log_loss` within `rollback_within`
    // of its promotion goes back to the previous production version.
    bool rollback = false;
    double alpha = 0.01;
    int64_t min_pairs = 200;
    double min_auc = 0;       // 0: no AUC objective
    double max_log_loss = 0;  // 0: no log-loss objective
    int64_t rollback_within_us = 7LL * 86400 * 1000000;
    // Drift of the inputs and score over the prediction log against the training reference
    // (actors/monitoring/drift_monitor.h): windows of `drift_window` event time tested every
    // `drift_step`, at a false-alarm rate per value and window, ignoring PSI under drift_min_psi.
    // `drift_window = "1d"` or several, `drift_window = { "1h", "1d" }` (each its own windows,
    // alarms and alert; drift_window_us is the first); one step for all.
    int64_t drift_window_us = 86400LL * 1000000;
    std::vector<int64_t> drift_windows_us{86400LL * 1000000};
    int64_t drift_step_us = 3600LL * 1000000;
    double drift_false_alarm_rate = 0.01;
    double drift_min_psi = 0.01;
    // Training/serving skew sampled continuously: every `skew_every` (wall clock; 0: never) the
    // leader recomputes the last `skew_sample` logged vectors from the offline log (tessera
    // skew); more than `max_skew_share` of them differing raises skew.<model> (ticket).
    int64_t skew_every_us = 600LL * 1000000;
    int64_t skew_sample = 200;
    double max_skew_share = 0.01;
    // Objectives on what each node serves of the model (actors/monitoring/slo.h, burn rates:
    // page at 14.4x over 1h and 5m, ticket at 6x over 6h and 30m): the share of predictions that
    // may fail, take longer than slo_latency_ms, or be answered by the fallback. 0: none.
    // Feature freshness: the share of the node's applied event batches whose events took longer
    // than slo_freshness_ms from JetStream storing them to being readable (the node's
    // `apply total` stage, every stream it serves).
    double slo_error_rate = 0;
    double slo_latency_ms = 0, slo_latency_rate = 0;
    double slo_fallback_rate = 0;
    double slo_freshness_ms = 0, slo_freshness_rate = 0;
    bool any_slo() const {
      return slo_error_rate > 0 || slo_latency_rate > 0 || slo_fallback_rate > 0 ||
             slo_freshness_rate > 0;
    }
  } monitor;
};

// A model feature naming another model's score ("model:NAME", a chained model): NAME; else "".
std::string chained_model(const std::string& feature);

class definitions {
 public:
  // Loads and validates a definitions file. Errors name the file and line.
  static result<std::shared_ptr<const definitions>> load_file(const std::string& path);
  static result<std::shared_ptr<const definitions>> load_string(
      const std::string& source, const std::string& chunk_name = "definitions");

  const std::vector<stream_def>& streams() const { return streams_; }
  const std::vector<entity_def>& entities() const { return entities_; }
  const std::vector<view_def>& views() const { return views_; }
  const std::vector<kind_plan>& plans() const { return plans_; }
  const stream_def* find_stream(const std::string& name) const;
  const entity_def* find_entity(const std::string& name) const;
  // Accepts "name" (latest version) or "name@version".
  const view_def* find_view(const std::string& name) const;
  const kind_plan* find_plan(const std::string& stream, const std::string& entity) const;
  const std::vector<label_def>& labels() const { return labels_; }
  const std::vector<model_def>& models() const { return models_; }
  const label_def* find_label(const std::string& name) const;
  const model_def* find_model(const std::string& name) const;
  std::vector<const kind_plan*> plans_for_stream(const std::string& stream) const;

 private:
  friend class definitions_builder;  // definitions_reader_internal.h
  // Plans storage once streams, entities and views are read (storage_plan.h).
  status finish();

  std::vector<stream_def> streams_;
  std::vector<entity_def> entities_;
  std::vector<view_def> views_;
  std::vector<kind_plan> plans_;
  std::vector<label_def> labels_;
  std::vector<model_def> models_;
};

}  // namespace tessera
