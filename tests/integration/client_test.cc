// The C++ client (include/tessera/client.h) against a real node: typed calls through the
// families' capabilities, error codes that the caller can act on without reading text, calls
// from many threads on one connection, a connection that comes back after the node restarts,
// the call timeout, and the older root methods still answering for older clients.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <capnp/ez-rpc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tessera/client.h"
#include "test_support.h"
#include "time_util.h"

namespace tessera::test {
namespace {

client::event flight_event(const std::string& date, double delay, const std::string& origin,
                           const std::string& dest) {
  client::event e;
  e.fields = {{"date", date}, {"delay", delay}, {"origin", origin}, {"destination", dest}};
  return e;
}

double number(const client::feature_vector& v, const std::string& name) {
  const client::value* x = v.find(name);
  if (!x) return -1;
  if (auto* i = std::get_if<int64_t>(x)) return static_cast<double>(*i);
  if (auto* d = std::get_if<double>(x)) return *d;
  return -1;
}

TEST(Client, IngestsAndReadsThroughTheFeaturesCapability) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  auto c = client::connection::open(h.rpc());
  std::vector<client::event> evs{flight_event("2001-01-01T10:00:00Z", 5, "LAX", "SFO"),
                                 flight_event("2001-01-01T10:30:00Z", 9, "LAX", "JFK"),
                                 flight_event("2001-01-01T10:40:00Z", 20, "SFO", "LAX"),
                                 flight_event("2001-01-01T10:50:00Z", 1, "LAX", "")};
  auto r = c->ingest("flights", evs, "client-test-1");
  ASSERT_TRUE(r) << r.error_message();
  EXPECT_EQ(r->accepted, 3u);
  ASSERT_EQ(r->rejected.size(), 1u);  // no destination: no route key
  EXPECT_EQ(r->rejected[0].index, 3u);
  EXPECT_EQ(r->rejected[0].field, "destination");
  // The same batch id again: stored once.
  auto again = c->ingest("flights", evs, "client-test-1");
  ASSERT_TRUE(again) << again.error_message();
  EXPECT_EQ(again->duplicates, 3u);
  ASSERT_EQ(wait_applied(h.rpc(), 6), 6u);  // each event feeds two entity kinds

  // Brute force over the same events, at the stream's clock (the latest event: 10:40).
  std::vector<flight> fs;
  for (size_t i = 0; i < 3; ++i) {
    flight f;
    f.time = *parse_timestamp(std::get<std::string>(evs[i].fields[0].second));
    f.delay = std::get<double>(evs[i].fields[1].second);
    f.origin = std::get<std::string>(evs[i].fields[2].second);
    f.destination = std::get<std::string>(evs[i].fields[3].second);
    fs.push_back(f);
  }
  const int64_t clock = fs[2].time;
  auto v = c->features("airport_delay", {"LAX", "SFO", "ORD"});
  ASSERT_TRUE(v) << v.error_message();
  ASSERT_EQ(v->size(), 3u);
  for (auto& fv : *v) {
    EXPECT_EQ(fv.as_of, clock);
    airport_ref ref = airport_at(fs, fv.entity, clock);
    EXPECT_EQ(number(fv, "count_1h"), ref.count_1h) << fv.entity;
    if (ref.mean_1h) EXPECT_DOUBLE_EQ(number(fv, "mean_delay_1h"), *ref.mean_1h) << fv.entity;
  }
  EXPECT_EQ((*v)[2].status, client::vector_status::missing);
  EXPECT_EQ((*v)[0].status, client::vector_status::fresh);

  auto st = c->status();
  ASSERT_TRUE(st) << st.error_message();
  EXPECT_EQ(st->get().getShardCount(), 64u);
  EXPECT_EQ(st->get().getEventsApplied(), 6u);
}

TEST(Client, ErrorsCarryTheirCode) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  auto c = client::connection::open(h.rpc());
  auto unknown_view = c->features("no_such_view", {"LAX"});
  ASSERT_FALSE(unknown_view);
  EXPECT_EQ(unknown_view.error_code(), errc::not_found);
  EXPECT_EQ(unknown_view.error_message().rfind("unknown view 'no_such_view'", 0), 0u)
      << unknown_view.error_message();
  auto no_entities = c->features("airport_delay", {});
  EXPECT_EQ(no_entities.error_code(), errc::invalid);
  auto bad_key = c->features("airport_delay", {""});
  EXPECT_EQ(bad_key.error_code(), errc::invalid);
  auto unknown_stream =
      c->ingest("no_such_stream", {flight_event("2001-01-01T10:00:00Z", 1, "LAX", "SFO")});
  EXPECT_EQ(unknown_stream.error_code(), errc::not_found);
  auto bad_batch = c->ingest("flights", {}, "has spaces");
  EXPECT_EQ(bad_batch.error_code(), errc::invalid);
  // The registry, once the node has joined (retryable until then: the client repeats it).
  ASSERT_TRUE(eventually(
      [&] {
        auto m = c->show_model("no_such_model");
        return !m && m.error_code() == errc::not_found;
      },
      std::chrono::seconds(60)));
  auto job = c->job("no-such-job");
  EXPECT_EQ(job.error_code(), errc::not_found);
  auto train = c->train("no_such_model");
  EXPECT_EQ(train.error_code(), errc::not_found);
  auto promote = c->promote_model("m", 0, "production");
  EXPECT_EQ(promote.error_code(), errc::invalid);
  auto models = c->list_models();
  ASSERT_TRUE(models) << models.error_message();
  EXPECT_TRUE(models->empty());
}

