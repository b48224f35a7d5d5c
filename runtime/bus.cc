#include "bus.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <utility>
#include <vector>

#include "nats_error.h"

namespace tessera {

std::string stream_subject_prefix(const std::string& stream) {
  return "tsr.ev." + stream;
}
std::string event_subject(const std::string& stream, const std::string& kind, uint32_t shard) {
  return "tsr.ev." + stream + "." + kind + "." + std::to_string(shard);
}
std::string jetstream_name(const std::string& stream) {
  return "TSR_" + stream;
}
constexpr int64_t kPublishAckWaitMs = 5000;  // see bus::publish
std::string consumer_name(const std::string& kind, uint32_t shard, const std::string& node_id) {
  return kind + "_" + std::to_string(shard) + "_" + node_id;
}

namespace {

struct inbox_box {
  std::mutex mu;
  bus::delivery_fn fn;  // cleared when the inbox is retired
};

std::vector<std::string> split(const char* s, char sep) {
  std::vector<std::string> out;
  const char* start = s;
  for (const char* p = s;; ++p) {
    if (*p == sep || *p == '\0') {
      out.emplace_back(start, p - start);
      if (*p == '\0') break;
      start = p + 1;
    }
  }
  return out;
}

}  // namespace

result<std::unique_ptr<bus>> bus::connect(const options& o) {
  std::unique_ptr<bus> b(new bus());
  b->url_ = o.url;
  b->node_id_ = o.node_id;
  b->replicas_ = o.replicas;
  b->inbox_prefix_ = "_INBOX.tsr." + o.node_id;
  natsOptions* opts = nullptr;
  natsOptions_Create(&opts);
  // "nats://a:4222,nats://b:4222,...": a NATS cluster; the client fails over between them.
  auto urls = split(o.url.c_str(), ',');
  if (urls.size() > 1) {
    std::vector<const char*> ptrs;
    for (auto& u : urls) ptrs.push_back(u.c_str());
    natsOptions_SetServers(opts, ptrs.data(), static_cast<int>(ptrs.size()));
  } else {
    natsOptions_SetURL(opts, o.url.c_str());
  }
  natsOptions_SetName(opts, ("tessera-" + o.node_id).c_str());
  natsOptions_SetSendAsap(opts, true);  // ~1 ms → ~0.3 ms request/reply here
  natsOptions_SetMaxReconnect(opts, -1);
  natsOptions_SetReconnectWait(opts, 250);
  natsOptions_SetReconnectBufSize(opts, 64 << 20);
  natsOptions_SetTimeout(opts, 5000);
  // One inbox per shard: deliver from a small shared pool, not a thread per subscription.
  natsOptions_UseGlobalMessageDelivery(opts, true);
  nats_SetMessageDeliveryPoolSize(2);
  natsStatus s = natsConnection_Connect(&b->nc_, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK)
    return make_error(nats_error(s, ("cannot connect to NATS at " + o.url).c_str()));

  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 10000;
  jo.PublishAsync.MaxPending = 65536;
  jo.PublishAsync.StallWait = 10000;
  jo.PublishAsync.AckHandler = &bus::on_pub_ack;
  jo.PublishAsync.AckHandlerClosure = b.get();
  s = natsConnection_JetStream(&b->js_, b->nc_, &jo);
  if (s != NATS_OK) return make_error(nats_error(s, "cannot open JetStream context"));

  auto mux = request_mux::open(b->nc_, b->inbox_prefix_);
  if (!mux) return make_error(mux.error_message());
  b->mux_ = std::move(*mux);
  return b;
}

bus::~bus() {
  workers_.stop();
  if (mux_) mux_->stop();
  if (js_) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = kPublishAckWaitMs;
    js_PublishAsyncComplete(js_, &po);
    jsCtx_Destroy(js_);
  }
  if (nc_) {
    natsConnection_FlushTimeout(nc_, 2000);
    natsConnection_Close(nc_);
  }
  for (auto& [sub, box] : retired_) {
    natsSubscription_Destroy(sub);
    delete static_cast<inbox_box*>(box);
  }
  mux_.reset();  // its subscriptions, after the connection closed
  if (nc_) natsConnection_Destroy(nc_);
}

bool bus::connected() const {
  return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
}

