// Stream-following predictions (issue 16, item 7): a model declared with `follow` gets one
// prediction per event of the followed stream, published on tsr.pred.<model> exactly once —
// also across a SIGKILL of the node mid-stream —, each equal to `predict` of the same example;
// events its `when` excludes are skipped, an event that cannot be predicted is dead-lettered
// with its reason and the stream goes on; bad `follow` declarations are refused at load.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <cmath>
#include <csignal>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "codec.h"
#include "definitions.h"
#include "hash.h"
#include "nats_server.h"
#include "schemas/tessera.capnp.h"
#include "serving_support.h"

namespace tessera::test {
namespace {

// A departures stream (what the flights example's live replay publishes at each scheduled
// departure) with a view on it, so that its events are kept.
const char* kDepartures = R"(
stream {
  name = "departures", time_field = "date",
  fields = { id = "text", date = "timestamp", distance = "float", origin = "text", destination = "text" },
  duplicate_window = "2h", offline_retention = "400d", clock = "replay",
}
view {
  name = "route_departures", version = 1, entity = "route", stream = "departures", ttl = "1d",
  features = { count { "departures_24h", window = "24h" } },
}
)";

// late_mlp follows departures of 200 miles or more, from the stream's start.
const char* kFollow =
    R"(follow = { stream = "departures", when = "distance >= 200", from = "start" },)";

client::event departure_event(const flight& f, size_t i) {
  client::event e;
  e.fields = {{"id", "F" + std::to_string(i)},
              {"date", client::timestamp{f.time}},
              {"distance", f.distance},
              {"origin", f.origin},
              {"destination", f.destination}};
  e.known_time = -1;
  return e;
}

// Every message of a JetStream stream (payloads in sequence order).
std::vector<std::string> stream_messages(jsCtx* js, const char* stream) {
  std::vector<std::string> out;
  jsStreamInfo* si = nullptr;
  if (js_GetStreamInfo(&si, js, stream, nullptr, nullptr) != NATS_OK) return out;
  const uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  for (uint64_t seq = first; seq <= last && seq > 0; ++seq) {
    natsMsg* m = nullptr;
    if (js_GetMsg(&m, js, stream, seq, nullptr, nullptr) != NATS_OK) continue;
    out.emplace_back(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
    natsMsg_Destroy(m);
  }
  return out;
}

// The prediction lines on tsr.pred.late_mlp, by the departure's id (a list: to count twice).
std::map<std::string, std::vector<nlohmann::json>> predictions_by_id(jsCtx* js) {
  std::map<std::string, std::vector<nlohmann::json>> out;
  for (auto& msg : stream_messages(js, "TSR_PREDS")) {
    std::istringstream lines(msg);
    std::string line;
    while (std::getline(lines, line))
      if (!line.empty()) {
        auto j = nlohmann::json::parse(line);
        out[j["fields"]["id"].get<std::string>()].push_back(std::move(j));
      }
  }
  return out;
}

struct nats_link {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  explicit nats_link(const std::string& url) {
    EXPECT_EQ(natsConnection_ConnectTo(&nc, url.c_str()), NATS_OK);
    EXPECT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  }
  ~nats_link() {
    if (js) jsCtx_Destroy(js);
    if (nc) natsConnection_Destroy(nc);
  }
};

// The follower's consumer has handed out and seen acknowledged every message.
bool follow_idle(jsCtx* js) {
  jsConsumerInfo* ci = nullptr;
  if (js_GetConsumerInfo(&ci, js, "TSR_departures", "follow_late_mlp", nullptr, nullptr) != NATS_OK)
    return false;
  const bool idle = ci->NumPending == 0 && ci->NumAckPending == 0;
  jsConsumerInfo_Destroy(ci);
  return idle;
}

std::vector<client::event> departures(size_t from, size_t to) {
  std::vector<client::event> out;
  for (size_t i = from; i < to && i < slice().size(); ++i)
    out.push_back(departure_event(slice()[i], i));
  return out;
}

// Ids of the departures late_mlp must predict (200 miles or more) and how many it skips.
std::set<std::string> expected_ids(size_t n, size_t* skipped = nullptr) {
  std::set<std::string> out;
  size_t skip = 0;
  for (size_t i = 0; i < n && i < slice().size(); ++i)
    if (slice()[i].distance >= 200)
      out.insert("F" + std::to_string(i));
    else
      ++skip;
  if (skipped) *skipped = skip;
  return out;
}

// Ingests departures [from, to) in calls of 500 (batch ids make a repeated call count once).
void ingest_departures(client::connection& c, size_t from, size_t to) {
  for (size_t at = from; at < to; at += 500) {
    auto r =
        c.ingest("departures", departures(at, std::min(to, at + 500)), "dep-" + std::to_string(at));
    ASSERT_TRUE(r) << failure_text(r);
    ASSERT_TRUE(r->rejected.empty()) << r->rejected[0].field << ": " << r->rejected[0].reason;
  }
}

TEST(Follow, EveryDepartureGetsOnePredictionEqualToPredictAndBadEventsAreDeadLettered) {
  serving_node s(kDepartures, kFollow);
  ASSERT_TRUE(s.ready);
  auto& c = *s.c;
  ASSERT_TRUE(serves(c, "late_mlp", 1));
  // The test period's departures (2001-01-08..11), one event each.
  size_t from = 0;
  while (from < slice().size() && slice()[from].time < kJan8) ++from;
  const size_t to = std::min(slice().size(), from + 3000);
  ingest_departures(c, from, to);
  size_t skipped = 0;
  std::set<std::string> want;
  for (auto& id : expected_ids(to, &skipped))
    if (std::stoul(id.substr(1)) >= from) want.insert(id);
  skipped = to - from - want.size();

  // One departure straight to JetStream with a distance that is not a number: the follower
  // dead-letters it (so does the departures shard) and goes on.
  nats_link nl(s.h->n->nats_url());
  {
    capnp::MallocMessageBuilder mb;
    auto ev = mb.initRoot<wire::EventBatch>().initEvents(1)[0];
    ev.setStream("departures");
    ev.setKey("LAX-SFO");
    ev.setEventTime(kJan8 + 3600LL * 1000000);
    auto fl = ev.initFields(5);
    const std::pair<const char*, value> fields[] = {
        {"id", std::string("BAD")},
        {"date", timestamp_value{kJan8 + 3600LL * 1000000}},
        {"distance", std::string("oops")},
        {"origin", std::string("LAX")},
        {"destination", std::string("SFO")}};
    for (unsigned k = 0; k < 5; ++k) {
      fl[k].setName(fields[k].first);
      write_value(fl[k].initValue(), fields[k].second);
    }
    auto words = capnp::messageToFlatArray(mb);
    auto bytes = words.asBytes();
    const std::string subj = "tsr.ev.departures.route." + std::to_string(shard_of("LAX-SFO", 64));
    ASSERT_EQ(js_Publish(nullptr, nl.js, subj.c_str(), bytes.begin(),
                         static_cast<int>(bytes.size()), nullptr, nullptr),
              NATS_OK);
  }

  std::map<std::string, std::vector<nlohmann::json>> got;
  EXPECT_TRUE(eventually(
      [&] {
        got = predictions_by_id(nl.js);
        return got.size() >= want.size() && follow_idle(nl.js);
      },
      std::chrono::seconds(120), std::chrono::milliseconds(250)))
      << got.size() << " of " << want.size() << " departures predicted";
  size_t missing = 0, twice = 0, extra = 0;
  for (auto& id : want) {
    auto it = got.find(id);
    missing += it == got.end();
    twice += it != got.end() && it->second.size() > 1;
  }
  for (auto& [id, lines] : got) extra += !want.count(id);
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(twice, 0u);
  EXPECT_EQ(extra, 0u);  // the short flights (when) and the bad event got none

  // Each equals `predict` of the same example (every 20th, 150 of them).
  std::vector<client::example> ex;
  std::vector<double> followed;
  size_t k = 0;
  for (auto& id : want) {
    if (k++ % 20) continue;
    const flight& f = slice()[std::stoul(id.substr(1))];
    ex.push_back(departure(f, id));
    followed.push_back(got[id][0]["score"].get<double>());
    EXPECT_EQ(got[id][0]["prediction_time"].get<int64_t>(), f.time);
    EXPECT_EQ(got[id][0]["fields"]["origin"].get<std::string>(), f.origin);
  }
  auto r = c.predict("late_mlp", ex);
  ASSERT_TRUE(r) << failure_text(r);
  size_t equal = 0;
  double worst = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    ASSERT_TRUE((*r)[i].ok()) << (*r)[i].error;
    equal += (*r)[i].score == followed[i];
    worst = std::max(worst, std::abs((*r)[i].score - followed[i]));
  }
  std::cerr << "followed vs predict: " << equal << " of " << ex.size()
            << " bit-identical, max |diff| " << worst << "\n";
  EXPECT_LE(worst, 1e-6);  // one-row and many-row forward passes differ in the last bits

  // The dead letter names its reason; status counts everything.
  std::string dead;
  for (auto& m : stream_messages(nl.js, "TSR_DLQ"))
    if (m.find("\"model\":\"late_mlp\"") != std::string::npos) dead = m;
  EXPECT_NE(dead.find("expected float, got 'oops'"), std::string::npos) << dead;
  EXPECT_NE(dead.find("\"stream\":\"departures\""), std::string::npos) << dead;
  auto st = c.status();
  ASSERT_TRUE(st) << failure_text(st);
  ASSERT_EQ((*st)->getFollows().size(), 1u);
  auto fs = (*st)->getFollows()[0];
  EXPECT_EQ(fs.getPredicted(), want.size());
  EXPECT_EQ(fs.getSkipped(), skipped);
  EXPECT_EQ(fs.getDeadLettered(), 1u);
  EXPECT_GT(fs.getLagP99Ms(), 0);
  std::string out;
  EXPECT_EQ(run_cli("status --rpc " + s.h->rpc(), &out), 0) << out;
  EXPECT_NE(out.find("follow late_mlp <- departures"), std::string::npos) << out;
}

TEST(Follow, ExactlyOncePerDepartureAcrossASigkillMidStream) {
  temp_dir dir;
  auto n = embedded_nats::start(dir.path + "/nats-data");
  ASSERT_TRUE(n) << n.error_message();
  const std::string defs =
      slice_example_definitions(dir.path, "follow", true, kDepartures, kFollow);
  const std::string args = "--follow-ack-wait-ms 2000";
  auto p = std::make_unique<node_process>(dir.path + "/a", (*n)->url(), "a", args, defs);
  ASSERT_GE(wait_all_served(p->rpc(), 64, 60, "", 1), 0) << p->log_tail();
  std::string out;
  ASSERT_EQ(
      run_cli("ingest --quiet --replay --rpc " + p->rpc() + " --stream flights " + slice_path(),
              &out),
      0)
      << out;
  ASSERT_EQ(wait_applied(p->rpc(), 2 * slice().size()), 2 * slice().size());
  ASSERT_EQ(run_cli("train late_mlp --quiet --rpc " + p->rpc(), &out), 0) << out;
  {
    auto c = open_client(p->rpc());
    ASSERT_TRUE(c->promote_model("late_mlp", 1, "production"));
    ASSERT_TRUE(serves(*c, "late_mlp", 1));
  }
  // The whole slice's departures (32,797), half before the kill, half after the restart.
  const size_t total = slice().size(), half = total / 2;
  nats_link nl((*n)->url());
  {
    auto c = open_client(p->rpc());
    ingest_departures(*c, 0, half);
  }
  // Killed while it follows: some predictions stored, not all of the first half.
  size_t before = 0;
  eventually([&] { return (before = predictions_by_id(nl.js).size()) > 0; },
             std::chrono::seconds(60), std::chrono::milliseconds(20));
  p->kill(SIGKILL);
  const size_t at_kill = predictions_by_id(nl.js).size();
  std::cerr << "SIGKILL with " << at_kill << " of " << expected_ids(half).size()
            << " first-half departures predicted\n";
  EXPECT_GT(at_kill, 0u);
  p = std::make_unique<node_process>(dir.path + "/a", (*n)->url(), "a", args, defs);
  ASSERT_GE(wait_all_served(p->rpc(), 64, 60, "", 1), 0) << p->log_tail();
  {
    auto c = open_client(p->rpc());
    ingest_departures(*c, half, total);
  }
  const auto want = expected_ids(total);
  std::map<std::string, std::vector<nlohmann::json>> got;
  EXPECT_TRUE(eventually(
      [&] {
        got = predictions_by_id(nl.js);
        return got.size() >= want.size() && follow_idle(nl.js);
      },
      std::chrono::seconds(180), std::chrono::milliseconds(500)))
      << got.size() << " of " << want.size() << " departures predicted\n"
      << p->log_tail();
  size_t missing = 0, twice = 0, extra = 0;
  for (auto& id : want) {
    auto it = got.find(id);
    missing += it == got.end();
    twice += it != got.end() && it->second.size() > 1;
  }
  for (auto& [id, lines] : got) extra += !want.count(id);
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(twice, 0u);
  EXPECT_EQ(extra, 0u);
  auto st = open_client(p->rpc())->status();
  ASSERT_TRUE(st) << failure_text(st);
  ASSERT_EQ((*st)->getFollows().size(), 1u);
  auto fs = (*st)->getFollows()[0];
  std::cerr << "after the restart: " << fs.getPredicted() << " predicted, " << fs.getRetried()
            << " messages redelivered, " << fs.getDuplicates() << " publishes de-duplicated\n";
  EXPECT_EQ(fs.getDeadLettered(), 0u);
}

// Writes flights [from, from + n) of the slice as a replay file (the example's columns plus an
// id "R<index>"), their departures moved `shift_us` later; returns the ids late_mlp predicts.
std::set<std::string> write_period(const std::string& csv, size_t from, size_t n,
                                   int64_t shift_us) {
  std::set<std::string> want;
  std::ofstream out(csv);
  out << "date,delay,distance,origin,destination,id\n";
  for (size_t i = from; i < from + n && i < slice().size(); ++i) {
    const flight& f = slice()[i];
    char date[32];
    const time_t secs = static_cast<time_t>((f.time + shift_us) / 1000000);
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&secs));
    out << date << "," << f.delay << "," << f.distance << "," << f.origin << "," << f.destination
        << ",R" << i << "\n";
    if (f.distance >= 200) want.insert("R" + std::to_string(i));
  }
  return want;
}

