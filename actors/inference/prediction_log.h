// The prediction log: every prediction served (sampled per model, default all) with the exact
// input vector, appended off the request path to the JetStream stream TSR_PREDICTIONS (subject
// tsr.plog.<model>; see schemas/SUBJECTS.md for the record format).
// append() only queues: a bounded buffer (max_records); when it is full the record is dropped
// and counted (drops()), the request never waits. One writer thread publishes what is queued,
// one JetStream message per model and flush (many JSON lines each: a message per prediction
// would cost more than the prediction).
// tail() reads a model's records back (tessera predictions tail, skew).
// Lifecycle: owned by the inference service; start() creates the stream and the writer, stop()
// writes what is queued (bounded by a few seconds) and joins the writer.
// Thread safety: append(), tail(), drops() from any thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tessera/result.h"
#include "value.h"

struct __jsCtx;

namespace tessera {

// One logged prediction: what was asked, what the model saw and what it said. Written as one
// JSON line (schemas/SUBJECTS.md, "Prediction log"); the vector holds the model's inputs as
// given to it (floats, as doubles; NaN written as null).
struct prediction_record {
  std::string model, stage, path, node, request_id;
  std::string decision, rule;  // the model's rules, when it has them
  uint32_t version = 0;
  int64_t time = 0;             // when scored, µs since the epoch
  int64_t prediction_time = 0;  // µs
  int64_t feature_time = 0;     // the features' read time (the label's snapshot rule applied)
  double score = 0;
  uint32_t latency_us = 0;
  std::shared_ptr<const std::vector<std::string>> inputs;  // the vector's column names
  std::vector<double> vector;
  std::vector<std::pair<std::string, std::string>> keys;  // view@version -> entity key
  std::vector<std::pair<std::string, value>> fields;      // the example's fields as sent
  std::string to_json() const;
};

class prediction_log {
 public:
  struct options {
    size_t max_records = 65536;
    size_t max_message_bytes = 512 * 1024;
    int replicas = 1;
    int64_t max_age_us = 7LL * 86400 * 1000000;
    int64_t max_bytes = 2LL << 30;
  };
  static result<std::unique_ptr<prediction_log>> start(__jsCtx* js, options o);
  ~prediction_log();
  void stop();

  // Queues one record (serialised by the writer, off the request path). False when dropped
  // (buffer full).
  bool append(prediction_record r);

  struct page {
    std::vector<std::string> records;
    uint64_t last_seq = 0;  // stream sequence of the last message read
  };
  // Records of `model` after stream sequence `after_seq` (up to `limit`), or with after_seq 0
  // the last `limit` records. Blocking (JetStream direct gets).
  result<page> tail(const std::string& model, size_t limit, uint64_t after_seq) const;

  uint64_t appended() const { return appended_.load(); }
  uint64_t drops() const { return drops_.load(); }
  uint64_t written() const { return written_.load(); }
  // Waits until everything appended so far is written (tests, skew); false on timeout.
  bool flush(std::chrono::milliseconds timeout);

  static std::string subject(const std::string& model) { return "tsr.plog." + model; }
  static constexpr const char* kStream = "TSR_PREDICTIONS";

 private:
  prediction_log() = default;
  void run();
  void write(const std::string& model, const std::string& payload, size_t records);

  __jsCtx* js_ = nullptr;
  options opts_;
  std::mutex mu_;  // protects queue_, stopping_
  std::condition_variable cv_, flushed_;
  std::deque<prediction_record> queue_;
  bool stopping_ = false;
  std::atomic<uint64_t> appended_{0}, drops_{0}, written_{0}, done_{0};
  std::thread writer_;
};

}  // namespace tessera
