#include "features_rpc.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <mutex>

#include "cluster/cluster_view.h"
#include "codec.h"
#include "expectations.h"
#include "hash.h"
#include "messages.h"
#include "rpc_edge.h"
#include "schemas/gateway.capnp.h"
#include "stream_clock.h"
#include "time_util.h"
#include "vector_cache.h"

namespace tessera {

namespace {
constexpr size_t kEventsPerMessage = 1000;
constexpr auto kRetryStep = std::chrono::milliseconds(20);
}  // namespace

features_rpc::features_rpc(std::shared_ptr<const features_context> ctx, caf::actor supervisor,
                           features_rpc_options opts)
    : ctx_(std::move(ctx)),
      sup_(std::move(supervisor)),
      opts_(std::move(opts)),
      reader_(ctx_, ctx_->nats) {}

features_rpc::~features_rpc() = default;

template <typename Call>
kj::Promise<void> features_rpc::ingest_call(Call call) {
  ctx_->metrics->ingest_calls++;
  auto p = call.getParams();
  std::string stream_name = p.getStream();
  const stream_def* s = ctx_->defs->find_stream(stream_name);
  if (!s)
    throw_rpc_error("unknown stream '" + stream_name + "'" + known_streams(), errc::not_found);
  auto plans = ctx_->defs->plans_for_stream(stream_name);
  if (plans.empty())
    throw_rpc_error(
        "stream '" + stream_name + "' feeds no feature view; nothing would read these events",
        errc::invalid);
  auto events = p.getEvents();
  if (events.size() > opts_.max_events_per_call)
    throw_rpc_error("batch of " + std::to_string(events.size()) + " events exceeds the limit of " +
                        std::to_string(opts_.max_events_per_call) + "; split it",
                    errc::invalid);
  std::string batch_id = p.getBatchId();
  if (batch_id.size() > 200) throw_rpc_error("batchId longer than 200 bytes", errc::invalid);
  for (char c : batch_id)
    if (c < 0x21 || c > 0x7e)
      throw_rpc_error("batchId must be printable ASCII without spaces", errc::invalid);
  if (in_flight_.load() + events.size() > opts_.max_events_in_flight)
    throw_rpc_error("gateway overloaded: " + std::to_string(in_flight_.load()) +
                        " events await JetStream; retry later",
                    errc::overloaded);

  // Validate every event; keep the good ones grouped by (kind, shard).
  struct rejected_event {
    uint32_t index;
    event_error err;
  };
  std::vector<rejected_event> rejected;
  std::map<std::pair<size_t, uint32_t>, std::vector<std::pair<uint32_t, std::string>>>
      groups;  // -> (event index, key)
  std::vector<normalized_event> normalized(events.size());
  std::vector<int64_t> known(events.size(), 0);
  std::vector<bool> decoded(events.size(), false), is_late(events.size(), false);
  uint32_t accepted = 0, refused = 0;
  std::vector<int64_t> times;
  for (uint32_t i = 0; i < events.size(); ++i) {
    auto e = events[i];
    event_error err;
    if (e.getStream().size() && std::string(e.getStream().cStr()) != stream_name) {
      rejected.push_back({i,
                          {"", "event names stream '" + std::string(e.getStream().cStr()) +
                                   "' in a call for '" + stream_name + "'"}});
      continue;
    }
    if (!normalize_event(e, *s, normalized[i], err)) {
      if (err.outlier) ++refused;
      rejected.push_back({i, err});
      continue;
    }
    decoded[i] = true;
    times.push_back(normalized[i].time);
  }
  // The stream's clock (runtime/stream_clock.h) as this call arrives: now for a live stream,
  // else the latest event time applied or accepted anywhere (a replay's accepted events run
  // ahead of its applied ones). Late events (older than the online windows) are judged by it,
  // here and by the shards (EventBatch.clock). Outliers are measured from it and, within this
  // call, from the events accepted before them. A stream's very first call has no such time:
  // it is measured from the median of the call's own events, so a few bad ones among many good
  // are refused (a first call of only bad events cannot be told from good ones: they set the
  // clock, and the later good events are then reported late, or refused when far behind).
  stream_clocks* clocks = ctx_->clocks;
  const bool live = s->clock == clock_mode::live;
  const int64_t now = now_micros();
  const int64_t replay_ref = clocks ? clocks->jump_reference(stream_name) : 0;
  const int64_t call_clock = live ? now : replay_ref;
  // A live stream's reference is never behind the wall clock: a quiet stream's next event at
  // now is no jump (max_future bounds it from the other side).
  int64_t jump_ref = live ? std::max(replay_ref, now) : replay_ref;
  if (jump_ref == 0 && !times.empty()) {
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    jump_ref = times[times.size() / 2];
  }
  int64_t longest_retention = 0;
  for (auto* p : plans) longest_retention = std::max(longest_retention, p->retention_us);
  int64_t batch_max = 0;
  for (uint32_t i = 0; i < events.size(); ++i) {
    if (!decoded[i]) continue;
    auto e = events[i];
    event_error err;
    const int64_t t = normalized[i].time;
    if (std::string why = jump_refusal(*s, t, std::max(jump_ref, batch_max)); !why.empty()) {
      ++refused;
      rejected.push_back({i, {s->time_field, why}});
      continue;
    }
    // The stream's expectations (runtime/expectations.h): soft failures are counted by the
    // ledger; a hard one rejects the event, or dead-letters it, with the reason.
    if (s->expect && ctx_->validation) {
      auto v = ctx_->validation->record(*s, normalized[i].fields, t, call_clock);
      if (v.action != expectation::action::count) {
        if (v.action == expectation::action::dead_letter) {
          nlohmann::json ev = nlohmann::json::object();
          for (size_t f = 0; f < s->fields.size(); ++f)
            if (!is_null(normalized[i].fields[f]))
              ev[s->fields[f].name] = to_text(normalized[i].fields[f]);
          ctx_->nats->publish_dead_letter(stream_name,
                                          nlohmann::json{{"stream", stream_name},
                                                         {"reason", v.reason},
                                                         {"field", v.field},
                                                         {"time", format_timestamp(now)},
                                                         {"event", ev}}
                                              .dump());
          ctx_->metrics->dead_letters += 1;
          v.reason += " (dead-lettered on tsr.dlq." + stream_name + ")";
        }
        rejected.push_back({i, {v.field, v.reason}});
        continue;
      }
    }
    const int64_t kt = e.getKnownTime();
    if (kt == -1) {
      known[i] = normalized[i].time;
    } else if (kt != 0) {
      if (!timestamp_is_sane(kt, kMaxFutureUs)) {
        rejected.push_back({i,
                            {"knownTime", "absurd known time " + std::to_string(kt) +
                                              " µs (use 0 for now, -1 for the event time)"}});
        continue;
      }
      known[i] = kt;
    }
    std::vector<std::pair<size_t, std::string>> keys;
    bool ok = true;
    for (size_t pi = 0; pi < plans.size() && ok; ++pi) {
      std::string key = entity_key(normalized[i], *plans[pi], err);
      if (key.empty())
        ok = false;
      else
        keys.emplace_back(pi, std::move(key));
    }
    if (!ok) {
      rejected.push_back({i, err});
      continue;
    }
    for (auto& [pi, key] : keys)
      groups[{pi, shard_of(key, ctx_->opts.shard_count)}].emplace_back(i, std::move(key));
    ++accepted;
    // Older than every online window, yet within the offline retention (older ones become
    // dead letters at the shard, as a re-run ingest's duplicates would not be told apart here).
    is_late[i] = call_clock > 0 && t <= call_clock - longest_retention &&
                 t > call_clock - s->offline_retention_us;
    batch_max = std::max(batch_max, t);
  }
  if (clocks) {
    if (batch_max) clocks->advance_accepted(stream_name, batch_max);
    if (refused) clocks->count_refused(stream_name, refused);
  }
  if (!rejected.empty()) {
    ctx_->metrics->rejected_at_gateway += rejected.size();
    uint64_t suppressed = 0;
    if (ctx_->limiter->allow("gateway:rejected", suppressed))
      spdlog::warn("ingest {}: rejected {} of {} events, first at {}: {} {}{}", stream_name,
                   rejected.size(), events.size(), rejected[0].index, rejected[0].err.field,
                   rejected[0].err.reason,
                   suppressed ? fmt::format(" ({} similar suppressed)", suppressed) : "");
  }
  auto fill_rejections = [rejected](auto r) {
    auto rl = r.initRejected(static_cast<unsigned>(rejected.size()));
    for (size_t k = 0; k < rejected.size(); ++k) {
      rl[k].setIndex(rejected[k].index);
      rl[k].setField(rejected[k].err.field);
      rl[k].setReason(rejected[k].err.reason);
    }
  };

  // One JetStream message per (kind, shard, chunk); resolve when all are acknowledged.
  struct pending_call {
    std::mutex mu;
    size_t left = 0;
    std::string error;
    uint32_t duplicate_events = 0;
    uint32_t late_events = 0;  // in messages JetStream stored (not in duplicates)
    std::shared_ptr<xthread<void>> done;
  };
  auto pc = std::make_shared<pending_call>();
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  pc->done = std::make_shared<xthread<void>>(xthread<void>{kj::mv(paf.fulfiller)});
  std::vector<std::pair<std::string, kj::Array<capnp::word>>> messages;
  struct message_counts {
    std::string id;
    uint32_t events = 0, late = 0;  // counted through the first plan's messages only
  };
  std::vector<message_counts> ids;
  int64_t ingest_time = now_micros();
  // Events carry their values by position, named once per message (EventBatch.fieldNames): the
  // stream's own fields, not the derived ones (every reader derives those again). While a member
  // of the cluster runs a build that reads only named fields (a rolling upgrade), by name.
  const bool positional = !ctx_->cluster || ctx_->cluster->event_wire() >= 2;
  std::vector<size_t> columns;
  for (size_t f = 0; f < s->fields.size(); ++f)
    if (!s->fields[f].derive) columns.push_back(f);
  for (auto& [gk, members] : groups) {
    const kind_plan* plan = plans[gk.first];
    for (size_t off = 0, chunk = 0; off < members.size(); off += kEventsPerMessage, ++chunk) {
      size_t n = std::min(kEventsPerMessage, members.size() - off);
      capnp::MallocMessageBuilder mb;
      auto batch = mb.initRoot<wire::EventBatch>();
      batch.setIngestTime(ingest_time);
      batch.setClock(call_clock > 0 ? call_clock : 1);  // 1: judged, with no clock yet
      if (positional) {
        auto names = batch.initFieldNames(static_cast<unsigned>(columns.size()));
        for (size_t c = 0; c < columns.size(); ++c)
          names.set(static_cast<unsigned>(c), s->fields[columns[c]].name);
      }
      auto out = batch.initEvents(static_cast<unsigned>(n));
      uint32_t late_here = 0;
      for (size_t k = 0; k < n; ++k) {
        auto& [idx, key] = members[off + k];
        const normalized_event& ne = normalized[idx];
        late_here += is_late[idx];
        auto ev = out[static_cast<unsigned>(k)];
        ev.setStream(stream_name);
        ev.setKey(key);
        ev.setEventTime(ne.time);
        if (known[idx]) ev.setKnownTime(known[idx]);
        if (positional)
          write_event_values(ev, ne, columns);
        else
          write_event_fields(ev, ne, *s);
      }
      std::string subject = event_subject(stream_name, plan->entity, gk.second);
      std::string id = batch_id.empty()
                           ? ""
                           : batch_id + "." + plan->entity + "." + std::to_string(gk.second) + "." +
                                 std::to_string(chunk);
      messages.emplace_back(subject, capnp::messageToFlatArray(mb));
      // Every plan carries the same events: count duplicates through the first plan only.
      ids.push_back(gk.first == 0 ? message_counts{id, static_cast<uint32_t>(n), late_here}
                                  : message_counts{id});
    }
  }
  call.releaseParams();
  size_t total_events = accepted;
  in_flight_ += total_events;
  pc->left = messages.size();
  auto results_ready =
      paf.promise.then([this, pc, accepted, total_events, fill_rejections, call]() mutable {
        in_flight_ -= total_events;
        if (!pc->error.empty())
          throw_rpc_error(
              "JetStream did not store the batch: " + pc->error + "; retry with the same batchId",
              errc::retryable);
        auto r = call.getResults();
        r.setAccepted(accepted);
        r.setDuplicates(std::min(pc->duplicate_events, accepted));
        r.setLate(pc->late_events);
        fill_rejections(r);
      });
  if (messages.empty()) {
    pc->done->f->fulfill();
    return results_ready;
  }
  for (size_t m = 0; m < messages.size(); ++m) {
    auto bytes = messages[m].second.asBytes();
    const uint32_t n_events = ids[m].events, n_late = ids[m].late;
    ctx_->nats->publish(messages[m].first, bytes.begin(), bytes.size(), ids[m].id,
                        [pc, n_events, n_late](const std::string& err, bool dup) {
                          std::lock_guard<std::mutex> g(pc->mu);
                          if (!err.empty() && pc->error.empty()) pc->error = err;
                          if (dup)
                            pc->duplicate_events += n_events;
                          else
                            pc->late_events += n_late;
                          if (--pc->left == 0) pc->done->f->fulfill();
                        });
  }
  return results_ready;
}

template <typename Call>
kj::Promise<void> features_rpc::get_features_call(Call call) {
  ctx_->metrics->read_calls++;
  auto p = call.getParams();
  std::string view_name = p.getView();
  const view_def* v = ctx_->defs->find_view(view_name);
  if (!v) throw_rpc_error("unknown view '" + view_name + "'" + known_views(), errc::not_found);
  auto ents = p.getEntities();
  if (ents.size() == 0) throw_rpc_error("no entities given", errc::invalid);
  if (ents.size() > opts_.max_entities_per_read)
    throw_rpc_error(std::to_string(ents.size()) + " entities in one call exceeds the limit of " +
                        std::to_string(opts_.max_entities_per_read),
                    errc::invalid);
  int64_t as_of = p.getAsOf();
  if (as_of > 0 && !timestamp_is_sane(as_of, 100LL * 365 * 86400 * 1000000))
    throw_rpc_error("asOf " + std::to_string(as_of) +
                        " is not a plausible time in microseconds since the epoch",
                    errc::invalid);
  if (as_of < -100LL * 365 * 86400 * 1000000)
    throw_rpc_error(
        "asOf " + std::to_string(as_of) + " reaches back more than a century before the clock",
        errc::invalid);
  std::vector<std::string> keys;
  keys.reserve(ents.size());
  for (uint32_t i = 0; i < ents.size(); ++i) {
    std::string k(ents[i].cStr(), ents[i].size());
    if (!key_is_valid(k))
      throw_rpc_error("invalid entity key (empty, longer than 256 bytes, or containing NUL)",
                      errc::invalid);
    keys.push_back(std::move(k));
  }
  auto deadline = std::chrono::steady_clock::now() + opts_.move_wait;
  return read_until(v, std::move(keys), as_of, deadline)
      .then([call](result<std::vector<feature_vector>> r) mutable {
        auto vectors = value_or_throw(std::move(r));
        auto vl = call.getResults().initVectors(static_cast<unsigned>(vectors.size()));
        for (size_t i = 0; i < vectors.size(); ++i)
          write_vector(vl[static_cast<unsigned>(i)], vectors[i]);
      });
}

kj::Promise<result<std::vector<feature_vector>>> features_rpc::read_until(
    const view_def* v, std::vector<std::string> keys, int64_t as_of,
    std::chrono::steady_clock::time_point deadline) {
  using answer = result<std::vector<feature_vector>>;
  auto paf = kj::newPromiseAndCrossThreadFulfiller<answer>();
  auto f = std::make_shared<xthread<answer>>();
  f->f = kj::mv(paf.fulfiller);
  reader_.read(v, keys, as_of, /*forward=*/true, [f](answer r) { f->f->fulfill(std::move(r)); });
  return paf.promise.then(
      [this, v, keys = std::move(keys), as_of, deadline](answer a) mutable -> kj::Promise<answer> {
        if (a || !is_retryable(a.error_code()) || !timer_ ||
            std::chrono::steady_clock::now() + kRetryStep >= deadline)
          return kj::mv(a);
        return timer_->afterDelay(20 * kj::MILLISECONDS)
            .then([this, v, keys = std::move(keys), as_of, deadline]() mutable {
              return read_until(v, std::move(keys), as_of, deadline);
            });
      });
}

kj::Promise<void> features_rpc::fill_status(wire::NodeStatus::Builder st) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<std::vector<shard_status>>();
  auto holder = std::make_shared<xthread<std::vector<shard_status>>>();
  holder->f = kj::mv(paf.fulfiller);
  status_request req;
  // Fulfilled even if the request is dropped (the supervisor stopping): a destroyed cross-thread
  // fulfiller would fail the call with an obscure message.
  struct once {
    std::shared_ptr<xthread<std::vector<shard_status>>> h;
    bool done = false;
    ~once() {
      if (!done) h->f->fulfill(std::vector<shard_status>{});
    }
  };
  auto o = std::make_shared<once>();
  o->h = holder;
  req.done = [o](std::vector<shard_status> v) {
    if (o->done) return;
    o->done = true;
    o->h->f->fulfill(std::move(v));
  };
  caf::anon_send(sup_, status_atom::value, std::move(req));
  return paf.promise.then([this, st](std::vector<shard_status> shards) mutable {
    std::sort(shards.begin(), shards.end(),
              [](auto& a, auto& b) { return a.id.name() < b.id.name(); });
    auto& streams = ctx_->defs->streams();
    auto sl = st.initStreams(static_cast<unsigned>(streams.size()));
    for (size_t i = 0; i < streams.size(); ++i) sl.set(static_cast<unsigned>(i), streams[i].name);
    auto& views = ctx_->defs->views();
    auto vl = st.initViews(static_cast<unsigned>(views.size()));
    for (size_t i = 0; i < views.size(); ++i)
      vl.set(static_cast<unsigned>(i), views[i].qualified());
    auto shl = st.initShards(static_cast<unsigned>(shards.size()));
    uint64_t dead = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
      auto& s = shards[i];
      auto b = shl[static_cast<unsigned>(i)];
      b.setStream(s.id.stream);
      b.setKind(s.id.kind);
      b.setShard(s.id.shard);
      b.setAppliedSeq(s.meta.applied_seq);
      b.setWatermark(s.meta.watermark);
      b.setLag(s.lag);
      b.setEntitiesActive(s.active);
      b.setEntitiesPassivated(s.passivated);
      b.setDeadLetters(s.meta.dead_letters);
      b.setRestarts(s.restarts);
      b.setFailed(s.failed);
      b.setEventsApplied(s.meta.events_applied);
      dead += s.meta.dead_letters;
    }
    st.setEventsApplied(ctx_->metrics->events_applied.load());
    st.setDeadLetters(dead);
    st.setRejectedAtGateway(ctx_->metrics->rejected_at_gateway.load());
    st.setEntityRestarts(ctx_->metrics->entity_restarts.load());
    st.setEventsOfflineOnly(ctx_->metrics->events_offline_only.load());
    st.setSettledWaits(ctx_->metrics->settled_waits.load());
    st.setSettleTimeouts(ctx_->metrics->settle_timeouts.load());
    if (auto* clocks = ctx_->clocks) {
      auto cl = st.initClocks(static_cast<unsigned>(streams.size()));
      for (size_t i = 0; i < streams.size(); ++i) {
        auto c = cl[static_cast<unsigned>(i)];
        const std::string& n = streams[i].name;
        c.setStream(n);
        c.setMode(clock_mode_name(streams[i].clock));
        c.setReadTime(clocks->read_time(n));
        c.setWatermark(clocks->watermark(n));
        c.setMaxFuture(streams[i].max_future_us);
        c.setMaxJump(streams[i].max_jump_us);
        c.setLate(clocks->late(n));
        c.setRefused(clocks->refused(n));
      }
    }
    const auto& sg = ctx_->metrics->stages;
    const std::pair<const char*, const latency_histogram*> stages[] = {{"delivery", &sg.delivery},
                                                                       {"queued", &sg.queued},
                                                                       {"applying", &sg.applying},
                                                                       {"total", &sg.total}};
    auto ls = st.initApplyStages(4);
    for (unsigned i = 0; i < 4; ++i) {
      ls[i].setStage(stages[i].first);
      ls[i].setCount(stages[i].second->count());
      ls[i].setP50Micros(stages[i].second->quantile_us(0.5));
      ls[i].setP99Micros(stages[i].second->quantile_us(0.99));
      ls[i].setP999Micros(stages[i].second->quantile_us(0.999));
    }
  });
}

