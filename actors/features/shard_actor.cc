#include "shard_actor.h"

#include <capnp/serialize.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "codec.h"
#include "entity_actor.h"
#include "hash.h"
#include "time_util.h"
#include "vector_cache.h"

namespace tessera {
namespace {

using clock_type = std::chrono::steady_clock;
int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
constexpr auto kRequestTimeout = std::chrono::seconds(30);
// Short pulls: the shard's credit estimate is approximate (data messages do not say which pull
// they answer), so a wrong estimate must heal quickly; idle cost is ~2 requests/s per shard.
constexpr int64_t kPullExpiresMs = 1000;
// At most this many JetStream messages per applied batch: keeps commits (and the distance
// between what entities hold and what is committed) small while a backlog drains.
constexpr size_t kMaxMessagesPerBatch = 64;
// Silence after which the shard checks that its consumer really has nothing for it.
constexpr auto kWatchdogSilence = std::chrono::seconds(10);

// One entity's share of an applied batch.
struct group {
  std::string key;
  std::shared_ptr<std::vector<record>> recs = std::make_shared<std::vector<record>>();
  std::vector<log_entry> log;  // the same events with every stream field, for the offline log
  bool is_new = false;
  entity_delta delta;
  bool done = false;
  bool dead_lettered = false;
};

// The batch being applied: decoded, routed to entities, waiting for their deltas.
struct apply_job {
  std::vector<group> groups;
  std::unordered_map<std::string, size_t> index;
  size_t outstanding = 0;
  uint64_t max_seq = 0;
  int64_t watermark = 0;  // the shard's: latest event time applied
  // What the entities of this batch prune at (now for a live stream, else the shard's own
  // watermark: reads on other nodes may lag this node's view of the stream) and the stream's
  // clock they materialise their vectors at (now, or the stream's watermark).
  int64_t prune_at = 0;
  int64_t clock = 0;
  uint64_t events = 0;
  uint64_t refused = 0;  // outliers (max_jump) dead-lettered
  uint64_t late = 0;  // events of the stream kept for training sets only (see counts_stream_late)
  std::string ack_subject;
  std::vector<std::string> dead_letters;                        // JSON records for tsr.dlq.<stream>
  std::vector<std::pair<std::string, log_entry>> offline_only;  // too old for online windows
  size_t messages = 0;
  // The first message's timestamps (ns since the epoch), for node_metrics::stages.
  int64_t stored_ns = 0, received_ns = 0, started_ns = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

std::string dlq_json(const shard_id& id, uint64_t seq, int64_t index, const std::string& reason,
                     const nlohmann::json& event) {
  nlohmann::json j{{"stream", id.stream},
                   {"kind", id.kind},
                   {"shard", id.shard},
                   {"seq", seq},
                   {"index", index},
                   {"reason", reason},
                   {"time", format_timestamp(now_micros())}};
  if (!event.is_null()) j["event"] = event;
  return j.dump();
}

nlohmann::json record_json(const kind_plan& p, const std::string& key, const record& r) {
  nlohmann::json f = nlohmann::json::object();
  for (size_t i = 0; i < r.fields.size() && i < p.stored_field_names.size(); ++i)
    f[p.stored_field_names[i]] = to_text(r.fields[i]);
  return {{"key", key}, {"event_time", format_timestamp(r.time)}, {"fields", f}};
}

}  // namespace

caf::behavior shard_actor(caf::stateful_actor<shard_state>* self, context_ptr ctx, shard_id id) {
  auto& st = self->state;
  st.ctx = ctx;
  st.id = id;
  st.plan = ctx->defs->find_plan(id.stream, id.kind);
  st.stream = ctx->defs->find_stream(id.stream);
  {
    auto plans = ctx->defs->plans_for_stream(id.stream);
    st.counts_stream_late = !plans.empty() && plans.front() == st.plan;
    for (auto* p : plans) st.stream_retention = std::max(st.stream_retention, p->retention_us);
  }
  auto job = std::make_shared<std::unique_ptr<apply_job>>();

  auto warn_limited = [self](const std::string& what, const std::string& detail) {
    uint64_t suppressed = 0;
    if (self->state.ctx->limiter->allow(self->state.id.stream + ":" + what, suppressed))
      spdlog::warn("shard {}: {}: {}{}", self->state.id.name(), what, detail,
                   suppressed ? fmt::format(" ({} similar suppressed)", suppressed) : "");
  };

  // Entities die with their shard (linked); the shard hears of entity exits here.
  self->set_exit_handler([self](caf::exit_msg& m) {
    auto& s = self->state;
    auto it = s.by_addr.find(m.source);
    if (it != s.by_addr.end()) {
      auto a = s.active.find(it->second);
      if (a != s.active.end() && a->second.address() == m.source) s.active.erase(a);
      s.by_addr.erase(it);
      return;
    }
    if (m.reason != caf::exit_reason::normal) self->quit(m.reason);
  });

  auto activate = [self, warn_limited](const std::string& key) -> caf::actor {
    auto& s = self->state;
    auto it = s.active.find(key);
    if (it != s.active.end()) return it->second;
    std::deque<record> recs;
    if (s.known.count(key)) {
      auto loaded = s.ctx->db->load_records(s.id, key);
      if (loaded)
        recs = std::move(loaded.value());
      else
        warn_limited("corrupt entity state", loaded.error_message());
    }
    auto a = self->spawn<caf::linked>(entity_actor, key, s.plan, std::move(recs),
                                      caf::actor_cast<caf::actor>(self), s.ctx->opts.entity_idle,
                                      s.ctx->opts.materialize_every, s.ctx->cache, s.id.shard);
    s.active.emplace(key, a);
    s.by_addr.emplace(a.address(), key);
    return a;
  };

  auto maybe_pull = [self]() {
    auto& s = self->state;
    if (!s.ready) return;
    const int batch = s.ctx->opts.pull_batch;
    int credit = 0;
    auto now = clock_type::now();
    for (auto it = s.pulls.begin(); it != s.pulls.end();) {
      // A pull the server never answered (e.g. lost in a reconnect) is forgotten after expiry.
      if (now - it->second.issued > std::chrono::milliseconds(kPullExpiresMs + 500))
        it = s.pulls.erase(it);
      else
        credit += (it++)->second.remaining;
    }
    if (s.pulls.size() >= 2 || credit >= batch / 2 ||
        s.pending.size() >= static_cast<size_t>(4 * batch))
      return;
    uint64_t no =
        s.ctx->nats->pull(s.id.stream, s.id.kind, s.id.shard, *s.inbox, batch, kPullExpiresMs);
    if (no) s.pulls[no] = {batch, now};
  };

  auto schedule_flush = [self]() {
    if (!self->state.flush_scheduled) {
      self->state.flush_scheduled = true;
      self->send(self, flush_atom::value);
    }
  };

  // Writes everything the batch changed, with the new sequence, in one WriteBatch.
  auto commit = [self, job, maybe_pull, schedule_flush, warn_limited]() {
    auto& s = self->state;
    apply_job& j = **job;
    store::batch b(s.id);
    uint64_t applied = 0;
    for (auto& g : j.groups) {
      if (g.dead_lettered) continue;
      for (auto& r : *g.recs) b.put_record(g.key, r);
      for (auto& p : g.delta.pruned) b.delete_record(g.key, p.time, p.seq, p.idx);
      for (auto& [view, bytes] : g.delta.vectors) b.put_vector(view, g.key, bytes);
      if (g.is_new && !s.known.count(g.key)) b.put_known(g.key);
      applied += g.recs->size();
    }
    for (auto& [key, e] : j.offline_only) b.put_log(key, e);
    applied += j.offline_only.size();
    shard_meta m = s.meta;
    m.applied_seq = std::max(m.applied_seq, j.max_seq);
    m.watermark = std::max(m.watermark, j.watermark);
    m.dead_letters += j.dead_letters.size();
    m.events_applied += applied;
    // The offline log, pruned per entity once its cutoff moved by 1/64 of the retention.
    const int64_t log_retention = s.stream->offline_retention_us;
    const int64_t log_cutoff = j.prune_at - log_retention;
    for (auto& g : j.groups) {
      if (g.dead_lettered) continue;
      for (auto& e : g.log) b.put_log(g.key, e);
      auto [it, fresh] = s.log_pruned.emplace(g.key, INT64_MIN);
      if (log_cutoff > 0 && (fresh || log_cutoff - it->second > log_retention / 64)) {
        b.prune_log(g.key, log_cutoff);
        it->second = log_cutoff;
      }
    }
    b.put_meta(m);
    // Dead letters go out before the commit: after a crash they may repeat, never vanish.
    for (auto& d : j.dead_letters) s.ctx->nats->publish_dead_letter(s.id.stream, d);
    auto write_start = clock_type::now();
    auto w = s.ctx->db->write(b);
    auto write_ms =
        std::chrono::duration<double, std::milli>(clock_type::now() - write_start).count();
    auto total_ms =
        std::chrono::duration<double, std::milli>(clock_type::now() - j.started).count();
    if (total_ms > 100)
      warn_limited(
          "slow batch",
          fmt::format(
              "{:.0f} ms for {} events of {} entities in {} messages (RocksDB write {:.0f} ms)",
              total_ms, j.events, j.groups.size(), j.messages, write_ms));
    if (!w) {
      spdlog::error("shard {}: {}; restarting the shard", s.id.name(), w.error_message());
      self->quit(caf::make_error(caf::sec::runtime_error, w.error_message()));
      return;
    }
    s.meta = m;
    s.inflight_watermark = 0;
    if (auto* clocks = s.ctx->clocks) {
      clocks->advance_local(s.id.stream, m.watermark);
      if (j.late) clocks->count_late(s.id.stream, j.late);
      if (j.refused) clocks->count_refused(s.id.stream, j.refused);
    }
    for (auto& g : j.groups)
      if (!g.dead_lettered) s.known.insert(g.key);
    s.ctx->metrics->events_applied += applied;
    s.ctx->metrics->events_offline_only += j.offline_only.size();
    if (j.stored_ns > 0 && j.received_ns > 0) {
      auto& st = s.ctx->metrics->stages;
      const int64_t committed_ns = wall_ns();
      st.delivery.record_us(std::max<int64_t>(0, j.received_ns - j.stored_ns) / 1e3);
      st.queued.record_us(std::max<int64_t>(0, j.started_ns - j.received_ns) / 1e3);
      st.applying.record_us(std::max<int64_t>(0, committed_ns - j.started_ns) / 1e3);
      st.total.record_us(std::max<int64_t>(0, committed_ns - j.stored_ns) / 1e3);
    }
    s.ctx->metrics->dead_letters += j.dead_letters.size();
    for (auto& g : j.groups) {
      auto it = s.inflight.find(g.key);
      if (it != s.inflight.end() && --it->second <= 0) s.inflight.erase(it);
    }
    job->reset();
    s.applying = false;
    if (!s.pending.empty()) schedule_flush();
    maybe_pull();
  };

  auto finish_group = [job, commit](group& g) {
    g.done = true;
    if (--(*job)->outstanding == 0) commit();
  };

  // Sends one entity its records; on a crash restarts it from persisted state (one-for-one)
  // until the restart intensity is exceeded, then dead-letters its events.
  std::shared_ptr<std::function<void(size_t)>> send_group =
      std::make_shared<std::function<void(size_t)>>();
  *send_group = [self, job, activate, finish_group, send_group, warn_limited](size_t gi) {
    auto& s = self->state;
    group& g = (*job)->groups[gi];
    caf::actor a = activate(g.key);
    self->request(a, kRequestTimeout, apply_atom::value, record_batch(g.recs), (*job)->prune_at,
                  (*job)->clock)
        .then(
            [self, job, gi, finish_group](entity_delta& d) {
              group& g = (*job)->groups[gi];
              g.delta = std::move(d);
              finish_group(g);
            },
            [self, job, gi, a, finish_group, send_group, warn_limited](caf::error& err) {
              auto& s = self->state;
              group& g = (*job)->groups[gi];
              s.ctx->metrics->entity_restarts++;
              // Forget the failed incarnation (its exit message, if still to come, is
              // recognised through by_addr) and make sure it is gone (e.g. on a timeout).
              auto it = s.active.find(g.key);
              if (it != s.active.end() && it->second == a) s.active.erase(it);
              self->send_exit(a, caf::exit_reason::kill);
              auto& f = s.failures[g.key];
              auto now = clock_type::now();
              f.push_back(now);
              while (!f.empty() && now - f.front() > s.ctx->opts.restart_window) f.pop_front();
              std::string why = self->system().render(err);
              if (static_cast<int>(f.size()) > s.ctx->opts.entity_max_restarts) {
                warn_limited("entity crash-looping",
                             "entity " + g.key + " failed " + std::to_string(f.size()) +
                                 " times; its events go to the dead-letter stream: " + why);
                for (auto& r : *g.recs)
                  (*job)->dead_letters.push_back(dlq_json(s.id, r.seq, r.idx,
                                                          "entity actor failed repeatedly: " + why,
                                                          record_json(*s.plan, g.key, r)));
                g.dead_lettered = true;
                finish_group(g);
              } else {
                warn_limited("entity restarted",
                             "entity " + g.key + " restarted from persisted state after: " + why);
                (*send_group)(gi);
              }
            });
  };

  // Decodes the pending deliveries, routes events to entities, dead-letters what is invalid.
  auto start_apply = [self, job, send_group, commit, warn_limited]() {
    auto& s = self->state;
    if (s.applying || s.pending.empty() || !s.ready) return;
    std::sort(s.pending.begin(), s.pending.end(), [](auto& a, auto& b) { return a.seq < b.seq; });
    std::vector<delivery> batch;
    if (s.pending.size() <= kMaxMessagesPerBatch) {
      batch.swap(s.pending);
    } else {
      batch.assign(std::make_move_iterator(s.pending.begin()),
                   std::make_move_iterator(s.pending.begin() + kMaxMessagesPerBatch));
      s.pending.erase(s.pending.begin(), s.pending.begin() + kMaxMessagesPerBatch);
    }
    *job = std::make_unique<apply_job>();
    apply_job& j = **job;
    j.watermark = s.meta.watermark;
    const int64_t retention = s.plan->retention_us;
    // The stream's clock (see runtime/stream_clock.h). Late events are judged by the clock the
    // gateway saw when it accepted them (EventBatch.clock) or, for a live stream, now; events
    // published straight to JetStream by the shard's own watermark. Either way the verdict does
    // not depend on how far other shards have got when this one applies.
    const bool live = s.stream->clock == clock_mode::live;
    stream_clocks* clocks = s.ctx->clocks;
    const int64_t now = now_micros();
    const int64_t stream_wm = clocks ? clocks->watermark(s.id.stream) : 0;
    // A live stream's reference is never behind the wall clock (see the gateway's ingest).
    const int64_t jump_ref =
        std::max(clocks ? clocks->jump_reference(s.id.stream) : 0, live ? now : int64_t{0});
    for (auto& d : batch) {
      if (d.seq <= s.meta.applied_seq || d.seq <= j.max_seq)
        continue;  // already applied: exactly once
      j.max_seq = d.seq;
      if (!j.messages) {
        j.stored_ns = d.stored_ns;
        j.received_ns = d.received_ns;
        j.started_ns = wall_ns();
      }
      ++j.messages;
      j.ack_subject = d.ack_subject;
      auto dead = [&](int64_t idx, const std::string& reason, nlohmann::json ev = nullptr) {
        j.dead_letters.push_back(dlq_json(s.id, d.seq, idx, reason, ev));
        warn_limited("dead letter", reason);
      };
      if (d.data.size() % sizeof(capnp::word) != 0 || d.data.empty()) {
        dead(-1, "malformed EventBatch: " + std::to_string(d.data.size()) +
                     " bytes is not a Cap'n Proto message");
        continue;
      }
      auto words = kj::heapArray<capnp::word>(d.data.size() / sizeof(capnp::word));
      std::memcpy(words.begin(), d.data.data(), d.data.size());
      try {
        capnp::FlatArrayMessageReader reader(words);
        auto root = reader.getRoot<wire::EventBatch>();
        auto events = root.getEvents();
        const int64_t gateway_clock = root.getClock();  // 0: not through a gateway
        // Known time: the producer's, else when JetStream stored the message, else the batch's.
        const int64_t stored_us = d.stored_ns > 0 ? d.stored_ns / 1000 : root.getIngestTime();
        // The offline-log entry of an event (takes its fields: call it last).
        auto to_log = [&](normalized_event& ne, int64_t known, uint32_t idx) {
          log_entry le;
          le.r.time = ne.time, le.r.seq = d.seq, le.r.idx = idx;
          le.r.fields = std::move(ne.fields);
          le.known = known > 0 ? known : (stored_us > 0 ? stored_us : ne.time);
          return le;
        };
        for (uint32_t i = 0; i < events.size(); ++i) {
          auto e = events[i];
          normalized_event ne;
          event_error err;
          if (!normalize_event(e, *s.stream, ne, err)) {
            dead(i, (err.field.empty() ? "" : "field " + err.field + ": ") + err.reason);
            j.refused += err.outlier;
            continue;
          }
          std::string key = entity_key(ne, *s.plan, err);
          if (key.empty()) {
            dead(i, "field " + err.field + ": " + err.reason);
            continue;
          }
          if (e.hasKey() && e.getKey().size() && std::string(e.getKey().cStr()) != key) {
            dead(i, "key '" + std::string(e.getKey().cStr()) +
                        "' does not match its key fields ('" + key + "')");
            continue;
          }
          if (shard_of(key, s.ctx->opts.shard_count) != s.id.shard) {
            dead(i, "entity '" + key + "' belongs to shard " +
                        std::to_string(shard_of(key, s.ctx->opts.shard_count)) + ", not " +
                        std::to_string(s.id.shard) + " (see schemas/SUBJECTS.md)");
            continue;
          }
          if (gateway_clock == 0) {
            // Published straight to JetStream: nobody judged its time yet. Far ahead of the
            // stream, it would age out every other entity's windows: refused.
            std::string why = jump_refusal(*s.stream, ne.time, std::max(j.watermark, jump_ref));
            if (!why.empty()) {
              dead(i, "field " + s.stream->time_field + ": " + why);
              ++j.refused;
              continue;
            }
          }
          const int64_t clock = live ? now : std::max(gateway_clock, j.watermark);
          if (s.counts_stream_late && clock > 0 && ne.time <= clock - s.stream_retention &&
              ne.time > clock - s.stream->offline_retention_us)
            ++j.late;
          if (clock > 0 && ne.time <= clock - retention &&
              ne.time > clock - s.stream->offline_retention_us) {
            // Late: no online window or as-of read reaches it, but it is history a training set
            // may use (at its known time).
            j.offline_only.emplace_back(key, to_log(ne, e.getKnownTime(), i));
            continue;
          }
          if (clock > 0 && ne.time <= clock - retention) {
            dead(i, "event time " + format_timestamp(ne.time) +
                        " is older than the offline retention (" +
                        format_duration(s.stream->offline_retention_us) +
                        ") before the stream's clock (" + format_timestamp(clock) + ")");
            continue;
          }
          record r;
          r.time = ne.time;
          r.seq = d.seq;
          r.idx = i;
          r.fields.reserve(s.plan->stored_field_index.size());
          for (int fi : s.plan->stored_field_index) r.fields.push_back(ne.fields[fi]);
          j.watermark = std::max(j.watermark, ne.time);
          auto [it, inserted] = j.index.emplace(key, j.groups.size());
          if (inserted) {
            j.groups.emplace_back();
            j.groups.back().key = key;
            j.groups.back().is_new = !s.known.count(key);
          }
          group& grp = j.groups[it->second];
          grp.log.push_back(to_log(ne, e.getKnownTime(), i));
          grp.recs->push_back(std::move(r));
          ++j.events;
        }
      } catch (const kj::Exception& ex) {
        dead(-1, std::string("malformed EventBatch: ") + ex.getDescription().cStr());
      }
    }
    if (j.max_seq == 0) {  // nothing new
      job->reset();
      return;
    }
    j.prune_at = live ? now : j.watermark;
    j.clock = live ? now : std::max(j.watermark, stream_wm);
    s.applying = true;
    s.inflight_watermark = j.watermark;
    s.pruned_to = std::max(s.pruned_to, j.prune_at);
    // Reads on this node take the clock from here on: none can ask for a time before what
    // this batch's entities are about to prune (see the read_atom handler).
    if (clocks && !live) clocks->advance_local(s.id.stream, j.watermark);
    j.outstanding = j.groups.size();
    if (j.groups.empty()) {  // (possibly only offline-only events)
      commit();
      return;
    }
    for (size_t gi = 0; gi < j.groups.size(); ++gi) {
      s.inflight[j.groups[gi].key]++;
      (*send_group)(gi);
    }
  };

  // Loads the shard's state, then has its consumer (re)created at applied + 1 off the actor
  // threads (a JetStream API call, slow on a replicated cluster); init_atom with the outcome
  // comes back here.
  auto init = [self]() {
    auto& s = self->state;
    if (s.applying) {  // a batch is still being applied: re-open once it is committed
      self->delayed_send(self, std::chrono::milliseconds(50), init_atom::value);
      return;
    }
    // A fresh inbox for the (re-)created consumer: see shard_state::inbox_gen.
    s.inbox.reset();
    s.pulls.clear();
    s.pending.clear();
    // New definitions may store other fields for this kind: rebuild its records from the log.
    if (auto rebuilt = s.ctx->db->ensure_layout(s.id, *s.plan); !rebuilt)
      spdlog::error("shard {}: {}", s.id.name(), rebuilt.error_message());
    else if (*rebuilt)
      spdlog::info(
          "shard {}: the definitions changed what it stores; rebuilt {} entity records from the "
          "offline log",
          s.id.name(), **rebuilt);
    s.meta = s.ctx->db->load_meta(s.id);
    // Vectors cached by an earlier incarnation may include applied-but-uncommitted events.
    if (s.ctx->cache) s.ctx->cache->clear_shard(s.id.shard);
    if (s.ctx->clocks) s.ctx->clocks->advance_local(s.id.stream, s.meta.watermark);
    // Entities persisted by an earlier incarnation were pruned at most at its watermark (replay)
    // or at a wall-clock time before now (live, judged at the next apply).
    s.pruned_to = s.stream->clock == clock_mode::replay ? s.meta.watermark : 0;
    s.known.clear();
    for (auto& k : s.ctx->db->known_entities(s.id)) s.known.insert(k);
    caf::actor me = caf::actor_cast<caf::actor>(self);
    s.ctx->nats->open_consumer_async(
        s.id.stream, s.id.kind, s.id.shard, s.meta.applied_seq + 1, [me](result<uint64_t> r) {
          caf::anon_send(me, init_atom::value, r ? std::string() : r.error_message(),
                         r ? *r : uint64_t{0});
        });
  };
  auto consumer_ready = [self, maybe_pull, warn_limited](const std::string& error,
                                                         uint64_t next_cseq) {
    auto& s = self->state;
    s.next_cseq = next_cseq;
    if (!error.empty()) {
      warn_limited("consumer not ready", error + "; retrying");
      self->delayed_send(self, std::chrono::milliseconds(200), init_atom::value);
      return;
    }
    caf::actor me = caf::actor_cast<caf::actor>(self);
    if (!s.inbox) {
      uint64_t gen = ++s.inbox_gen;
      auto in = s.ctx->nats->open_inbox([me, gen](delivery&& d) {
        d.inbox_gen = gen;
        caf::anon_send(me, std::move(d));
      });
      if (!in) {
        spdlog::warn("shard {}: {}; retrying", s.id.name(), in.error_message());
        self->delayed_send(self, std::chrono::seconds(1), init_atom::value);
        return;
      }
      s.inbox = std::move(in.value());
    }
    s.ready = true;
    maybe_pull();
  };
  init();
  self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);

