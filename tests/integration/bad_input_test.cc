// Bad input of every kind gets a clear error (or a dead letter with its reason), a counter,
// and nothing else: the node stays up, state is not corrupted, good events around bad ones apply.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "hash.h"
#include "test_support.h"

namespace tessera::test {
namespace {

// The message of a failed call: what it tells the user.
template <typename T>
std::string rpc_error(const result<T>& r) {
  return r ? "<no error>" : r.error_message();
}

// A flight with every field as text (the node converts it); an empty field is left out.
client::event flight_event(const std::string& date, const std::string& delay,
                           const std::string& origin, const std::string& dest) {
  client::event e;
  for (auto& [name, v] : std::vector<std::pair<const char*, std::string>>{
           {"date", date}, {"delay", delay}, {"origin", origin}, {"destination", dest}})
    if (!v.empty()) e.fields.emplace_back(name, v);
  return e;
}

// The same for a batch published straight to JetStream.
void set_flight(wire::Event::Builder e, const std::string& date, const std::string& delay,
                const std::string& origin, const std::string& dest) {
  std::vector<std::pair<const char*, std::string>> fs{
      {"date", date}, {"delay", delay}, {"origin", origin}, {"destination", dest}};
  size_t n = 0;
  for (auto& f : fs) n += !f.second.empty();
  auto fl = e.initFields(static_cast<unsigned>(n));
  unsigned i = 0;
  for (auto& f : fs) {
    if (f.second.empty()) continue;
    fl[i].setName(f.first);
    fl[i].initValue().setText(f.second);
    ++i;
  }
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    h = std::make_unique<node_harness>(dir.path);
    ASSERT_TRUE(h->n);
    c = open_client(h->rpc());
  }
  uint32_t shard_count() {
    auto st = c->status();
    EXPECT_TRUE(st) << failure_text(st);
    return st ? st->get().getShardCount() : 0;
  }
  double feature(const std::string& view, const std::string& key, const std::string& name,
                 int64_t as_of = 0) {
    auto v = read_vectors(h->rpc(), view, {key}, as_of);
    auto x = v.at(0).second[name];
    return x ? *x : -1;
  }

