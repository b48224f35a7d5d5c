#include "request_mux.h"

#include <nats/nats.h>

#include <cstring>

#include "nats_error.h"

namespace tessera {

result<std::unique_ptr<request_mux>> request_mux::open(__natsConnection* nc,
                                                       const std::string& inbox_prefix) {
  std::unique_ptr<request_mux> m(new request_mux(nc));
  m->inbox_prefix_ = inbox_prefix;
  natsStatus s = natsConnection_Subscribe(&m->reply_sub_, nc, (inbox_prefix + ".rpc.*").c_str(),
                                          &request_mux::on_reply, m.get());
  if (s != NATS_OK) return make_error(nats_error(s, "cannot subscribe to the reply inbox"));
  natsSubscription_SetPendingLimits(m->reply_sub_, -1, -1);
  m->sweeper_ = std::thread([mp = m.get()] { mp->sweep_loop(); });
  return m;
}

void request_mux::stop() {
  stopping_ = true;
  if (sweeper_.joinable()) sweeper_.join();
  if (reply_sub_) natsSubscription_Unsubscribe(reply_sub_);
  {
    std::lock_guard<std::mutex> g(served_mu_);
    for (auto& [sub, fn] : served_) natsSubscription_Unsubscribe(sub);
  }
  // Callers are gone by now (the node stops the gateway and the cluster agent first).
  std::lock_guard<std::mutex> g(req_mu_);
  requests_.clear();
}

request_mux::~request_mux() {
  stopping_ = true;
  if (sweeper_.joinable()) sweeper_.join();
  if (reply_sub_) natsSubscription_Destroy(reply_sub_);
  for (auto& [sub, fn] : served_) {
    natsSubscription_Destroy(sub);
    delete fn;
  }
}

void request_mux::request(const std::string& subject, const std::string& data, int64_t timeout_ms,
                          reply_fn reply) {
  uint64_t tok = next_request_++;
  {
    std::lock_guard<std::mutex> g(req_mu_);
    requests_[tok] = {std::move(reply),
                      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms)};
  }
  std::string reply_subject = inbox_prefix_ + ".rpc." + std::to_string(tok);
  natsStatus s = natsConnection_PublishRequest(nc_, subject.c_str(), reply_subject.c_str(),
                                               data.data(), static_cast<int>(data.size()));
  if (s != NATS_OK) {
    reply_fn fn;
    {
      std::lock_guard<std::mutex> g(req_mu_);
      auto it = requests_.find(tok);
      if (it == requests_.end()) return;
      fn = std::move(it->second.fn);
      requests_.erase(it);
    }
    fn(make_error(nats_error(s, ("cannot send a request on " + subject).c_str())));
  }
}

void request_mux::on_reply(__natsConnection*, __natsSubscription*, __natsMsg* msg, void* closure) {
  auto* self = static_cast<request_mux*>(closure);
  const char* subj = natsMsg_GetSubject(msg);
  const char* dot = std::strrchr(subj, '.');
  uint64_t tok = dot ? std::strtoull(dot + 1, nullptr, 10) : 0;
  const char* st = nullptr;
  bool no_responders =
      natsMsgHeader_Get(msg, "Status", &st) == NATS_OK && st && std::string(st) == "503";
  std::string data(natsMsg_GetData(msg) ? natsMsg_GetData(msg) : "",
                   static_cast<size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  reply_fn fn;
  {
    std::lock_guard<std::mutex> g(self->req_mu_);
    auto it = self->requests_.find(tok);
    if (it == self->requests_.end()) return;  // late answer to a request that timed out
    fn = std::move(it->second.fn);
    self->requests_.erase(it);
  }
  if (no_responders)
    fn(make_error("no node is listening"));
  else
    fn(std::move(data));
}

void request_mux::sweep_loop() {
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::vector<reply_fn> expired;
    auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard<std::mutex> g(req_mu_);
      for (auto it = requests_.begin(); it != requests_.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second.fn));
          it = requests_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& fn : expired) fn(make_error("timed out"));
  }
}

status request_mux::serve(const std::string& subject, serve_fn fn) {
  auto* box = new serve_fn(std::move(fn));
  natsSubscription* sub = nullptr;
  natsStatus s = natsConnection_Subscribe(&sub, nc_, subject.c_str(), &request_mux::on_serve, box);
  if (s != NATS_OK) {
    delete box;
    return make_error(nats_error(s, ("cannot serve " + subject).c_str()));
  }
  natsSubscription_SetPendingLimits(sub, 65536, 256 << 20);
  std::lock_guard<std::mutex> g(served_mu_);
  served_.emplace_back(sub, box);
  return ok_status();
}

void request_mux::on_serve(__natsConnection*, __natsSubscription*, __natsMsg* msg, void* closure) {
  auto* fn = static_cast<serve_fn*>(closure);
  const char* reply = natsMsg_GetReply(msg);
  std::string data(natsMsg_GetData(msg) ? natsMsg_GetData(msg) : "",
                   static_cast<size_t>(natsMsg_GetDataLength(msg)));
  std::string reply_subject = reply ? reply : "";
  natsMsg_Destroy(msg);
  if (!reply_subject.empty()) (*fn)(std::move(data), std::move(reply_subject));
}

void request_mux::respond(const std::string& reply_subject, const std::string& data) {
  natsConnection_Publish(nc_, reply_subject.c_str(), data.data(), static_cast<int>(data.size()));
}

}  // namespace tessera
