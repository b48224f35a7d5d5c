// The C++ client of a Tessera node's RPC gateway: what the CLI, the tests, the benchmarks and
// users' services call. One `connection` is one TCP connection to one node (any node answers
// for any entity), reused by every call and re-opened after it breaks.
//
// Threads: a connection runs its own event loop on its own thread; every method may be called
// from any thread, concurrently. Blocking methods wait for their answer (ingest, features and
// dataset parts first yield the CPU for up to 0.3 ms before sleeping, as loopback answers
// come that quickly); the *_async ones return a std::future. Destroying the connection stops its
// thread; calls still in flight then end with an `internal` error ("the connection was closed").
//
// Errors: every call returns a tessera::result with an error code (include/tessera/result.h):
// invalid, not_found, retryable, overloaded, deadline, unauthorized, internal — and unavailable
// when no node answers at the address (refused, or the connection broke). The node writes the
// code into the RPC error (include/tessera/wire_error.h); nothing here reads error text.
//
// Retries (retry_policy): a call is repeated, after a back-off doubling from `first_backoff`
// up to `max_backoff`, at most `attempts` times in all, when its error is overloaded (the node
// refused it before doing anything), or retryable (a shard moving) or unavailable (the
// connection broken), and the call is safe to repeat: reads, status, jobs, the registry's reads,
// promote (to the same stage twice is once), dataset parts, and ingest with a batch id (the node
// stores a batch id once). Ingest without a batch id, train, rollback and import are not repeated
// on a retryable error: the caller decides. Each attempt has `timeout`; past it the call ends with
// `deadline`.
#pragma once
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "tessera/result.h"
#include "tessera/schemas/gateway.capnp.h"

namespace capnp {
class MallocMessageBuilder;
}