status ensure_jetstream(__jsCtx* js, const jetstream_spec& spec) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {spec.subject.c_str()};
  cfg.Name = spec.name.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.MaxAge = spec.max_age_us * 1000;
  cfg.MaxBytes = spec.max_bytes;
  cfg.Duplicates = spec.duplicate_window_us * 1000;
  cfg.MaxMsgSize = spec.max_msg_size;
  cfg.Discard = js_DiscardOld;
  cfg.AllowDirect = spec.allow_direct;
  cfg.Replicas = spec.replicas;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&si, js, &cfg, nullptr, &jerr);
  if (s != NATS_OK && jerr == JSStreamNameExistErr)
    s = spec.update ? js_UpdateStream(&si, js, &cfg, nullptr, &jerr) : NATS_OK;
  if (si) jsStreamInfo_Destroy(si);
  if (s != NATS_OK)
    return make_error(nats_error(s, ("cannot create JetStream stream " + spec.name).c_str()));
  return ok_status();
}

status bus::ensure_stream(const stream_def& sd) {
  jetstream_spec spec;
  spec.name = jetstream_name(sd.name);
  spec.subject = stream_subject_prefix(sd.name) + ".>";
  spec.max_age_us = sd.max_age_us;
  spec.duplicate_window_us = sd.duplicate_window_us;
  spec.max_msg_size = 1 << 20;
  spec.replicas = replicas_;
  spec.update = true;
  return ensure_jetstream(js_, spec);
}

status bus::ensure_dlq_stream() {
  jetstream_spec spec;
  spec.name = "TSR_DLQ";
  spec.subject = "tsr.dlq.>";
  spec.max_age_us = 7LL * 86400 * 1000000;
  spec.max_bytes = 1LL << 30;
  spec.replicas = replicas_;
  return ensure_jetstream(js_, spec);
}

result<uint64_t> bus::open_consumer(const std::string& stream, const std::string& kind,
                                    uint32_t shard, uint64_t start_seq) {
  std::string sname = jetstream_name(stream), cname = consumer_name(kind, shard, node_id_);
  std::string filter = event_subject(stream, kind, shard);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  bool first_open;
  {
    std::lock_guard<std::mutex> g(mu_);
    first_open = opened_[sname + "/" + cname]++ == 0;
  }
  // Short timeouts for looking and deleting: on a NATS cluster that just lost a server, a
  // consumer on the dead server never answers; creating gets longer (below).
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 2500;
  if (first_open) {
    jsConsumerInfo* info = nullptr;
    if (js_GetConsumerInfo(&info, js_, sname.c_str(), cname.c_str(), &jo, &jerr) == NATS_OK &&
        info) {
      bool reuse = info->Config && info->Config->FilterSubject &&
                   filter == info->Config->FilterSubject && info->Config->AckPolicy == js_AckNone &&
                   info->Delivered.Stream + 1 == start_seq;
      const uint64_t next = info->Delivered.Consumer + 1;
      jsConsumerInfo_Destroy(info);
      if (reuse) return next;
    }
  }
  const std::string key = sname + "/" + cname;
  std::string current;
  bool timed_out_before = false;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = current_.find(key);
    current = it == current_.end() ? cname : it->second;
    timed_out_before = std::exchange(creation_timed_out_[key], false);
  }
  natsStatus s = js_DeleteConsumer(js_, sname.c_str(), current.c_str(), &jo, &jerr);
  std::string name = cname;
  // A creation that timed out under a name may time out under it for good: on a NATS cluster
  // that lost a server, the meta layer can keep that name's assignment on the dead server (seen:
  // one shard's creation timed out every 10 s for over 10 minutes while delete said "not
  // found"). So after a timed-out creation, and when the old one cannot be deleted, a new name.
  if (timed_out_before || (s != NATS_OK && jerr != JSConsumerNotFoundErr && s != NATS_NOT_FOUND)) {
    // Its server may be gone for good: create a consumer under a new name instead of waiting
    // (the old one expires on its own; see InactiveThreshold).
    name = cname + "-" +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count() %
                          1000000000);
    spdlog::debug("consumer {} cannot be deleted ({}); creating {}", current, natsStatus_GetText(s),
                  name);
  }
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = name.c_str();
  cc.FilterSubject = filter.c_str();
  // No acks: the shard's committed sequence in RocksDB is the only record of progress, and a
  // restarted shard re-creates its consumer from there, so server-side acks would only cost a
  // message per batch. Flow is bounded by the shard's pulls.
  cc.AckPolicy = js_AckNone;
  cc.MaxWaiting = 64;
  // A node that is gone for good (its shards moved) leaves its consumers behind: the server
  // removes them after 15 minutes without pulls; a node back later re-creates its own.
  // (Shards pull without pause, idle or not, so only an abandoned consumer goes inactive: one
  // left by a node gone for good, or one whose creation answered too late on a failing NATS
  // cluster and was replaced under another name.)
  cc.InactiveThreshold = 15LL * 60 * 1000000000LL;
  // One replica, in memory: the shard's committed sequence is the only record of progress, so
  // a replicated consumer would only add a Raft group per shard and kind (hundreds, re-electing
  // at once when a NATS server dies, which on a small machine stalled catch-up for minutes).
  // When a consumer's server dies the shard re-creates it under a new name from its committed
  // sequence; a creation placed on the dead server (until the meta layer marks it offline)
  // times out and is retried, and lands elsewhere.
  cc.Replicas = 1;
  cc.MemoryStorage = true;
  if (start_seq > 1) {
    cc.DeliverPolicy = js_DeliverByStartSequence;
    cc.OptStartSeq = start_seq;
  } else {
    cc.DeliverPolicy = js_DeliverAll;
  }
  jsConsumerInfo* ci = nullptr;
  jo.Wait = 10000;  // a creation answers late while the NATS cluster fails over; retried after this
  s = js_AddConsumer(&ci, js_, sname.c_str(), &cc, &jo, &jerr);
  if (ci) jsConsumerInfo_Destroy(ci);
  if (s != NATS_OK) {
    if (s == NATS_TIMEOUT) {
      std::lock_guard<std::mutex> g(mu_);
      creation_timed_out_[key] = true;
    }
    return make_error(nats_error(s, ("cannot create consumer " + name).c_str()));
  }
  std::lock_guard<std::mutex> g(mu_);
  current_[key] = name;
  return uint64_t{1};
}

