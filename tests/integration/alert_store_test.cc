// Alerts in JetStream (actors/monitoring/alert_store.h) on a real nats-server: two stores (two
// nodes) observing the same condition record one firing and publish it once; a transition
// recorded by a node that died before publishing is published by the next observer, once; and
// the webhook (webhook.h) POSTs each transition to a receiver that fails twice first, retried
// with back-off until it answers 200, each delivered once.
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "actors/monitoring/alert_store.h"
#include "actors/monitoring/webhook.h"
#include "bus.h"
#include "cluster/kv.h"
#include "nats_server.h"
#include "test_support.h"

namespace tessera::test {
namespace {

struct alert_fixture : ::testing::Test {
  temp_dir dir;
  std::unique_ptr<embedded_nats> nats;
  std::unique_ptr<bus> a, b;
  void SetUp() override {
    auto n = embedded_nats::start(dir.path);
    ASSERT_TRUE(n) << n.error_message();
    nats = std::move(n.value());
    for (auto [out, id] : {std::pair{&a, "node-a"}, std::pair{&b, "node-b"}}) {
      auto c = bus::connect({nats->url(), id});
      ASSERT_TRUE(c) << c.error_message();
      *out = std::move(c.value());
    }
  }
};

monitoring::alert_spec spec() {
  monitoring::alert_spec s;
  s.key = "canary_worse.m.v2";
  s.name = "canary_worse";
  s.severity = "page";
  s.group = "m";
  return s;
}

constexpr int64_t kS = 1000000;

TEST_F(alert_fixture, TwoObserversRecordAndPublishEachTransitionOnce) {
  auto sa = alert_store::open(a->jetstream(), {});
  auto sb = alert_store::open(b->jetstream(), {});
  ASSERT_TRUE(sa && sb);
  const int64_t t0 = 1'700'000'000LL * kS;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*sa)->observe(spec(), true, t0 + i * kS, "worse", {}));
    ASSERT_TRUE((*sb)->observe(spec(), true, t0 + i * kS, "worse", {}));
  }
  for (int i = 5; i < 8; ++i) {
    ASSERT_TRUE((*sb)->observe(spec(), false, t0 + i * kS, "", {}));
    ASSERT_TRUE((*sa)->observe(spec(), false, t0 + i * kS, "", {}));
  }
  auto log = (*sa)->log(0, 100);
  ASSERT_TRUE(log) << log.error_message();
  ASSERT_EQ(log->first.size(), 2u);
  EXPECT_EQ(log->first[0]["transition"], "firing:1");
  EXPECT_EQ(log->first[0]["subject"], "tsr.alert.page.canary_worse");
  EXPECT_EQ(log->first[1]["transition"], "resolved:1");
  auto list = (*sb)->list(false);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].state, monitoring::alert_state::resolved);
  EXPECT_EQ((*list)[0].notified, "resolved:1");

  // A node that recorded a firing and died before publishing: the record says firing, nothing
  // was published. The next observer publishes it, once.
  auto kv = kv_bucket::open(a->jetstream(), {alert_store::kBucket, 0, 1, 1});
  ASSERT_TRUE(kv);
  monitoring::alert died;
  died.spec = spec();
  died.spec.key = "drift.m.v1";
  died.spec.name = "drift";
  died.spec.severity = "ticket";
  monitoring::observe(died, true, t0, "drifted", {});
  ASSERT_EQ(died.state, monitoring::alert_state::firing);
  ASSERT_TRUE((*kv)->create(died.spec.key, died.to_json().dump()).ok);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*sb)->observe(died.spec, true, t0 + kS, "drifted", {}));
  log = (*sa)->log(0, 100);
  ASSERT_TRUE(log);
  ASSERT_EQ(log->first.size(), 3u);
  EXPECT_EQ(log->first[2]["key"], "drift.m.v1");
  EXPECT_EQ(log->first[2]["subject"], "tsr.alert.ticket.drift");
  EXPECT_EQ(log->second, log->first[2]["seq"].get<uint64_t>());
  auto next = (*sa)->log(log->second, 100);
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->first.empty());
}