// `tessera replay` (what examples/flights/live.sh runs): rows of a file go to two streams at
// each stream's own event time (departures at `date`, flights at the derived arrival), paced in
// event-time order; every departure of 200 miles or more gets exactly one prediction.
TEST(Follow, ReplaySendsEachRowToBothStreamsAndEveryDepartureIsPredictedOnce) {
  serving_node s(kDepartures, kFollow);
  ASSERT_TRUE(s.ready);
  ASSERT_TRUE(serves(*s.c, "late_mlp", 1));
  size_t from = 0;
  while (from < slice().size() && slice()[from].time < kJan8) ++from;
  const size_t n = std::min<size_t>(400, slice().size() - from);
  const std::string csv = s.dir.path + "/period.csv";
  const std::set<std::string> want = write_period(csv, from, n, 0);
  std::string out;
  ASSERT_EQ(run_cli("replay --rpc " + s.h->rpc() + " --definitions " + s.defs +
                        " --stream departures --stream flights --speedup 1e7 --every 1 --model "
                        "late_mlp " +
                        csv,
                    &out),
            0)
      << out;
  EXPECT_NE(out.find("sent " + std::to_string(2 * n) + " events (departures " + std::to_string(n) +
                     ", flights " + std::to_string(n) + "), 0 rejected"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("late_mlp predictions"), std::string::npos) << out;
  // A period that holds no row is an error, and so is a stream the definitions lack.
  EXPECT_EQ(run_cli("replay --rpc " + s.h->rpc() + " --definitions " + s.defs +
                        " --stream departures --from 2030-01-01 " + csv,
                    &out),
            2);
  EXPECT_NE(out.find("no event"), std::string::npos) << out;
  EXPECT_EQ(
      run_cli("replay --rpc " + s.h->rpc() + " --definitions " + s.defs + " --stream nope " + csv,
              &out),
      2);
  EXPECT_NE(out.find("no stream 'nope'"), std::string::npos) << out;

  nats_link nl(s.h->n->nats_url());
  std::map<std::string, std::vector<nlohmann::json>> got;
  ASSERT_TRUE(eventually(
      [&] {
        got = predictions_by_id(nl.js);
        size_t have = 0;
        for (auto& id : want) have += got.count(id);
        return have == want.size();
      },
      std::chrono::seconds(120)))
      << got.size() << " predicted of " << want.size();
  for (auto& id : want) EXPECT_EQ(got[id].size(), 1u) << id;
  for (auto& [id, v] : got)
    if (id[0] == 'R') EXPECT_TRUE(want.count(id)) << id << " was not to be predicted";
}

// A followed departure is predicted from the features its point-in-time training example would
// hold: the arrivals replayed before it are read even when the flights shards apply them after
// the follower got the departure (settled reads, actors/features/shard_reads.h). The replay runs
// as fast as it can (speed-up 1e7), so the follower races the flights shards on every event;
// `skew` recomputes each logged vector from the offline log at its prediction time. The period is
// the slice's Jan 8-9 moved five days on, after every arrival of the slice, so the windows of
// its departures hold the arrivals of the replay itself.
TEST(Follow, FollowedPredictionsReadWhatTheirPointInTimeExamplesHold) {
  serving_node s(kDepartures, kFollow);
  ASSERT_TRUE(s.ready);
  ASSERT_TRUE(serves(*s.c, "late_mlp", 1));
  size_t from = 0;
  while (from < slice().size() && slice()[from].time < kJan8) ++from;
  const std::string csv = s.dir.path + "/later.csv";
  const std::set<std::string> want = write_period(csv, from, 1500, 5 * 86400LL * 1000000);
  std::string out;
  ASSERT_EQ(run_cli("replay --rpc " + s.h->rpc() + " --definitions " + s.defs +
                        " --stream departures --stream flights --speedup 1e7 --every 1 " + csv,
                    &out),
            0)
      << out;
  nats_link nl(s.h->n->nats_url());
  std::map<std::string, std::vector<nlohmann::json>> got;
  ASSERT_TRUE(eventually(
      [&] {
        got = predictions_by_id(nl.js);
        return got.size() >= want.size() && follow_idle(nl.js);
      },
      std::chrono::seconds(180), std::chrono::milliseconds(250)))
      << got.size() << " predicted of " << want.size();
  // Every prediction is in the prediction log with its vector: recompute them all.
  auto& c = *s.c;
  ASSERT_TRUE(eventually(
      [&] {
        auto page = c.tail_predictions("late_mlp", 5000);
        return page && page->records.size() >= want.size();
      },
      std::chrono::seconds(60)));
  auto skew = c.skew("late_mlp", 5000);
  ASSERT_TRUE(skew) << failure_text(skew);
  auto report = nlohmann::json::parse(*skew);
  auto st = c.status();
  ASSERT_TRUE(st) << failure_text(st);
  std::cerr << want.size() << " departures followed; settled reads: " << (*st)->getSettledWaits()
            << " waited, " << (*st)->getSettleTimeouts() << " ran out of time\n";
  EXPECT_EQ(report["compared"], want.size()) << *skew;
  EXPECT_EQ(report["mismatched_examples"], 0) << report.dump(1).substr(0, 3000);
  EXPECT_EQ((*st)->getSettleTimeouts(), 0u);
}

TEST(Follow, BadFollowDeclarationsAreRefusedAtLoad) {
  temp_dir dir;
  auto load = [&](const std::string& extra, const std::string& follow) {
    auto path = slice_example_definitions(dir.path, "bad", false, extra, follow);
    return definitions::load_file(path);
  };
  auto ok = load(kDepartures, kFollow);
  ASSERT_TRUE(ok) << ok.error_message();
  const model_def* m = (*ok)->find_model("late_mlp");
  ASSERT_TRUE(m && m->follow.any());
  EXPECT_EQ(m->follow.stream, "departures");
  EXPECT_TRUE(m->follow.from_start);
  const struct {
    std::string extra, follow, says;
  } bad[] = {
      {kDepartures, R"(follow = { stream = "arrivals" },)", "follow: unknown stream 'arrivals'"},
      {R"(stream { name = "departures", time_field = "date", fields = { date = "timestamp", origin = "text", destination = "text" } })",
       R"(follow = { stream = "departures" },)", "feeds no view"},
      {kDepartures, R"(follow = { stream = "departures", when = "distance >>> 3" },)",
       "follow.when"},
      {kDepartures, R"(follow = { stream = "departures", when = "speed > 3" },)", "follow.when"},
      {kDepartures, R"(follow = { stream = "departures", from = "yesterday" },)",
       "follow.from must be"},
      {kDepartures, R"(follow = { stream = "departures", every = 2 },)",
       "follow: unknown key(s) every"},
      {kDepartures, R"(follow = "departures",)", "follow must be a table"},
  };
  for (auto& b : bad) {
    auto r = load(b.extra, b.follow);
    ASSERT_FALSE(r) << b.follow;
    EXPECT_NE(r.error_message().find(b.says), std::string::npos) << r.error_message();
    EXPECT_NE(r.error_message().find("model late_mlp"), std::string::npos) << r.error_message();
  }
}

}  // namespace
}  // namespace tessera::test
