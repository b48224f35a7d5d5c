// Delayed labels joined to logged predictions (issue 17, live quality): a flight's arrival, with
// its delay, labels the prediction made at its departure, by the flight's key. Plain C++, no
// actors; the monitoring actor feeds it in event time and reads the pairs.
//
// What happens to each input (documented in actors/monitoring/README.md, tested in
// tests/unit/label_join_test.cc):
//   - a prediction waits for its label up to `max_label_delay` past its prediction time; then it
//     is counted `unlabelled` and dropped;
//   - a label joins every waiting prediction of its key (one per model and stage: production,
//     canary, shadow...) whose prediction time is at or before the label's time and no more than
//     `max_label_delay` before it; a prediction further back is counted `late` and not joined;
//   - a label that finds no prediction waits `label_grace` (the prediction may still be on its
//     way: the follower's lag) and is then counted `unmatched`; a prediction that arrives for it
//     meanwhile is joined then (one that arrives after the grace is counted `late`);
//   - a second label for a key already labelled is counted `duplicate_labels` and ignored (the
//     first label wins); a second prediction of the same model and stage for a key is counted
//     `duplicate_predictions` and ignored (a retried publish);
//   - past `max_pending` waiting predictions the oldest are dropped and counted.
// Thread safety: none (one owner).
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tessera::monitoring {

struct labelled_pair {
  std::string model, stage;
  uint32_t version = 0;
  double score = 0;
  double label = 0;  // 0 or 1
  int64_t prediction_time = 0, label_time = 0;
};

class label_join {
 public:
  struct options {
    int64_t max_label_delay_us = 2LL * 86400 * 1000000;  // 2 days
    int64_t label_grace_us = 3600LL * 1000000;           // 1 hour
    size_t max_pending = 2'000'000;
  };
  struct counts {
    uint64_t predictions = 0, labels = 0, joined = 0, unlabelled = 0, late = 0, unmatched = 0;
    uint64_t duplicate_labels = 0, duplicate_predictions = 0, dropped = 0;
  };

  label_join() : label_join(options{}) {}
  explicit label_join(options o) : o_(o) {}

  // Pairs made by this call land in `out` (appended).
  void prediction(const std::string& key, const std::string& model, uint32_t version,
                  const std::string& stage, double score, int64_t prediction_time,
                  std::vector<labelled_pair>& out);
  void label(const std::string& key, double y, int64_t label_time, std::vector<labelled_pair>& out);
  // Event time has reached `now`: predictions past their label delay and labels past their grace
  // are counted and dropped.
  void advance(int64_t now);

  const counts& figures() const { return c_; }
  size_t waiting_predictions() const { return pending_count_; }
  size_t waiting_labels() const { return orphans_; }

  // The whole state (counts, waiting predictions and labels, expiries) for a checkpoint
  // (checkpoint.cc); restore() replaces this one's state (options stay) and throws
  // (std::exception) on a malformed one.
  nlohmann::json save() const;
  void restore(const nlohmann::json& j);

 private:
  struct pending {
    std::string model, stage;
    uint32_t version;
    double score;
    int64_t time;
  };
  struct key_state {
    std::vector<pending> preds;                             // waiting for the label
    std::vector<std::pair<std::string, std::string>> seen;  // (model, stage) predicted
    bool labelled = false, joined = false, orphan_counted = false;
    int64_t label_time = 0;  // labelled: when (kept to refuse duplicates until expiry)
    double y = 0;
  };
  void join(key_state& k, const pending& p, std::vector<labelled_pair>& out);
  void expire(const std::string& key, int64_t now);
  options o_;
  counts c_;
  std::unordered_map<std::string, key_state> keys_;
  // When to look at a key again: (event time, key); a key may be listed more than once.
  std::multimap<int64_t, std::string> expiry_;
  size_t pending_count_ = 0, orphans_ = 0;
};

}  // namespace tessera::monitoring