// A firing alert's summary follows the evidence, rewritten at most every kSummaryRefreshUs,
// without a new transition in the log.
TEST_F(alert_fixture, AFiringAlertsSummaryFollowsTheEvidenceWithoutNewTransitions) {
  auto sa = alert_store::open(a->jetstream(), {});
  ASSERT_TRUE(sa);
  const int64_t t0 = 1'700'000'000LL * kS;
  auto summary = [&] {
    auto list = (*sa)->list(false);
    return list && list->size() == 1 ? (*list)[0].summary : std::string("?");
  };
  ASSERT_TRUE((*sa)->observe(spec(), true, t0, "weekday drifts", {}));
  ASSERT_TRUE((*sa)->observe(spec(), true, t0 + kS, "weekday drifts", {}));  // firing
  ASSERT_TRUE((*sa)->observe(spec(), true, t0 + 2 * kS, "weekday and distance drift", {}));
  EXPECT_EQ(summary(), "weekday drifts");  // within the refresh interval of the firing
  ASSERT_TRUE((*sa)->observe(spec(), true, t0 + kS + alert_store::kSummaryRefreshUs,
                             "weekday and distance drift", {}));
  EXPECT_EQ(summary(), "weekday and distance drift");
  auto log = (*sa)->log(0, 100);
  ASSERT_TRUE(log);
  ASSERT_EQ(log->first.size(), 1u);
  EXPECT_EQ(log->first[0]["transition"], "firing:1");
}

// A receiver on loopback: answers 500 to the first `failures` POSTs, then 200; keeps bodies.
struct receiver {
  int fd = -1, port = 0, failures = 0, seen = 0;
  std::mutex mu;
  std::vector<std::string> accepted;
  std::thread th;
  std::atomic<bool> stop{false};
  explicit receiver(int f) : failures(f) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
    ::listen(fd, 8);
    th = std::thread([this] {
      while (!stop) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        int c = ::accept(fd, nullptr, nullptr);
        if (c < 0) continue;
        std::string req;
        char buf[4096];
        size_t need = std::string::npos;
        while (need == std::string::npos || req.size() < need) {
          ssize_t n = ::recv(c, buf, sizeof buf, 0);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
          const size_t head = req.find("\r\n\r\n");
          const size_t cl = req.find("Content-Length: ");
          if (head != std::string::npos && cl != std::string::npos)
            need = head + 4 + std::stoul(req.substr(cl + 16));
        }
        bool ok;
        {
          std::lock_guard<std::mutex> l(mu);
          ok = ++seen > failures;
          if (ok) accepted.push_back(req.substr(req.find("\r\n\r\n") + 4));
        }
        const std::string answer = ok ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                                      : "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
        ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
        ::close(c);
      }
    });
  }
  ~receiver() {
    stop = true;
    th.join();
    ::close(fd);
  }
};

TEST_F(alert_fixture, TheWebhookRetriesWithBackOffUntilTheReceiverTakesEachTransitionOnce) {
  receiver r(2);
  const std::string url = "http://127.0.0.1:" + std::to_string(r.port) + "/hook";
  auto store = alert_store::open(a->jetstream(), {});
  ASSERT_TRUE(store);
  // Two nodes with the webhook: each transition goes to one of them.
  auto wa = alert_webhook::start(a->jetstream(), url);
  auto wb = alert_webhook::start(b->jetstream(), url);
  ASSERT_TRUE(wa) << wa.error_message();
  ASSERT_TRUE(wb) << wb.error_message();
  const int64_t t0 = 1'700'000'000LL * kS;
  ASSERT_TRUE((*store)->observe(spec(), true, t0, "worse", {}));
  ASSERT_TRUE((*store)->observe(spec(), false, t0 + kS, "", {}));
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard<std::mutex> l(r.mu);
        return r.accepted.size() >= 2;
      },
      std::chrono::seconds(60)));
  // A webhook counts a delivery once it has read the receiver's answer, after the receiver
  // recorded the body: wait for that too.
  EXPECT_TRUE(eventually([&] { return (*wa)->counts().delivered + (*wb)->counts().delivered >= 2; },
                         std::chrono::seconds(30)));
  const auto ca = (*wa)->counts(), cb = (*wb)->counts();
  EXPECT_EQ(ca.delivered + cb.delivered, 2u);
  EXPECT_EQ(ca.retried + cb.retried, 2u);
  std::lock_guard<std::mutex> l(r.mu);
  ASSERT_EQ(r.accepted.size(), 2u);
  std::set<std::string> transitions;
  for (auto& body : r.accepted) {
    auto j = nlohmann::json::parse(body);
    EXPECT_EQ(j["key"], "canary_worse.m.v2");
    transitions.insert(j["transition"]);
  }
  EXPECT_EQ(transitions, (std::set<std::string>{"firing:1", "resolved:1"}));
  // A URL that is not http is refused.
  EXPECT_FALSE(alert_webhook::start(a->jetstream(), "https://127.0.0.1/x"));
}

}  // namespace
}  // namespace tessera::test
