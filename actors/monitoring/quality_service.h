// Live quality of the models declared with `monitor = { ... }` (issue 17, item 3, in part): the
// label's delayed events (the flights example: a flight's arrival, with its delay) are joined to
// the model's logged predictions (made at its departure) and each version and stage gets its
// AUC, log loss, accuracy and calibration over its latest pairs, with intervals, and the canary
// is tested against production.
//
// How:
//   - predictions: the prediction log (TSR_PREDICTIONS, tsr.plog.<model>; every stage, shadows
//     too, as sampled by `log_sample`), read by an ephemeral push consumer of this node's own
//     (new messages from its start on, no acks);
//   - labels: the label stream's events (TSR_<stream>, the subjects of the label's entity kind)
//     by a second such consumer; each event's label value, label entity key and prediction time
//     come from the label definition — the same expressions the dataset build uses;
//   - the join key is the label entity's key and the prediction time ("ORD-LAX@<µs>"); the
//     rules for late, duplicate, missing and early labels are label_join.h's, in event time
//     (advanced to the latest label event time seen);
//   - figures per (version, stage) over the latest `window` pairs (quality.h).
// One node computes each model: the owner, by rendezvous hashing of the model's name over the
// live members (so monitoring is spread over the cluster and a member's death moves only its own
// models). The owner reads both streams, keeps the state, judges, and saves the state with the
// stream sequences it covers to JetStream (state_store.h) every `save_every` and when it stops
// or hands the model over; the next owner — the same node restarted, clean or SIGKILLed, or
// another node when this one died — restores it and reads on from those sequences: nothing
// counted twice, nothing forgotten. Other nodes report only who computes it.
// Verdicts (verdicts.cc): once a second the model's owner judges it — a
// canary significantly worse than production, a production version below its objectives — and
// raises, updates and resolves alerts (alert_store.h); with `rollback = true` it demotes the
// canary or rolls production back (one conditional compare-and-swap of the registry: once, even
// when an owner change makes two nodes judge).
// Skew: a thread of its own has the leader recompute each model's last logged vectors from the
// offline log every monitor.skew_every (tessera skew), shown in status; too many differing
// raises skew.<model> (ticket).
// Lifecycle: started by the node after inference; stop() joins the threads.
// Thread safety: status() from any thread.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "drift_monitor.h"
#include "label_join.h"
#include "quality.h"
#include "schemas/tessera.capnp.h"
#include "tessera/result.h"

namespace tessera {

class alert_store;
class alert_webhook;
class bus;
class cluster_view;
class definitions;
class model_registry;
class monitor_state_store;

class quality_service {
 public:
  struct deps {
    std::shared_ptr<const definitions> defs;
    bus* nats = nullptr;
    const cluster_view* view = nullptr;  // who leads (judges); null: this node judges
    std::string node_id;
    int replicas = 1;     // of the alert bucket and log it creates
    std::string webhook;  // alert transitions POSTed here (webhook.h); empty: none
    // `tessera skew` of a model over its last N logged vectors (inference_service::skew, wired
    // by the node); empty: skew is not sampled.
    std::function<result<std::string>(const std::string& model, size_t sample)> skew;
    // What this node serves, for the objectives (slo.h): per model and serving version (not
    // shadows), cumulative requests, errors, fallbacks and requests at least `slow_us` long.
    struct served_counters {
      std::string model, source;  // source: "<version>:<stage>"
      uint64_t requests = 0, errors = 0, fallbacks = 0;
      std::function<uint64_t(double us)> at_least;
    };
    std::function<std::vector<served_counters>()> serving;
    // This node's applied event batches, cumulative: (all, those at least `slow_us` from
    // JetStream storing them to committed); empty: no freshness objective is evaluated.
    std::function<std::pair<uint64_t, uint64_t>(double slow_us)> freshness;
    // How often the node computing a model saves its state (state_store.h) while it changes;
    // also when it stops or hands the model over.
    std::chrono::milliseconds save_every{5000};
  };
  static result<std::unique_ptr<quality_service>> start(deps d);
  ~quality_service();
  void stop();

  struct arm {
    std::string stage;
    uint32_t version = 0;
    uint64_t pairs = 0;
    monitoring::live_quality q;
    double lag_p50_ms = 0, lag_p99_ms = 0;
  };
  struct model_status {
    std::string model;
    std::vector<arm> arms;
    monitoring::label_join::counts counts;
    uint64_t waiting = 0;
    bool compared = false;
    monitoring::comparison canary;
    uint64_t verdicts = 0;
    int64_t saved_at_us = 0, restored_at_us = 0;  // wall clock; 0: never
    uint64_t saved_predictions = 0;               // predictions the saved state counts
    std::string owner;                            // the node computing the model
    bool owned = false;                           // this one
    std::vector<monitoring::drift_monitor::version_drift> drift;
    uint64_t drift_mismatched = 0;
    int64_t skew_at_us = 0;
    uint64_t skew_compared = 0, skew_mismatched = 0;
    std::string skew_worst;
    struct slo_state {
      std::string sli;
      double budget = 0, burn5m = 0, burn30m = 0, burn1h = 0, burn6h = 0;
      uint64_t events1h = 0;
      std::string level;
    };
    std::vector<slo_state> slos;
  };
  std::vector<model_status> status() const;
  // The cluster's alerts (null when no model is monitored); shared with the RPC's workers.
  std::shared_ptr<alert_store> alerts() const { return alerts_; }
  // Fills NodeStatus.quality.
  void fill_status(wire::NodeStatus::Builder st) const;

 private:
  struct monitored;
  quality_service() = default;
  void run(monitored* m);
  model_status status_of(const monitored& m) const;
  void judge(monitored& m);               // verdicts.h
  void save(monitored& m);                // checkpoint.h, state_store.h
  tessera::status acquire(monitored& m);  // restore the saved state, open the consumers
  void release(monitored& m);             // save, close, forget
  void close(monitored& m);
  std::string owner_of(const std::string& model) const;
  void background();  // skew (leader, every skew_every) and objectives (every 10 s)
  void sample_skew(std::vector<int64_t>& next);
  void evaluate_slos();
  deps d_;
  std::unique_ptr<model_registry> registry_;
  std::shared_ptr<alert_store> alerts_;
  std::unique_ptr<monitor_state_store> states_;
  std::unique_ptr<alert_webhook> webhook_;
  std::vector<std::unique_ptr<monitored>> models_;
  std::atomic<bool> stopping_{false};
  std::thread background_;
};

}  // namespace tessera
