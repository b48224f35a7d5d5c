// The node's one NATS connection: JetStream streams and consumers for event streams, async
// pulls that deliver to shard actors, async publishes with per-message acknowledgement, and
// dead letters; request/reply between nodes goes through its request_mux (request_mux.h).
// Subjects are documented in schemas/SUBJECTS.md.
//
// Lifecycle: connect() in node start, destroyed in node stop after the actors are gone.
// Threads: callbacks (deliveries, publish acks) run on libnats threads; every method is
// thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "definitions.h"
#include "request_mux.h"
#include "tessera/result.h"
#include "worker_pool.h"

struct __natsConnection;
struct __jsCtx;
struct __natsSubscription;
struct __natsMsg;
struct jsPubAck;
struct jsPubAckErr;

namespace tessera {

std::string stream_subject_prefix(const std::string& stream);  // "tsr.ev.<stream>"
std::string event_subject(const std::string& stream, const std::string& kind, uint32_t shard);
std::string jetstream_name(const std::string& stream);  // "TSR_<stream>"
// Durable consumers are per node: two nodes that both believe they own a shard (a partition,
// a node declared dead while alive) each read the whole shard instead of splitting it.
std::string consumer_name(const std::string& kind, uint32_t shard, const std::string& node_id);

// A JetStream stream to create (or, with `update`, whose limits to bring up to date).
struct jetstream_spec {
  std::string name;                 // e.g. "TSR_DLQ"
  std::string subject;              // its one subject filter, e.g. "tsr.dlq.>"
  int64_t max_age_us = 0;           // 0: unlimited
  int64_t max_bytes = -1;           // -1: unlimited
  int64_t duplicate_window_us = 0;  // 0: the server's default (2 min)
  int32_t max_msg_size = -1;
  bool allow_direct = false;  // direct gets (reads without a consumer)
  bool update = false;        // an existing stream takes these limits
  int replicas = 1;
};
status ensure_jetstream(__jsCtx* js, const jetstream_spec& spec);

// One message delivered to a consumer's pull, or the end of a pull.
struct delivery {
  uint64_t pull_no = 0;
  bool end = false;         // the pull request finished (timeout, or server status)
  std::string status;       // the status code when `end`
  std::string description;  // the server's words for it ("Message Size Exceeds MaxBytes")
  uint64_t seq = 0;         // stream sequence
  uint64_t cseq = 0;        // consumer sequence: +1 per delivery of the consumer, without gaps
  uint64_t pending = 0;     // messages left in the consumer after this one
  int64_t stored_ns = 0;    // when JetStream stored it (ns since the epoch)
  int64_t received_ns = 0;  // when this process received it (ns since the epoch)
  uint64_t inbox_gen = 0;   // set by the receiver: which of its inboxes it came through
  std::string ack_subject;  // reply subject for acknowledgement
  std::string data;
};

class bus {
 public:
  struct options {
    std::string url;
    std::string node_id;  // letters, digits, '-', '_'
    int replicas = 1;     // of the streams it creates
  };
  static result<std::unique_ptr<bus>> connect(const options& o);
  ~bus();

  const std::string& url() const { return url_; }
  bool connected() const;

  // Creates the JetStream stream of an event stream, or updates its limits.
  status ensure_stream(const stream_def& s);
  status ensure_dlq_stream();
  // Makes the durable consumer of (stream, kind, shard) deliver from `start_seq` (the shard's
  // applied sequence + 1): the shard's stored sequence is the only truth about what was
  // applied. The first open in a process keeps an existing consumer when it has delivered
  // nothing beyond the applied sequence (creating a filtered consumer on a long stream is
  // slow on nats-server 2.9); otherwise, and on every later open, it is deleted and re-created.
  // Returns the consumer sequence its next delivery carries (1 for a new consumer): deliveries
  // are numbered without gaps, so a gap means some were lost on the way (see delivery::cseq).
  result<uint64_t> open_consumer(const std::string& stream, const std::string& kind, uint32_t shard,
                                 uint64_t start_seq);
  // The same, on the bus's worker threads; `done` runs there.
  void open_consumer_async(const std::string& stream, const std::string& kind, uint32_t shard,
                           uint64_t start_seq, std::function<void(result<uint64_t>)> done);

  // A private inbox for one consumer's deliveries. Each shard incarnation opens its own, so a
  // delivery meant for an earlier incarnation can never reach a later one. Unsubscribes when
  // destroyed; `fn` is not called after that.
  using delivery_fn = std::function<void(delivery&&)>;
  class inbox {
   public:
    ~inbox();
    const std::string& subject() const { return subject_; }

