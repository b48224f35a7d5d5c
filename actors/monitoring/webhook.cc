#include "webhook.h"

#include <nats/nats.h>
#include <netdb.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "alert_store.h"
#include "cluster/nats_text.h"

namespace tessera {

namespace {

constexpr const char* kGroup = "tsr_alert_webhook";
constexpr int kMaxDeliver = 30;

struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

// Waits until `fd` is ready for `events` or the deadline passes.
bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
  if (left <= 0) return false;
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(left)) == 1;
}

}  // namespace

result<int> http_post(const std::string& url, const std::string& body, int timeout_ms) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0)
    return make_error("webhook URL " + url + ": only http:// is supported", errc::invalid);
  const std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = hostport.rfind(':');
  const std::string host = hostport.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(1, timeout_ms));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &ai); rc != 0)
    return make_error("webhook " + hostport + ": " + gai_strerror(rc), errc::unavailable);
  fd_guard s;
  s.fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int rc = s.fd < 0 ? -1 : ::connect(s.fd, ai->ai_addr, ai->ai_addrlen);
  ::freeaddrinfo(ai);
  if (s.fd < 0 || (rc != 0 && errno != EINPROGRESS))
    return make_error("webhook " + hostport + ": cannot connect: " + std::strerror(errno),
                      errc::unavailable);
  if (!wait_for(s.fd, POLLOUT, deadline))
    return make_error("webhook " + hostport + ": connect timed out", errc::unavailable);
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0)
    return make_error("webhook " + hostport + ": cannot connect: " + std::strerror(err),
                      errc::unavailable);
  const std::string req =
      "POST " + path + " HTTP/1.1\r\nHost: " + hostport +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  for (size_t sent = 0; sent < req.size();) {
    if (!wait_for(s.fd, POLLOUT, deadline))
      return make_error("webhook " + hostport + ": send timed out", errc::unavailable);
    const ssize_t n = ::send(s.fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN)
      return make_error("webhook " + hostport + ": send failed: " + std::strerror(errno),
                        errc::unavailable);
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string answer;
  char buf[1024];
  while (answer.find("\r\n") == std::string::npos && answer.size() < 8192) {
    if (!wait_for(s.fd, POLLIN, deadline))
      return make_error("webhook " + hostport + ": no answer in time", errc::unavailable);
    const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0 && errno != EAGAIN)
      return make_error("webhook " + hostport + ": " + std::strerror(errno), errc::unavailable);
    if (n > 0) answer.append(buf, static_cast<size_t>(n));
  }
  int code = 0;
  if (std::sscanf(answer.c_str(), "HTTP/%*d.%*d %d", &code) != 1)
    return make_error("webhook " + hostport + ": not an HTTP answer", errc::unavailable);
  return code;
}

result<std::unique_ptr<alert_webhook>> alert_webhook::start(__jsCtx* js, const std::string& url) {
  if (url.rfind("http://", 0) != 0)
    return make_error("--alert-webhook " + url + ": only http:// URLs are supported",
                      errc::invalid);
  std::unique_ptr<alert_webhook> w(new alert_webhook());
  w->url_ = url;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = alert_store::kLog;
  so.Queue = kGroup;
  so.ManualAck = true;
  so.Config.Durable = kGroup;
  so.Config.DeliverPolicy = js_DeliverNew;
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.AckWait = 60LL * 1000 * 1000 * 1000;  // ns: a POST and its retries fit in
  so.Config.MaxDeliver = kMaxDeliver;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_SubscribeSync(&w->sub_, js, "tsr.alert.>", nullptr, &so, &jerr);
  if (s != NATS_OK)
    return make_error("the alert webhook cannot read " + std::string(alert_store::kLog) + ": " +
                      nats_text(s));
  w->thread_ = std::thread([raw = w.get()] { raw->run(); });
  return w;
}

alert_webhook::~alert_webhook() {
  stop();
  if (sub_) natsSubscription_Destroy(sub_);
}

void alert_webhook::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

alert_webhook::figures alert_webhook::counts() const {
  return {delivered_.load(), retried_.load(), failed_.load()};
}

void alert_webhook::run() {
  while (!stopping_) {
    natsMsg* m = nullptr;
    const natsStatus s = natsSubscription_NextMsg(&m, sub_, 200);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK) {
      spdlog::warn("alert webhook: read failed: {}", nats_text(s));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    const std::string body(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
    uint64_t delivered = 1;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      delivered = meta->NumDelivered;
      jsMsgMetaData_Destroy(meta);
    }
    auto code = http_post(url_, body, 5000);
    if (code && *code >= 200 && *code < 300) {
      natsMsg_Ack(m, nullptr);
      ++delivered_;
    } else if (delivered >= static_cast<uint64_t>(kMaxDeliver)) {
      natsMsg_Term(m, nullptr);
      ++failed_;
      spdlog::error("alert webhook: gave up on a transition after {} attempts: {}", delivered,
                    code ? "HTTP " + std::to_string(*code) : code.error_message());
    } else {
      const int64_t delay_ms =
          std::min<int64_t>(300000, 1000LL << std::min<uint64_t>(delivered - 1, 20));
      natsMsg_NakWithDelay(m, delay_ms, nullptr);
      ++retried_;
      if (delivered == 1 || delivered % 5 == 0)
        spdlog::warn("alert webhook: {} (attempt {}), retrying in {} ms",
                     code ? "HTTP " + std::to_string(*code) : code.error_message(), delivered,
                     delay_ms);
    }
    natsMsg_Destroy(m);
  }
}

}  // namespace tessera