namespace tessera::client {

struct retry_policy {
  int attempts = 5;  // in all, the first included; 1 = never repeat
  std::chrono::milliseconds first_backoff{50};
  std::chrono::milliseconds max_backoff{2000};
};

struct options {
  std::string address = "127.0.0.1:7400";      // HOST:PORT of any node
  std::chrono::milliseconds timeout{120'000};  // per attempt
  retry_policy retry;
  uint64_t max_message_words = 64ull * 1024 * 1024;  // 512 MiB: dataset parts, artifacts
};

// A microsecond timestamp (as opposed to a plain integer field).
struct timestamp {
  int64_t micros = 0;
  bool operator==(const timestamp& o) const { return micros == o.micros; }
};
// A field or feature value. Text is accepted for any declared field type (the node converts it).
using value = std::variant<std::monostate, int64_t, double, std::string, bool, timestamp,
                           std::vector<std::string>>;

struct event {
  std::vector<std::pair<std::string, value>> fields;
  int64_t event_time = 0;  // µs; 0: the stream's time field
  int64_t known_time = 0;  // µs; 0: when stored, -1: at its event time (a replay of history)
};

struct rejection {
  uint32_t index = 0;  // of the event in the call
  std::string field;   // empty: the event as a whole
  std::string reason;
};

struct ingest_result {
  uint32_t accepted = 0;
  uint32_t duplicates = 0;  // accepted before under the same batch id
  uint32_t late = 0;        // older than the online windows: training sets only
  std::vector<rejection> rejected;
};

enum class vector_status { missing, fresh, stale };

struct feature_value {
  std::string name;
  value v;
  int64_t event_time = 0;
};

struct feature_vector {
  std::string view;
  uint32_t version = 0;
  std::string entity;
  int64_t as_of = 0;
  int64_t event_time = 0;
  vector_status status = vector_status::missing;
  std::vector<feature_value> values;
  // The value of feature `name`, or nullptr when the vector has no such feature.
  const value* find(const std::string& name) const;
};

struct version_summary {
  uint32_t version = 0;
  std::string stage;
  std::string created;
  double share = 0;  // canary: the share of label entities it serves
};
struct model_summary {
  std::string name;
  uint32_t production = 0;  // 0: none
  std::vector<version_summary> versions;
  std::vector<std::pair<uint32_t, double>> ab;  // A/B arms: version, share
};

// Inference (schemas/inference.capnp).
struct example {
  std::vector<std::pair<std::string, value>> fields;  // the label stream's fields, by name
  int64_t as_of = 0;  // µs; 0: the label's prediction_time from the fields, else the clock
  std::string request_id;
};

struct predict_options {
  uint32_t version = 0;                   // 0: the production version
  std::chrono::milliseconds deadline{0};  // 0: the node's default (1 s)
  int64_t max_feature_age_us = 0;         // > 0: older feature values fail the example
  bool return_vector = false;             // fill prediction::features
  bool no_batch = false;                  // one forward pass per example (comparisons)
  // Replay-clock streams: read features only once their shards have applied the stream up to
  // each example's prediction time (waiting at most 2 s), as a point-in-time dataset sees them.
  bool settled = false;
};

struct feature_used {
  std::string name;  // on-demand name or "view.feature"
  double value = 0;  // as given to the model; NaN when missing
  int64_t event_time = 0;
  int64_t age_us = -1;
  vector_status status = vector_status::missing;
};

struct prediction {
  double score = 0;
  uint32_t version = 0;
  std::string stage, path, node, request_id;
  int64_t prediction_time = 0;
  uint32_t latency_us = 0;             // on the scoring node
  std::vector<feature_used> features;  // with predict_options::return_vector
  // The model's rules, when it has them: the decision label and the rule that fired
  // ("name@version"; "on_error@version" when a rule failed and its on_error label answered).
  std::string decision, rule;
  // Set when this example failed (the others of the call did not).
  std::string error;
  errc code = errc::internal;
  bool ok() const { return error.empty(); }
};

struct model_request {
  std::string model;
  predict_options options;
};
struct model_predictions {
  std::string model;
  std::vector<prediction> predictions;  // empty when the model failed as a whole
  std::string error;
  errc code = errc::internal;
};

struct prediction_log_page {
  std::vector<std::string> records;  // JSON, one per prediction
  uint64_t last_seq = 0;             // pass as after_seq to continue
};

struct exported_model {
  std::string artifact;  // TorchScript bytes
  uint32_t version = 0;
};

// A Cap'n Proto struct copied out of an answer: readable from any thread for as long as this
// object (or a copy of it) lives.
template <typename T>
class owned {
 public:
  owned(std::shared_ptr<capnp::MallocMessageBuilder> m, typename T::Reader r)
      : msg_(std::move(m)), reader_(r) {}
  typename T::Reader get() const { return reader_; }
  typename T::Reader operator*() const { return reader_; }
  const typename T::Reader* operator->() const { return &reader_; }

 private:
  std::shared_ptr<capnp::MallocMessageBuilder> msg_;
  typename T::Reader reader_;
};

class connection {
 public:
  // Starts the connection's thread. The TCP connection opens with the first call (and again
  // after it breaks), so this succeeds without a node; the calls then say whether one answers.
  static std::unique_ptr<connection> open(options o);
  static std::unique_ptr<connection> open(const std::string& address) {
    options o;
    o.address = address;
    return open(std::move(o));
  }
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  const options& settings() const;

  // Features (schemas/features.capnp).
  result<ingest_result> ingest(const std::string& stream, const std::vector<event>& events,
                               const std::string& batch_id = "");
  std::future<result<ingest_result>> ingest_async(const std::string& stream,
                                                  std::vector<event> events,
                                                  const std::string& batch_id = "");
  // as_of: 0 the stream's clock; < 0 that many µs before it; > 0 a time (µs since the epoch).
  result<std::vector<feature_vector>> features(const std::string& view,
                                               const std::vector<std::string>& entities,
                                               int64_t as_of = 0);
  std::future<result<std::vector<feature_vector>>> features_async(const std::string& view,
                                                                  std::vector<std::string> entities,
                                                                  int64_t as_of = 0);

