#include "shard_apply.h"

#include <capnp/serialize.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "codec.h"
#include "hash.h"
#include "shard_consumer.h"
#include "shard_reads.h"
#include "time_util.h"

namespace tessera {

// Here, where apply_job is complete.
shard_state::shard_state() = default;
shard_state::~shard_state() = default;

namespace {

using clock_type = std::chrono::steady_clock;
int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
// At most this many JetStream messages per applied batch: keeps commits (and the distance
// between what entities hold and what is committed) small while a backlog drains.
constexpr size_t kMaxMessagesPerBatch = 64;

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

// Applies one entity its records; when that fails, drops the entity and applies them again to
// its persisted state (one-for-one) until the restart intensity is exceeded, then
// dead-letters its events.
void apply_group(shard_self self, group& g) {
  auto& s = self->state;
  const apply_job& j = *s.job;
  for (;;) {
    try {
      auto& e = activate_entity(self, g.key);
      g.delta =
          s.entities->apply(g.key, e, g.recs, j.prune_at, j.clock, s.ctx->opts.materialize_every);
      return;
    } catch (const std::exception& ex) {
      s.ctx->metrics->entity_restarts++;
      s.entities->deactivate(g.key);  // half-changed: its persisted state is loaded next time
      auto& f = s.failures[g.key];
      auto now = clock_type::now();
      f.push_back(now);
      while (!f.empty() && now - f.front() > s.ctx->opts.restart_window) f.pop_front();
      const std::string why = ex.what();
      if (static_cast<int>(f.size()) > s.ctx->opts.entity_max_restarts) {
        shard_warn_limited(self, "entity crash-looping",
                           "entity " + g.key + " failed " + std::to_string(f.size()) +
                               " times; its events go to the dead-letter stream: " + why);
        for (auto& r : g.recs)
          s.job->dead_letters.push_back(dlq_json(s.id, r.seq, r.idx,
                                                 "entity failed repeatedly: " + why,
                                                 record_json(*s.plan, g.key, r)));
        g.dead_lettered = true;
        return;
      }
      shard_warn_limited(self, "entity restarted",
                         "entity " + g.key + " restarted from persisted state after: " + why);
    }
  }
}

// Writes everything the batch changed, with the new sequence, in one WriteBatch.
void commit(shard_self self) {
  auto& s = self->state;
  apply_job& j = *s.job;
  store::batch b(s.id);
  uint64_t applied = 0;
  for (auto& g : j.groups) {
    if (g.dead_lettered) continue;
    for (auto& [view, bytes] : g.delta.vectors) b.put_vector(view, g.key, bytes);
    if (g.is_new && !s.entities->persisted(g.key)) b.put_known(g.key);
    applied += g.recs.size();
  }
  for (auto& [key, e] : j.offline_only) b.put_log(key, e);
  applied += j.offline_only.size();
  shard_meta m = s.meta;
  m.applied_seq = std::max(m.applied_seq, j.max_seq);
  m.watermark = std::max(m.watermark, j.watermark);
  m.dead_letters += j.dead_letters.size();
  m.events_applied += applied;
  // The offline log (entities load their windows from it: store::load_window), pruned per
  // entity once its cutoff moved by 1/64 of the retention. It keeps at least what the
  // entity's windows and as-of reads reach, even when offline_retention is shorter.
  const int64_t log_retention = std::max(s.stream->offline_retention_us, s.plan->retention_us);
  const int64_t log_cutoff = j.prune_at - log_retention;
  for (auto& g : j.groups) {
    if (g.dead_lettered) continue;
    b.put_log_entries(g.key, g.log);
    int64_t& pruned = s.entities->slot(g.key).log_pruned;
    if (log_cutoff > 0 && (pruned == INT64_MIN || log_cutoff - pruned > log_retention / 64)) {
      b.prune_log(g.key, log_cutoff);
      pruned = log_cutoff;
    }
  }
  b.put_meta(m);
  // Dead letters go out before the commit: after a crash they may repeat, never vanish.
  for (auto& d : j.dead_letters) s.ctx->nats->publish_dead_letter(s.id.stream, d);
  auto write_start = clock_type::now();
  auto w = s.ctx->db->write(b);
  auto write_ms =
      std::chrono::duration<double, std::milli>(clock_type::now() - write_start).count();
  auto total_ms = std::chrono::duration<double, std::milli>(clock_type::now() - j.started).count();
  if (total_ms > 100)
    shard_warn_limited(
        self, "slow batch",
        fmt::format(
            "{:.0f} ms for {} events of {} entities in {} messages (RocksDB write {:.0f} ms)",
            total_ms, j.events, j.groups.size(), j.messages, write_ms));
  if (!w) {
    spdlog::error("shard {}: {}; restarting the shard", s.id.name(), w.error_message());
    self->quit(caf::make_error(caf::sec::runtime_error, w.error_message()));
    return;
  }
  s.meta = m;
  if (auto* clocks = s.ctx->clocks) {
    clocks->advance_local(s.id.stream, m.watermark);
    if (j.late) clocks->count_late(s.id.stream, j.late);
    if (j.refused) clocks->count_refused(s.id.stream, j.refused);
  }
  for (auto& g : j.groups)
    if (!g.dead_lettered) s.entities->slot(g.key).persisted = true;
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
  s.job.reset();
  s.applying = false;
  shard_serve_deferred(self);
  if (!s.pending.empty()) shard_schedule_apply(self);
  shard_pull(self);
}

}  // namespace

void shard_schedule_apply(shard_self self) {
  if (!self->state.flush_scheduled) {
    self->state.flush_scheduled = true;
    self->send(self, flush_atom::value);
  }
}

// Decodes the pending deliveries, routes events to entities, dead-letters what is invalid.
void shard_apply_pending(shard_self self) {
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
  s.job = std::make_unique<apply_job>();
  apply_job& j = *s.job;
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
      shard_warn_limited(self, "dead letter", reason);
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
      const std::vector<int> positional = positional_fields(root, *s.stream);
      const int64_t gateway_clock = root.getClock();  // 0: not through a gateway
      // Known time: the producer's, else when JetStream stored the message, else the batch's.
      const int64_t stored_us = d.stored_ns > 0 ? d.stored_ns / 1000 : root.getIngestTime();
      auto known_time = [&](int64_t known, const normalized_event& ne) {
        return known > 0 ? known : (stored_us > 0 ? stored_us : ne.time);
      };
      normalized_event ne;  // reused: its fields keep their storage from event to event
      for (uint32_t i = 0; i < events.size(); ++i) {
        auto e = events[i];
        event_error err;
        if (!normalize_event(e, *s.stream, ne, err, &positional)) {
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
          dead(i, "key '" + std::string(e.getKey().cStr()) + "' does not match its key fields ('" +
                      key + "')");
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
          log_entry le;
          le.r.time = ne.time, le.r.seq = d.seq, le.r.idx = i;
          le.r.fields = ne.fields;
          le.known = known_time(e.getKnownTime(), ne);
          le.offline_only = true;
          j.offline_only.emplace_back(key, std::move(le));
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
          j.groups.back().is_new = !s.entities->persisted(key);
        }
        group& grp = j.groups[it->second];
        grp.log.add(ne.time, d.seq, i, known_time(e.getKnownTime(), ne), false, ne.fields);
        grp.recs.push_back(std::move(r));
        ++j.events;
      }
    } catch (const kj::Exception& ex) {
      dead(-1, std::string("malformed EventBatch: ") + ex.getDescription().cStr());
    }
  }
  if (j.max_seq == 0) {  // nothing new
    s.job.reset();
    return;
  }
  j.prune_at = live ? now : j.watermark;
  j.clock = live ? now : std::max(j.watermark, stream_wm);
  s.applying = true;
  s.pruned_to = std::max(s.pruned_to, j.prune_at);
  // Reads on this node take the clock from here on: none can ask for a time before what
  // this batch's entities are about to prune (see shard_reads.h).
  if (clocks && !live) clocks->advance_local(s.id.stream, j.watermark);
  for (auto& g : j.groups) apply_group(self, g);
  commit(self);
}

}  // namespace tessera