std::string features_rpc::known_streams() const {
  std::string s;
  for (auto& x : ctx_->defs->streams()) s += (s.empty() ? "" : ", ") + x.name;
  return " (known: " + s + ")";
}

std::string features_rpc::known_views() const {
  std::string s;
  for (auto& x : ctx_->defs->views()) s += (s.empty() ? "" : ", ") + x.qualified();
  return " (known: " + s + ")";
}

// The family's capability and the root Gateway's methods @0 and @1 share one implementation:
// their parameters and results have the same fields.
template kj::Promise<void> features_rpc::ingest_call(wire::Features::Server::IngestContext);
template kj::Promise<void> features_rpc::ingest_call(wire::Gateway::Server::IngestContext);
template kj::Promise<void> features_rpc::get_features_call(
    wire::Features::Server::GetFeaturesContext);
template kj::Promise<void> features_rpc::get_features_call(
    wire::Gateway::Server::GetFeaturesContext);

kj::Promise<void> features_rpc::validationReport(ValidationReportContext call) {
  std::string name = call.getParams().getStream();
  const stream_def* s = ctx_->defs->find_stream(name);
  if (!s) throw_rpc_error("unknown stream '" + name + "'" + known_streams(), errc::not_found);
  nlohmann::json report =
      ctx_->validation ? ctx_->validation->report(*s) : nlohmann::json{{"stream", name}};
  report["node"] = ctx_->node_id;
  call.getResults().setJson(report.dump());
  return kj::READY_NOW;
}

}  // namespace tessera