TEST(Client, OneConnectionServesManyThreads) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  auto c = client::connection::open(h.rpc());
  ASSERT_TRUE(c->ingest("flights", {flight_event("2001-01-01T10:00:00Z", 5, "LAX", "SFO")}, "b1"));
  ASSERT_EQ(wait_applied(h.rpc(), 2), 2u);
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto v = c->features("airport_delay", {"LAX"});
        if (v && v->size() == 1 && number((*v)[0], "count_1h") == 1)
          ++ok;
        else
          ++failed;
      }
    });
  // Asynchronous calls interleave with the blocking ones.
  std::vector<std::future<result<std::vector<client::feature_vector>>>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(c->features_async("route_delay", {"LAX-SFO"}));
  for (auto& t : threads) t.join();
  for (auto& f : futures) {
    auto v = f.get();
    ASSERT_TRUE(v) << v.error_message();
    EXPECT_EQ(number((*v)[0], "count_7d"), 1);
  }
  EXPECT_EQ(ok.load(), 400);
  EXPECT_EQ(failed.load(), 0);
}

TEST(Client, TheConnectionComesBackAfterTheNodeRestarts) {
  temp_dir dir;
  node_config cfg;
  cfg.data_dir = dir.path;
  cfg.rpc = "127.0.0.1:0";
  cfg.shards = kTestShards;
  cfg.definitions = flights_definitions();
  auto n = node::start(cfg);
  ASSERT_TRUE(n) << n.error_message();
  const int port = (*n)->rpc_port();
  client::options o;
  o.address = "127.0.0.1:" + std::to_string(port);
  o.retry.attempts = 3;
  o.retry.first_backoff = std::chrono::milliseconds(20);
  auto c = client::connection::open(o);
  ASSERT_TRUE(c->status());
  n.value().reset();  // the node stops; the connection breaks
  auto down = c->status();
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error_code(), errc::unavailable) << down.error_message();
  cfg.rpc = "127.0.0.1:" + std::to_string(port);
  auto again = node::start(cfg);
  ASSERT_TRUE(again) << again.error_message();
  auto up = c->status();  // the same connection object reconnects
  ASSERT_TRUE(up) << up.error_message();
  EXPECT_EQ(up->get().getShardCount(), 64u);
}

TEST(Client, ACallWithoutAnAnswerEndsAtItsTimeout) {
  // A listener that accepts and never answers.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  client::options o;
  o.address = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  o.timeout = std::chrono::milliseconds(300);
  auto c = client::connection::open(o);
  auto r = c->status();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error_code(), errc::deadline) << r.error_message();
  c.reset();
  ::close(fd);
}

// Older clients call the root interface's own methods: they still answer, the registry's as
// JSON, and their errors carry the same code prefix.
TEST(Client, TheRootMethodsStillAnswerOlderClients) {
  temp_dir dir;
  node_harness h(dir.path);
  ASSERT_TRUE(h.n);
  capnp::EzRpcClient raw(h.rpc());
  auto gw = raw.getMain<wire::Gateway>();
  auto& ws = raw.getWaitScope();
  ASSERT_TRUE(eventually(
      [&] {
        try {
          auto r = gw.listModelsRequest().send().wait(ws);
          return std::string(r.getJson().cStr()) == "[]";
        } catch (const kj::Exception&) {
          return false;  // not joined yet
        }
      },
      std::chrono::seconds(60)));
  std::string what;
  try {
    auto req = gw.getFeaturesRequest();
    req.setView("no_such_view");
    req.initEntities(1).set(0, "LAX");
    req.send().wait(ws);
  } catch (const kj::Exception& e) {
    what = e.getDescription().cStr();
  }
  EXPECT_NE(what.find("[not_found] unknown view 'no_such_view'"), std::string::npos) << what;
}

}  // namespace
}  // namespace tessera::test
