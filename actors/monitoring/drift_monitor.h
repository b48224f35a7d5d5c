// Drift of one model's inputs and score over the prediction log, per version, against the
// reference distributions its training recorded (the registry record's "reference": inputs in
// the model's input order, and the predictions). Plain C++, no NATS: the monitoring service
// feeds it the logged predictions and asks for verdicts.
//
// Each value has a sliding window of event time (the prediction time) of `window_us`, kept in
// `window_us / step_us` buckets (drift.h sliding_counts). Each time event time crosses a step
// boundary at least a window after the first prediction (only full windows are tested), and
// once event time is a further step past it (late predictions are in by then), every version's
// windows are tested at that boundary (drift.h test_drift: thresholds
// from the statistic's distribution under no change for the observed counts, at the configured
// false-alarm rate) and each value's k-of-n alarm (drift.h drift_alarm) is fed: a value is
// *alarming* while its alarm is up. Results are ranked by contribution to the drifted PSI.
// Thread safety: none; the service holds its lock.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "drift.h"
#include "tessera/result.h"

namespace tessera::monitoring {

// A reference as evaluation.h's to_json(distribution) writes it.
result<drift_reference> reference_from_json(const nlohmann::json& j);

class drift_monitor {
 public:
  struct options {
    int64_t window_us = 86400LL * 1000000;
    int64_t step_us = 3600LL * 1000000;
    drift_config config;
    persistence persist;
  };
  explicit drift_monitor(options o) : o_(o) {}

  // The references of `version`: its inputs (in the logged vector's order) and its score.
  void set_reference(uint32_t version, std::vector<drift_reference> inputs,
                     std::optional<drift_reference> score);
  // `version` has no reference (an imported model): its predictions are not tested.
  void set_no_reference(uint32_t version, std::string why);
  bool knows(uint32_t version) const { return versions_.count(version) != 0; }

  // One logged prediction (NaN in `vector`: a missing value). A vector of another length than
  // the reference's is not counted (mismatched() counts it).
  void add(uint32_t version, int64_t time_us, const std::vector<double>& vector, double score);

  // Tests every version at the last step boundary event time has crossed up to `now_us` (once
  // a full window lies behind it); true when it tested.
  bool advance(int64_t now_us);

  struct version_drift {
    uint32_t version = 0;
    int64_t window_us = 0;  // this monitor's window
    bool has_reference = false;
    std::string why;                    // without a reference: why
    int64_t at_us = 0;                  // the boundary last tested (0: none yet)
    uint64_t n = 0;                     // predictions in that window
    uint64_t tests = 0;                 // boundaries tested
    std::vector<ranked> values;         // inputs and the score, drifted first, by contribution
    std::vector<std::string> alarming;  // values whose alarm is up, in `values` order
  };
  std::vector<version_drift> status() const;
  uint64_t mismatched() const { return mismatched_; }

  // Every version's windows, alarms and last results (checkpoint.cc). restore() replaces them
  // and returns false, changing nothing, when the saved windows are of another length or step
  // (the definitions changed); throws (std::exception) on a malformed one.
  nlohmann::json save() const;
  bool restore(const nlohmann::json& j);

 private:
  struct tracked {
    bool has_reference = false;
    std::string why;
    std::vector<sliding_counts> inputs;
    std::optional<sliding_counts> score;
    std::vector<drift_alarm> alarms;  // inputs, then the score
    version_drift last;
  };
  void test(uint32_t version, tracked& t, int64_t at_us);
  options o_;
  std::map<uint32_t, tracked> versions_;
  int64_t next_boundary_ = 0;  // 0: set from the first prediction
  int64_t first_us_ = 0;       // the first prediction's time: windows are tested once full
  uint64_t mismatched_ = 0;
};

}  // namespace tessera::monitoring