result<std::unique_ptr<bus::inbox>> bus::open_inbox(delivery_fn fn) {
  std::unique_ptr<inbox> in(new inbox());
  in->subject_ = inbox_prefix_ + "." + std::to_string(next_inbox_++);
  auto* box = new inbox_box();
  box->fn = std::move(fn);
  in->owner_ = this;
  in->box_ = box;
  natsStatus s =
      natsConnection_Subscribe(&in->sub_, nc_, (in->subject_ + ".*").c_str(), &bus::on_inbox, box);
  if (s != NATS_OK) {
    delete box;
    return make_error(nats_error(s, "cannot subscribe to a delivery inbox"));
  }
  // Pulls bound what is in flight; the client-side limit must never drop a delivery.
  natsSubscription_SetPendingLimits(in->sub_, -1, -1);
  return in;
}

bus::inbox::~inbox() {
  if (sub_) owner_->retire(sub_, box_);
}

void bus::retire(__natsSubscription* sub, void* box) {
  natsSubscription_Unsubscribe(sub);
  auto* b = static_cast<inbox_box*>(box);
  {
    std::lock_guard<std::mutex> g(b->mu);
    b->fn = nullptr;
  }
  std::lock_guard<std::mutex> g(mu_);
  retired_.emplace_back(sub, box);
}

uint64_t bus::pull(const std::string& stream, const std::string& kind, uint32_t shard,
                   const inbox& in, int batch, int64_t max_bytes, int64_t expires_ms) {
  uint64_t no = next_pull_++;
  std::string subj = "$JS.API.CONSUMER.MSG.NEXT." + jetstream_name(stream) + "." +
                     consumer_name(kind, shard, node_id_);
  std::string reply = in.subject() + "." + std::to_string(no);
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = current_.find(jetstream_name(stream) + "/" + consumer_name(kind, shard, node_id_));
    if (it != current_.end())
      subj = "$JS.API.CONSUMER.MSG.NEXT." + jetstream_name(stream) + "." + it->second;
  }
  std::string body = "{\"batch\":" + std::to_string(batch) +
                     ",\"expires\":" + std::to_string(expires_ms * 1000000);
  if (max_bytes > 0) body += ",\"max_bytes\":" + std::to_string(max_bytes);
  body += "}";
  natsStatus s = natsConnection_PublishRequest(nc_, subj.c_str(), reply.c_str(), body.data(),
                                               static_cast<int>(body.size()));
  return s == NATS_OK ? no : 0;
}