  return {
      [=](init_atom) {  // retry after a failure
        if (!self->state.ready) init();
      },
      [=](init_atom, const std::string& error, uint64_t next_cseq) {
        if (!self->state.ready) consumer_ready(error, next_cseq);
      },
      [=](delivery& d) {
        auto& s = self->state;
        if (d.inbox_gen != s.inbox_gen || !s.inbox) return;  // from a replaced consumer
        if (d.end) {
          auto p = s.pulls.find(d.pull_no);
          if (p == s.pulls.end()) return;
          s.pulls.erase(p);
          // 503: nobody serves the consumer (its NATS server died); 404: it is gone. Re-create
          // it from the committed sequence; what was pending will be delivered again (and what
          // is already applied is skipped by sequence).
          if ((d.status == "503" || d.status == "404") && s.ready) {
            warn_limited("consumer lost", "status " + d.status + "; re-creating it from sequence " +
                                              std::to_string(s.meta.applied_seq + 1));
            s.ready = false;  // init() drops the old inbox, pulls and pending deliveries
            self->delayed_send(self, std::chrono::milliseconds(200), init_atom::value);
            return;
          }
          if (d.status == "409")
            self->delayed_send(self, std::chrono::milliseconds(50), tick_atom::value);
          else
            maybe_pull();
          return;
        }
        if (s.next_cseq && d.cseq && d.cseq != s.next_cseq) {
          // Deliveries were lost on the way (see shard_state::next_cseq): apply nothing after
          // the gap; what is pending is delivered again by the re-created consumer.
          warn_limited("deliveries lost", "consumer sequence " + std::to_string(d.cseq) +
                                              " arrived, " + std::to_string(s.next_cseq) +
                                              " expected; re-creating the consumer from sequence " +
                                              std::to_string(s.meta.applied_seq + 1));
          s.inbox.reset();  // later deliveries of this consumer are dropped
          s.ready = false;  // init() drops the pulls and pending deliveries
          self->send(self, init_atom::value);
          return;
        }
        if (d.cseq) s.next_cseq = d.cseq + 1;
        // Data carries no pull number: it counts against the oldest outstanding pull.
        if (!s.pulls.empty()) {
          auto oldest = std::min_element(s.pulls.begin(), s.pulls.end(),
                                         [](auto& a, auto& b) { return a.first < b.first; });
          if (--oldest->second.remaining <= 0) s.pulls.erase(oldest);
        }
        s.last_pending = d.pending;
        s.last_delivery = clock_type::now();
        s.pending.push_back(std::move(d));
        schedule_flush();
        maybe_pull();
      },
      [=](flush_atom) {
        self->state.flush_scheduled = false;
        start_apply();
      },
      [=](tick_atom) {
        maybe_pull();
        auto& s = self->state;
        if (s.ready && !s.applying && s.pending.empty() && !s.watchdog_asking &&
            clock_type::now() - s.last_delivery > kWatchdogSilence) {
          s.watchdog_asking = true;
          caf::actor me = caf::actor_cast<caf::actor>(self);
          s.ctx->nats->consumer_pending_async(
              s.id.stream, s.id.kind, s.id.shard, [me](result<bus::consumer_position> r) {
                caf::anon_send(me, watchdog_atom::value,
                               r ? static_cast<int64_t>(r->pending) : int64_t(-1),
                               r ? static_cast<int64_t>(r->last) : int64_t(-1),
                               r ? std::string() : r.error_message());
              });
        }
        self->delayed_send(self, std::chrono::milliseconds(500), tick_atom::value);
      },
      [=](watchdog_atom, int64_t pending, int64_t last, const std::string& error) {
        auto& s = self->state;
        s.watchdog_asking = false;
        s.last_delivery = clock_type::now();  // next look in kWatchdogSilence
        if (!s.ready) return;
        // The stream holds a newer message for this shard than the last applied, yet the consumer
        // has nothing pending and nothing arrives: it delivered them to an inbox that was dropped
        // (e.g. a consumer re-created while the NATS cluster failed over, whose creation answered
        // too late). Without acks they are never sent again: re-create it from the committed
        // sequence.
        const bool lost = error.empty() && pending == 0 && last > 0 &&
                          static_cast<uint64_t>(last) > s.meta.applied_seq && !s.applying &&
                          s.pending.empty();
        if (!lost && pending == 0 && error.empty()) return;
        warn_limited(
            "consumer stalled",
            !error.empty() ? "consumer unreachable (" + error + "); re-creating it"
            : lost ? "the stream holds sequence " + std::to_string(last) + " for this shard but " +
                         std::to_string(s.meta.applied_seq) +
                         " is the last applied and the consumer has nothing pending; re-creating it"
                   : std::to_string(pending) + " messages wait but none arrived for " +
                         std::to_string(kWatchdogSilence.count()) + " s; re-creating the consumer");
        s.ready = false;  // init() drops the old inbox, pulls and pending deliveries
        self->send(self, init_atom::value);
      },
      [=](passivate_atom, const std::string& key) {
        auto& s = self->state;
        if (s.inflight.count(key)) return;  // busy: it will time out again later
        auto it = s.active.find(key);
        if (it == s.active.end()) return;
        spdlog::debug("shard {}: passivating {}", s.id.name(), key);
        s.by_addr.erase(it->second.address());
        self->send(it->second, stop_atom::value);
        s.active.erase(it);
      },
      [=](read_atom, shard_read& req) {
        auto& s = self->state;
        if (req.view >= s.plan->views.size()) {
          req.done(make_error("view index out of range", errc::invalid));
          return;
        }
        const view_def* v = s.plan->views[req.view];
        const int64_t wm = std::max(s.meta.watermark, s.inflight_watermark);
        // Callers resolve the stream's clock once for a whole read (feature_reader); a bare
        // read takes it here.
        int64_t t =
            req.as_of ? req.as_of : (s.ctx->clocks ? s.ctx->clocks->read_time(s.id.stream) : 0);
        if (t == 0) t = wm;
        const int64_t pruned = s.pruned_to;
        if (req.as_of && pruned && req.as_of <= pruned - v->as_of_horizon_us && req.at_clock) {
          // The caller's clock lags this shard (another node's heartbeat, or a batch that
          // started applying after the caller read the clock): this shard may have pruned what a
          // read that far back needs. A fresh look at the clock will do.
          req.done(make_error("the stream's clock moved on while reading shard " + s.id.name() +
                                  " (it applies events up to " + format_timestamp(pruned) +
                                  "); retry",
                              errc::retryable));
          return;
        }
        if (req.as_of && pruned && req.as_of <= pruned - v->as_of_horizon_us) {
          req.done(make_error("as-of " + format_timestamp(req.as_of) +
                                  " is before the retained window of view " + v->qualified() +
                                  " (earliest " +
                                  format_timestamp(pruned - v->as_of_horizon_us + 1) + ")",
                              errc::invalid));
          return;
        }
        struct gather {
          shard_read req;
          std::vector<feature_vector> out;
          size_t left = 0;
          bool failed = false;
        };
        auto g = std::make_shared<gather>();
        g->out.resize(req.keys.size());
        for (size_t i = 0; i < req.keys.size(); ++i) {
          const std::string& key = req.keys[i];
          if (!s.known.count(key) && !s.active.count(key)) {
            spdlog::debug("shard {}: read of {} which it has never applied", s.id.name(), key);
            g->out[i] = compute_vector(*v, std::deque<record>{}, t, key);
            continue;
          }
          ++g->left;
          s.inflight[key]++;
          self->request(activate(key), kRequestTimeout, read_atom::value, req.view, t)
              .then(
                  [self, g, i, key](feature_vector& fv) {
                    auto& in = self->state.inflight;
                    if (--in[key] <= 0) in.erase(key);
                    g->out[i] = std::move(fv);
                    if (--g->left == 0 && !g->failed) g->req.done(std::move(g->out));
                  },
                  [self, g, key](caf::error& err) {
                    auto& in = self->state.inflight;
                    if (--in[key] <= 0) in.erase(key);
                    if (!g->failed) {
                      g->failed = true;
                      g->req.done(make_error("reading entity " + key + " failed: " +
                                                 self->system().render(err) + "; retry",
                                             errc::retryable));
                    }
                  });
        }
        g->req = std::move(req);
        if (g->left == 0) g->req.done(std::move(g->out));
      },
      [=](status_atom) -> shard_status {
        auto& s = self->state;
        shard_status out;
        out.id = s.id;
        out.meta = s.meta;
        out.lag = s.last_pending + s.pending.size();
        out.active = static_cast<uint32_t>(s.active.size());
        size_t passive = 0;
        for (auto& k : s.known)
          if (!s.active.count(k)) ++passive;
        out.passivated = static_cast<uint32_t>(passive);
        return out;
      },
      [=](crash_atom, const std::string& key) {
        // Test hook: the entity's next apply throws, exercising one-for-one restart. Answers
        // once the entity has taken it (so the caller's next events surely meet it).
        return self->delegate(activate(key), crash_atom::value);
      },
      [=](stop_atom) { self->quit(); },
  };
}

}  // namespace tessera