  temp_dir dir;
  std::unique_ptr<node_harness> h;
  std::unique_ptr<client::connection> c;
};

TEST_F(BadInput, BadEventsAreRejectedByNameAndGoodOnesAroundThemApply) {
  auto r = c->ingest(
      "flights", {
                     flight_event("2001-01-01T10:00:00Z", "5", "LAX", "SFO"),     // good
                     flight_event("2001-01-01T10:01:00Z", "late", "LAX", "SFO"),  // wrong type
                     flight_event("2001-01-01T10:02:00Z", "7", "", "SFO"),     // missing entity key
                     flight_event("2999-01-01T10:03:00Z", "7", "LAX", "SFO"),  // absurd time
                     flight_event("", "7", "LAX", "SFO"),                      // no event time
                     flight_event("yesterday", "7", "LAX", "SFO"),             // unparsable time
                     flight_event("2001-01-01T10:04:00Z", "9", "LAX", "SFO"),  // good
                 });
  ASSERT_TRUE(r) << failure_text(r);
  EXPECT_EQ(r->accepted, 2u);
  ASSERT_EQ(r->rejected.size(), 5u);
  std::map<uint32_t, std::pair<std::string, std::string>> rej;
  for (auto& x : r->rejected) rej[x.index] = {x.field, x.reason};
  EXPECT_EQ(rej[1].first, "delay");
  EXPECT_NE(rej[1].second.find("expected float, got 'late'"), std::string::npos) << rej[1].second;
  EXPECT_EQ(rej[2].first, "origin");
  EXPECT_EQ(rej[3].first, "date");
  EXPECT_NE(rej[3].second.find("more than max_future (1d) past the wall clock"), std::string::npos)
      << rej[3].second;
  EXPECT_EQ(rej[4].first, "date");
  EXPECT_EQ(rej[5].first, "date");
  ASSERT_EQ(wait_applied(h->rpc(), 4), 4u);
  EXPECT_EQ(feature("airport_delay", "LAX", "count_1h"), 2);
  EXPECT_EQ(feature("airport_delay", "LAX", "mean_delay_1h"), 7);
  auto st = c->status();
  ASSERT_TRUE(st) << failure_text(st);
  EXPECT_EQ(st->get().getRejectedAtGateway(), 5u);
}

TEST_F(BadInput, RequestLevelErrorsSayWhatIsWrong) {
  EXPECT_NE(rpc_error(c->ingest("trains", {client::event{}}))
                .find("unknown stream 'trains' (known: flights)"),
            std::string::npos);
  EXPECT_NE(rpc_error(c->ingest("flights", std::vector<client::event>(100001)))
                .find("exceeds the limit of 100000"),
            std::string::npos);
  EXPECT_NE(rpc_error(c->ingest("flights", {client::event{}}, "has space")).find("batchId"),
            std::string::npos);
  EXPECT_NE(rpc_error(c->features("nope", {"LAX"})).find("unknown view 'nope'"), std::string::npos);
  EXPECT_NE(rpc_error(c->features("airport_delay", {})).find("no entities"), std::string::npos);
  EXPECT_NE(
      rpc_error(c->features("airport_delay", {std::string(300, 'x')})).find("invalid entity key"),
      std::string::npos);
  EXPECT_NE(rpc_error(c->features("airport_delay", {"LAX"}, 4102444800000000LL * 100))
                .find("not a plausible time"),  // the year 14,000
            std::string::npos);
  // A negative asOf is that long before the stream's clock, which a stream without events lacks.
  EXPECT_NE(rpc_error(c->features("airport_delay", {"LAX"}, -5))
                .find("5us before the clock of stream flights, which has no event yet"),
            std::string::npos);
  // The node still serves.
  EXPECT_EQ(shard_count(), 64u);
}

TEST_F(BadInput, GarbageOnTheRpcPortDoesNotHurtTheNode) {
  for (int round = 0; round < 3; ++round) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(h->n->rpc_port()));
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    std::string junk =
        round == 0   ? std::string(64, '\xff')
        : round == 1 ? std::string("\x00\x00\x00\x00\xff\xff\xff\x7f", 8) + std::string(16, 'a')
                     : std::string("GET / HTTP/1.1\r\n\r\n");
    (void)::write(fd, junk.data(), junk.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::close(fd);
  }
  EXPECT_EQ(shard_count(), 64u);
}