void bus::ack(const std::string& ack_subject) {
  if (!ack_subject.empty()) natsConnection_Publish(nc_, ack_subject.c_str(), "+ACK", 4);
}

void bus::open_consumer_async(const std::string& stream, const std::string& kind, uint32_t shard,
                              uint64_t start_seq, std::function<void(result<uint64_t>)> done) {
  run_async([this, stream, kind, shard, start_seq, done = std::move(done)] {
    done(open_consumer(stream, kind, shard, start_seq));
  });
}

void bus::run_async(std::function<void()> job) {
  (void)workers_.submit(std::move(job));  // refused only in the destructor: nobody waits then
}

void bus::delete_consumer_async(const std::string& stream, const std::string& kind,
                                uint32_t shard) {
  run_async([this, stream, kind, shard] { delete_consumer(stream, kind, shard); });
}

void bus::consumer_pending_async(const std::string& stream, const std::string& kind, uint32_t shard,
                                 std::function<void(result<consumer_position>)> done) {
  run_async([this, stream, kind, shard, done = std::move(done)] {
    const std::string key = jetstream_name(stream) + "/" + consumer_name(kind, shard, node_id_);
    std::string name = consumer_name(kind, shard, node_id_);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (auto it = current_.find(key); it != current_.end()) name = it->second;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2500;
    jsConsumerInfo* info = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s =
        js_GetConsumerInfo(&info, js_, jetstream_name(stream).c_str(), name.c_str(), &jo, &jerr);
    if (s != NATS_OK || !info) {
      done(make_error(nats_error(s, ("consumer " + name).c_str())));
      return;
    }
    consumer_position at{info->NumPending, 0};
    jsConsumerInfo_Destroy(info);
    // (The consumer's own delivered sequence is no use here: a filtered consumer reports the
    // stream's last sequence once it has scanned past it.)
    natsMsg* last = nullptr;
    if (js_GetLastMsg(&last, js_, jetstream_name(stream).c_str(),
                      event_subject(stream, kind, shard).c_str(), &jo, &jerr) == NATS_OK &&
        last) {
      at.last = natsMsg_GetSequence(last);
      natsMsg_Destroy(last);
    }
    done(at);
  });
}

void bus::delete_consumer(const std::string& stream, const std::string& kind, uint32_t shard) {
  const std::string key = jetstream_name(stream) + "/" + consumer_name(kind, shard, node_id_);
  std::string name = consumer_name(kind, shard, node_id_);
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = current_.find(key); it != current_.end()) name = it->second;
    current_.erase(key);
    opened_.erase(key);
  }
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 2500;
  js_DeleteConsumer(js_, jetstream_name(stream).c_str(), name.c_str(), &jo, &jerr);
}

void bus::request(const std::string& subject, const std::string& data, int64_t timeout_ms,
                  reply_fn reply) {
  mux_->request(subject, data, timeout_ms, std::move(reply));
}

status bus::serve(const std::string& subject, serve_fn fn) {
  return mux_->serve(subject, std::move(fn));
}

void bus::respond(const std::string& reply_subject, const std::string& data) {
  mux_->respond(reply_subject, data);
}