   private:
    friend class bus;
    bus* owner_ = nullptr;
    std::string subject_;
    __natsSubscription* sub_ = nullptr;
    void* box_ = nullptr;
  };
  result<std::unique_ptr<inbox>> open_inbox(delivery_fn fn);
  // Asks for up to `batch` messages of at most `max_bytes` in all (0: no limit; a first message
  // larger than the limit ends the pull with 409 "Message Size Exceeds MaxBytes" and is not
  // delivered), delivered to `in` (data messages carry pull_no 0; the end of the pull carries
  // its number). Returns the pull number, or 0 if not sent.
  uint64_t pull(const std::string& stream, const std::string& kind, uint32_t shard, const inbox& in,
                int batch, int64_t max_bytes, int64_t expires_ms);
  void ack(const std::string& ack_subject);
  // Deletes this node's consumer of (stream, kind, shard), e.g. after handing the shard off.
  void delete_consumer(const std::string& stream, const std::string& kind, uint32_t shard);
  void delete_consumer_async(const std::string& stream, const std::string& kind, uint32_t shard);
  // Where the consumer is (server's view), on a worker thread; an error when the consumer is
  // missing or does not answer.
  struct consumer_position {
    uint64_t pending = 0;  // messages not delivered yet (NumPending)
    uint64_t last = 0;     // stream sequence of the shard's newest message (0: none, or unknown)
  };
  void consumer_pending_async(const std::string& stream, const std::string& kind, uint32_t shard,
                              std::function<void(result<consumer_position>)> done);

  // Core NATS request/reply between nodes (request_mux.h). `reply` runs on a libnats thread with
  // the answer, or with an error after `timeout_ms` or when nobody listens.
  using reply_fn = request_mux::reply_fn;
  void request(const std::string& subject, const std::string& data, int64_t timeout_ms,
               reply_fn reply);
  // Serves requests on `subject`: `fn(data, reply_subject)` runs on a libnats thread and must
  // not block; answer later with respond().
  using serve_fn = request_mux::serve_fn;
  status serve(const std::string& subject, serve_fn fn);
  void respond(const std::string& reply_subject, const std::string& data);
  __jsCtx* jetstream() const { return js_; }
  __natsConnection* connection() const { return nc_; }

  // Publishes to JetStream; `done(error, duplicate)` runs on a libnats thread once the server
  // stored (or refused) the message. `msg_id` (may be empty) de-duplicates within the window.
  using ack_fn = std::function<void(const std::string& error, bool duplicate)>;
  void publish(const std::string& subject, const void* data, size_t len, const std::string& msg_id,
               ack_fn done);
  // Publishes a dead-letter record on tsr.dlq.<stream> (fire and forget).
  void publish_dead_letter(const std::string& stream, const std::string& json);

 private:
  bus() = default;
  static void on_inbox(__natsConnection*, __natsSubscription*, __natsMsg* msg, void* closure);
  static void on_pub_ack(__jsCtx*, __natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure);

  std::string url_;
  std::string node_id_;
  int replicas_ = 1;
  std::string inbox_prefix_;
  __natsConnection* nc_ = nullptr;
  __jsCtx* js_ = nullptr;

  std::atomic<uint64_t> next_pull_{1};
  std::atomic<uint64_t> next_inbox_{1};
  std::atomic<uint64_t> next_token_{1};
  void retire(__natsSubscription* sub, void* box);

  std::mutex mu_;  // protects the map and list below
  // Unsubscribed inboxes, destroyed only with the connection: libnats' shared delivery
  // threads may still touch a subscription for a moment after it is unsubscribed.
  std::vector<std::pair<__natsSubscription*, void*>> retired_;
  std::unordered_map<std::string, int> opened_;           // consumer → opens in this process
  std::unordered_map<std::string, std::string> current_;  // consumer → its name on the server now
  // Consumers whose last creation timed out: the next one takes a new name (see open_consumer).
  std::unordered_map<std::string, bool> creation_timed_out_;
  std::unordered_map<uint64_t, ack_fn> pending_acks_;

  std::unique_ptr<request_mux> mux_;  // request(), serve(), respond()
  // Blocking JetStream API calls made on behalf of actors (the *_async methods). Stopped first
  // in the destructor; queued calls are dropped then: the actors that asked are gone.
  worker_pool workers_{{8, worker_pool::at_stop::drop}};
  void run_async(std::function<void()> job);  // on a worker thread
};

}  // namespace tessera