  // The node (schemas/tessera.capnp NodeStatus): its shards, clocks, the cluster, jobs.
  result<owned<wire::NodeStatus>> status();

  // Training and the registry (schemas/training.capnp).
  // The node must serve the shard (status().shardOwners): else retryable (ask its owner).
  result<owned<wire::DatasetPart>> dataset_shard(const std::string& label, uint32_t shard,
                                                 int64_t from, int64_t to);
  std::future<result<owned<wire::DatasetPart>>> dataset_shard_async(const std::string& label,
                                                                    uint32_t shard, int64_t from,
                                                                    int64_t to);
  result<std::string> train(const std::string& model);  // the job's id
  result<owned<wire::JobStatus>> job(const std::string& job_id);
  result<std::vector<model_summary>> list_models();
  // version 0: the production version, or the latest when none is.
  result<owned<wire::ModelVersion>> show_model(const std::string& name, uint32_t version = 0);
  // The registry's own JSON records (the root Gateway's listModels and showModel): for tools
  // that print or store them as they are.
  result<std::string> list_models_json();
  result<std::string> show_model_json(const std::string& name, uint32_t version = 0);
  // share: for stage "canary", the share of label entities it serves (< 0: the node's 0.1).
  tessera::status promote_model(const std::string& name, uint32_t version, const std::string& stage,
                                double share = -1);
  // A/B arms (version, share); empty ends the A/B test. Errors: not_found (model, version),
  // invalid (share outside [0, 1], sum over 1, an archived or canary version).
  tessera::status set_ab_arms(const std::string& name,
                              const std::vector<std::pair<uint32_t, double>>& arms);
  // The model as a whole (stages, shares, arms, fallback, ...), JSON text (describeModel).
  result<std::string> describe_model_json(const std::string& name);
  result<uint32_t> rollback_model(const std::string& name);  // the version now in production
  result<uint32_t> import_model(const std::string& name, const std::string& label,
                                const std::string& torchscript);
  result<exported_model> export_model(const std::string& name, uint32_t version = 0);

  // Inference (schemas/inference.capnp). A call error (unknown model, no production version,
  // overloaded) fails the whole call; an example's own failure is in its prediction. Retried
  // like reads: predictions change no state.
  result<std::vector<prediction>> predict(const std::string& model,
                                          const std::vector<example>& examples,
                                          const predict_options& o = {});
  std::future<result<std::vector<prediction>>> predict_async(const std::string& model,
                                                             std::vector<example> examples,
                                                             const predict_options& o = {});
  // Several models on the same examples, concurrently; one model's failure leaves the others.
  result<std::vector<model_predictions>> predict_models(const std::vector<model_request>& models,
                                                        const std::vector<example>& examples);
  // The prediction log of `model`: up to `limit` records after `after_seq` (0: the last ones).
  result<prediction_log_page> tail_predictions(const std::string& model, uint32_t limit,
                                               uint64_t after_seq = 0);
  // Logged vectors recomputed from the offline log (JSON report, see README "Skew").
  result<std::string> skew(const std::string& model, uint32_t sample);

  // What the node's ingest saw of `stream`'s expectations (JSON, see features.capnp).
  result<std::string> validation_report(const std::string& stream);

  // Monitoring (schemas/monitoring.capnp): the cluster's alerts as JSON text.
  result<std::string> alerts_json();
  // The alert log after sequence `after`: (JSON array, the last sequence read).
  result<std::pair<std::string, uint64_t>> alert_log(uint64_t after, uint32_t limit = 0);
  tessera::status acknowledge_alert(const std::string& key, const std::string& by);
  tessera::status silence_alert(const std::string& key, uint32_t seconds, const std::string& by);

  struct impl;

 private:
  explicit connection(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace tessera::client
