// Alerts kept in JetStream, so that they survive any node (alerts.h has the state machine):
//   - TSR_ALERTS, a KV bucket: one record per deduplication key, changed only by compare-and-swap
//     of its revision, so that nodes observing the same condition move it once;
//   - TSR_ALERT_LOG, a stream on tsr.alert.<severity>.<name>: every transition to firing or
//     resolved, published by whoever observes it due (alerts.h `notified`), with the message id
//     "<key>:<transition>" that JetStream de-duplicates within an hour: a node SIGKILLed between
//     recording and publishing loses nothing, and a second publisher adds nothing.
// `tessera alerts` lists the records and follows the log.
// Thread safety: blocking NATS calls, thread-safe.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "alerts.h"
#include "tessera/result.h"

struct __jsCtx;

namespace tessera {

class kv_bucket;

class alert_store {
 public:
  struct options {
    int replicas = 1;
  };
  static result<std::unique_ptr<alert_store>> open(__jsCtx* js, const options& o);
  ~alert_store();

  // Observes `condition` for spec.key at `now_us` (monitoring::observe) and publishes what is
  // due. Returns the alert as it is now.
  result<monitoring::alert> observe(const monitoring::alert_spec& spec, bool condition,
                                    int64_t now_us, const std::string& summary,
                                    const nlohmann::json& details);
  // Every alert, or those not inactive; newest change first.
  result<std::vector<monitoring::alert>> list(bool include_inactive) const;
  // Marks a firing alert as seen by `by` (invalid when it is not firing; not_found: no such key).
  status acknowledge(const std::string& key, const std::string& by, int64_t now_us);
  // Suppresses the alert's notifications until `until_us` (0: lifts the silence).
  status silence(const std::string& key, const std::string& by, int64_t until_us);

  // The log from sequence `after` + 1 on: at most `limit` transitions (JSON records with their
  // "seq" and "subject"), and the last sequence read.
  result<std::pair<std::vector<nlohmann::json>, uint64_t>> log(uint64_t after, size_t limit) const;

  static constexpr const char* kBucket = "TSR_ALERTS";
  // How often a pending or firing alert's changed summary is written back to its record.
  static constexpr int64_t kSummaryRefreshUs = 5 * 1000000;
  static constexpr const char* kLog = "TSR_ALERT_LOG";

 private:
  alert_store() = default;
  // Publishes a due transition of `a` (revision `rev`) and records it as published.
  void publish_due(monitoring::alert a, uint64_t rev, int64_t now_us);
  template <typename Fn>
  status change(const std::string& key, Fn&& fn);
  __jsCtx* js_ = nullptr;
  std::unique_ptr<kv_bucket> kv_;
};

}  // namespace tessera