void bus::on_inbox(__natsConnection*, __natsSubscription*, __natsMsg* msg, void* closure) {
  auto* box = static_cast<inbox_box*>(closure);
  delivery d;
  const char* st = nullptr;
  if (natsMsgHeader_Get(msg, "Status", &st) == NATS_OK && st && natsMsg_GetDataLength(msg) == 0) {
    // A status addressed to <inbox>.<pull no>: the end of that pull (or a heartbeat).
    d.end = true;
    d.status = st;
    const char* desc = nullptr;
    if (natsMsgHeader_Get(msg, "Description", &desc) == NATS_OK && desc) d.description = desc;
    const char* subj = natsMsg_GetSubject(msg);
    const char* dot = std::strrchr(subj, '.');
    d.pull_no = dot ? std::strtoull(dot + 1, nullptr, 10) : 0;
    natsMsg_Destroy(msg);
    if (d.status == "100") return;
    std::lock_guard<std::mutex> g(box->mu);
    if (box->fn) box->fn(std::move(d));
    return;
  }
  const char* reply = natsMsg_GetReply(msg);
  if (reply) {
    d.ack_subject = reply;
    auto at = split(reply, '.');
    if (at.size() == 9) {  // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
      d.seq = std::strtoull(at[5].c_str(), nullptr, 10);
      d.cseq = std::strtoull(at[6].c_str(), nullptr, 10);
      d.stored_ns = std::strtoll(at[7].c_str(), nullptr, 10);
      d.pending = std::strtoull(at[8].c_str(), nullptr, 10);
    } else if (at.size() >= 11) {  // with <domain>.<account hash> after ACK (newer servers)
      d.seq = std::strtoull(at[7].c_str(), nullptr, 10);
      d.cseq = std::strtoull(at[8].c_str(), nullptr, 10);
      d.stored_ns = std::strtoll(at[9].c_str(), nullptr, 10);
      d.pending = std::strtoull(at[10].c_str(), nullptr, 10);
    }
  }
  d.received_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  d.data.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  if (d.seq == 0) return;  // not a JetStream delivery
  std::lock_guard<std::mutex> g(box->mu);
  if (box->fn) box->fn(std::move(d));
}

void bus::publish(const std::string& subject, const void* data, size_t len,
                  const std::string& msg_id, ack_fn done) {
  uint64_t tok = next_token_++;
  {
    std::lock_guard<std::mutex> g(mu_);
    pending_acks_[tok] = std::move(done);
  }
  natsMsg* m = nullptr;
  natsMsg_Create(&m, subject.c_str(), nullptr, static_cast<const char*>(data),
                 static_cast<int>(len));
  natsMsgHeader_Set(m, "Tsr-Tok", std::to_string(tok).c_str());
  jsPubOptions po;
  jsPubOptions_Init(&po);
  if (!msg_id.empty()) po.MsgId = msg_id.c_str();
  // An acknowledgement that never comes (the message or its ack lost with a NATS server that
  // died) fails the publish after this long instead of leaving its sender waiting forever; the
  // sender may publish again, and the message id makes that count once.
  po.MaxWait = kPublishAckWaitMs;
  natsStatus s = js_PublishMsgAsync(js_, &m, &po);
  if (s != NATS_OK) {
    if (m) natsMsg_Destroy(m);
    ack_fn fn;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = pending_acks_.find(tok);
      if (it != pending_acks_.end()) {
        fn = std::move(it->second);
        pending_acks_.erase(it);
      }
    }
    if (fn) fn(nats_error(s, "publish failed"), false);
  }
}

void bus::on_pub_ack(__jsCtx*, __natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* self = static_cast<bus*>(closure);
  const char* tok_s = nullptr;
  ack_fn fn;
  if (natsMsgHeader_Get(msg, "Tsr-Tok", &tok_s) == NATS_OK && tok_s) {
    uint64_t tok = std::strtoull(tok_s, nullptr, 10);
    std::lock_guard<std::mutex> g(self->mu_);
    auto it = self->pending_acks_.find(tok);
    if (it != self->pending_acks_.end()) {
      fn = std::move(it->second);
      self->pending_acks_.erase(it);
    }
  }
  natsMsg_Destroy(msg);
  if (!fn) return;
  if (pa) {
    fn("", pa->Duplicate);
  } else {
    std::string err = "JetStream refused the message";
    if (pae && pae->Err == NATS_TIMEOUT)
      err = "JetStream did not acknowledge the message within " +
            std::to_string(kPublishAckWaitMs / 1000) + " s (a NATS server failing over?); retry";
    else if (pae)
      err += std::string(": ") + (pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
    fn(err, false);
  }
}

void bus::publish_dead_letter(const std::string& stream, const std::string& json) {
  natsMsg* m = nullptr;
  std::string subj = "tsr.dlq." + stream;
  natsMsg_Create(&m, subj.c_str(), nullptr, json.data(), static_cast<int>(json.size()));
  if (js_PublishMsgAsync(js_, &m, nullptr) != NATS_OK && m) natsMsg_Destroy(m);
}

}  // namespace tessera
