// Stream-following predictions (issue 16, "the asynchronous pattern"): a model declared with
// `follow = { stream = "departures", when = "expr" }` is scored once per event of that stream,
// at the event's time, and each prediction is published durably on tsr.pred.<model> (stream
// TSR_PREDS), exactly once per event.
//
// How (schemas/SUBJECTS.md, "Stream-following predictions"):
//   - one durable pull consumer per followed model, `follow_<model>` on TSR_<stream>, shared by
//     every node (JetStream hands each event message to one of them; a node that dies leaves
//     its unacknowledged messages to the others after `ack_wait`). It reads the subjects of one
//     entity kind of the stream (every kind carries the same events), explicit acks;
//   - each event message becomes one predict call (predictor.h: each example goes to the node
//     owning its label entity, read at the event's time); the example is the event's fields
//     that the label's stream declares. Its features are read settled (predict_options::
//     settled): each shard answers once it has applied its stream up to the prediction time
//     (bounded), so a shard behind the follower never serves a vector missing events that the
//     point-in-time training example holds (without it, 838 of 1,362 followed vectors differed
//     in follow_test's race);
//   - the call's predictions go out as one message of JSON lines (the prediction log's format)
//     with Nats-Msg-Id `<model>:<stream seq>` — a redelivered event message (a node killed
//     after publishing, before acknowledging) is de-duplicated by JetStream — and the event
//     message is acknowledged only once JetStream stored them;
//   - a transient failure (unavailable, overloaded, a shard moving, the deadline, no
//     production version yet) is retried: the message is negatively acknowledged with a
//     back-off, up to `max_attempts` deliveries; an event that cannot be predicted (bad fields,
//     a model error) or that is still failing at the last attempt is dead-lettered on
//     tsr.dlq.pred.<model> with its reason, and the rest of the message goes on.
// Request ids are `<stream>:<stream seq>:<index in the message>`: the same event gets the same
// id on every delivery, and monitoring joins labels to predictions by them and by the fields.
// Lifecycle: started by the inference service after the predictor; stop() stops fetching and
// waits (bounded) for the messages in flight, before the predictor drains.
// Thread safety: status() from any thread.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "metrics.h"
#include "tessera/result.h"

namespace tessera {

class bus;
class definitions;
class predictor;
struct model_def;

class follower {
 public:
  struct deps {
    std::shared_ptr<const definitions> defs;
    bus* nats = nullptr;
    const predictor* predict = nullptr;
    std::string node_id;
    int replicas = 1;
  };
  struct options {
    // An event message whose predictions are not stored by then is delivered again (to any
    // node); also the longest a node works on one message.
    int64_t ack_wait_ms = 10000;
    int max_attempts = 8;     // deliveries of a message before its failing events are dead-lettered
    int max_in_flight = 256;  // event messages being predicted at once, per node and model
    int fetch_batch = 64;
    uint32_t deadline_ms = 5000;                    // of each predict call
    int64_t duplicate_window_us = 20 * 60000000LL;  // TSR_PREDS' de-duplication window
  };
  static result<std::unique_ptr<follower>> start(deps d, options o);
  ~follower();
  void stop();

  struct status_entry {
    std::string model, stream;
    uint64_t predicted = 0;      // predictions stored (not counting de-duplicated ones)
    uint64_t skipped = 0;        // events `when` left out
    uint64_t dead_lettered = 0;  // events that could not be predicted
    uint64_t retried = 0;        // messages delivered again after a transient failure
    uint64_t duplicates = 0;     // publishes JetStream had already stored (redeliveries)
    uint64_t pending = 0;        // event messages not yet delivered to any node (last seen)
    double lag_p50_ms = 0, lag_p99_ms = 0;  // event message stored → its predictions stored
  };
  std::vector<status_entry> status() const;

  static std::string subject(const std::string& model) { return "tsr.pred." + model; }
  static constexpr const char* kStream = "TSR_PREDS";

 private:
  struct model_follow;
  struct message;
  follower() = default;
  void run(model_follow* f);
  void handle(model_follow* f, std::shared_ptr<message> m);
  void finish(model_follow* f, const std::shared_ptr<message>& m);

  deps d_;
  options o_;
  std::vector<std::unique_ptr<model_follow>> follows_;
  std::atomic<bool> stopping_{false};
  log_limiter limiter_{std::chrono::seconds(10)};
};

}  // namespace tessera