TEST_F(BadInput, MalformedMessagesPublishedStraightToJetStreamAreDeadLettered) {
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, h->n->nats_url().c_str()), NATS_OK);
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  uint32_t lax = shard_of("LAX", 64);
  std::string subj = "tsr.ev.flights.origin." + std::to_string(lax);
  // 1: not Cap'n Proto at all; 2: a batch with a wrong-shard key and a bad type between good
  // events.
  ASSERT_EQ(js_Publish(nullptr, js, subj.c_str(), "garbage!", 8, nullptr, nullptr), NATS_OK);
  capnp::MallocMessageBuilder mb;
  auto evs = mb.initRoot<wire::EventBatch>().initEvents(4);
  set_flight(evs[0], "2001-01-02T10:00:00Z", "20", "LAX", "SFO");
  set_flight(evs[1], "2001-01-02T10:01:00Z", "1", "ORD", "SFO");     // ORD lives on another shard
  set_flight(evs[2], "2001-01-02T10:02:00Z", "oops", "LAX", "SFO");  // wrong type
  set_flight(evs[3], "2001-01-02T10:03:00Z", "40", "LAX", "SFO");
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  ASSERT_EQ(js_Publish(nullptr, js, subj.c_str(), bytes.begin(), static_cast<int>(bytes.size()),
                       nullptr, nullptr),
            NATS_OK);

  // One LAX flight in a batch of its own, straight to JetStream.
  auto publish_one = [&](const std::string& date) {
    capnp::MallocMessageBuilder one;
    set_flight(one.initRoot<wire::EventBatch>().initEvents(1)[0], date, "99", "LAX", "SFO");
    auto one_words = capnp::messageToFlatArray(one);
    auto one_bytes = one_words.asBytes();
    return js_Publish(nullptr, js, subj.c_str(), one_bytes.begin(),
                      static_cast<int>(one_bytes.size()), nullptr, nullptr);
  };
  // 3: an event from before the offline retention (2d before the shard's watermark).
  ASSERT_EQ(publish_one("2000-12-25T00:00:00Z"), NATS_OK);
  // 4: an event two months past the stream's watermark (a producer's bad clock): refused, not
  // applied, so LAX's windows keep what the good events put there.
  ASSERT_EQ(publish_one("2001-03-02T10:00:00Z"), NATS_OK);

  uint64_t dead = 0;
  EXPECT_TRUE(eventually(
      [&] {
        auto st = c->status();
        if (!st) {
          ADD_FAILURE() << failure_text(st);
          return true;
        }
        return (dead = st->get().getDeadLetters()) >= 5;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(50)))
      << "dead letters after 60 s: " << dead;
  EXPECT_EQ(dead, 5u);
  EXPECT_EQ(feature("airport_delay", "LAX", "count_1h"), 2);
  EXPECT_EQ(feature("airport_delay", "LAX", "mean_delay_1h"), 30);
  // The dead letters carry their reasons on tsr.dlq.flights, in order.
  std::vector<std::string> reasons;
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    natsMsg* m = nullptr;
    // Dead letters are published asynchronously, ahead of the shard's commit: the count in
    // status can lead the stored message by a moment.
    natsStatus got = NATS_ERR;
    eventually(
        [&] { return (got = js_GetMsg(&m, js, "TSR_DLQ", seq, nullptr, nullptr)) == NATS_OK; },
        std::chrono::seconds(30), std::chrono::milliseconds(50));
    ASSERT_EQ(got, NATS_OK) << "dead letter " << seq << " not stored within 30 s";
    reasons.emplace_back(natsMsg_GetData(m), natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
  }
  EXPECT_NE(reasons[0].find("malformed EventBatch"), std::string::npos) << reasons[0];
  EXPECT_NE(reasons[1].find("belongs to shard"), std::string::npos) << reasons[1];
  EXPECT_NE(reasons[2].find("expected float, got 'oops'"), std::string::npos) << reasons[2];
  EXPECT_NE(reasons[3].find("older than the offline retention (2d)"), std::string::npos)
      << reasons[3];
  EXPECT_NE(reasons[4].find("field date: event time 2001-03-02T10:00:00Z is more than max_jump "
                            "(2d) past the stream's watermark"),
            std::string::npos)
      << reasons[4];
  EXPECT_EQ(feature("airport_delay", "LAX", "count_1h"), 2);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

TEST(BadDefinitions, NodeRefusesToStartAndNamesTheLine) {
  temp_dir dir;
  std::string defs = dir.path + "/bad.lua";
  std::ofstream(defs) << "stream { name = 'x', time_field = 't', fields = { t = 'timestamp' } }\n"
                         "view { name = 'v', entity = 'nobody', stream = 'x', features = {} }\n";
  node_config cfg;
  cfg.data_dir = dir.path + "/data";
  cfg.rpc = "127.0.0.1:0";
  cfg.shards = kTestShards;
  cfg.definitions = defs;
  auto r = node::start(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find("bad.lua:2:"), std::string::npos) << r.error_message();
  EXPECT_NE(r.error_message().find("unknown entity 'nobody'"), std::string::npos)
      << r.error_message();
}

TEST(BadConfig, ShardCountIsFixedForADataDir) {
  temp_dir dir;
  { node_harness h(dir.path); }
  node_config cfg;
  cfg.data_dir = dir.path;
  cfg.rpc = "127.0.0.1:0";
  cfg.definitions = flights_definitions();
  cfg.shards = 32;
  auto r = node::start(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find("created with 64 shards"), std::string::npos)
      << r.error_message();
}

// Without a shard count a node takes its data dir's (a dir created with 64 stays at 64), and a
// new data dir gets the default, 8.
TEST(BadConfig, WithoutAShardCountANodeKeepsItsDataDirsAndANewOneGetsTheDefault) {
  temp_dir dir, fresh;
  { node_harness h(dir.path); }
  for (auto [d, want] : {std::pair{dir.path, 64u}, std::pair{fresh.path, kDefaultShards}}) {
    node_config cfg;
    cfg.data_dir = d;
    cfg.rpc = "127.0.0.1:0";
    cfg.definitions = flights_definitions();
    auto r = node::start(cfg);
    ASSERT_TRUE(r) << r.error_message();
    auto st = open_client("127.0.0.1:" + std::to_string((*r)->rpc_port()))->status();
    ASSERT_TRUE(st) << failure_text(st);
    EXPECT_EQ(st->get().getShardCount(), want);
  }
  EXPECT_EQ(kDefaultShards, 8u);
}

// The shard count is fixed when the cluster is created: a node configured otherwise is refused
// at once (errc::invalid), not retried like a NATS cluster that is still forming (those
// failures end, after 30 s, in "cannot join the cluster").
TEST(BadConfig, ANodeWithAnotherShardCountThanItsClusterIsRefusedAtOnce) {
  temp_dir first, second;
  node_harness h(first.path);
  ASSERT_TRUE(h.n);
  node_config cfg;
  cfg.data_dir = second.path;
  cfg.rpc = "127.0.0.1:0";
  cfg.nats_url = h.n->nats_url();
  cfg.definitions = flights_definitions();
  cfg.shards = 32;
  auto r = node::start(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find(
                "the cluster at this NATS has 64 shards; this node is configured with 32"),
            std::string::npos)
      << r.error_message();
  EXPECT_EQ(r.error_message().find("cannot join the cluster"), std::string::npos)
      << r.error_message();
}

TEST(BadCli, IngestNamesTheLineAndFieldAndKeepsGoodRows) {
  temp_dir dir;
  node_harness h(dir.path);
  std::string csv = dir.path + "/bad.csv";
  std::ofstream(csv) << "date,delay,distance,origin,destination\n"
                        "2001-01-01T00:01:00.000Z,33,2176,LAS,PHL\n"
                        "2001-01-01T00:02:00.000Z,abc,2176,LAS,PHL\n"
                        "2001-01-01T00:03:00.000Z,1,2176,LAS\n"
                        "2001-01-01T00:04:00.000Z,5,2176,LAS,PHL\n";
  std::string out;
  EXPECT_EQ(run_cli("ingest --quiet --rpc " + h.rpc() + " --stream flights " + csv, &out), 1)
      << out;
  EXPECT_NE(out.find("line 3: field delay: expected float, got 'abc'"), std::string::npos) << out;
  EXPECT_NE(out.find("line 4: has 4 columns, the header has 5"), std::string::npos) << out;
  EXPECT_NE(out.find("ingested 2 events"), std::string::npos) << out;
  EXPECT_EQ(run_cli("ingest --rpc " + h.rpc() + " --stream flights /nonexistent.csv", &out), 2);
  EXPECT_NE(out.find("cannot open /nonexistent.csv"), std::string::npos) << out;
  EXPECT_EQ(run_cli("features --rpc 127.0.0.1:1 airport_delay LAX", &out), 2);
  EXPECT_NE(out.find("Is `tessera node` running"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera::test
