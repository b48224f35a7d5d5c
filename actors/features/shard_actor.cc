#include "shard_actor.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "entity_actor.h"
#include "shard_apply.h"
#include "shard_consumer.h"
#include "shard_reads.h"

namespace tessera {

void shard_warn_limited(shard_self self, const std::string& what, const std::string& detail) {
  uint64_t suppressed = 0;
  if (self->state.ctx->limiter->allow(self->state.id.stream + ":" + what, suppressed))
    spdlog::warn("shard {}: {}: {}{}", self->state.id.name(), what, detail,
                 suppressed ? fmt::format(" ({} similar suppressed)", suppressed) : "");
}

caf::actor activate_entity(shard_self self, const std::string& key) {
  auto& s = self->state;
  auto it = s.active.find(key);
  if (it != s.active.end()) return it->second;
  std::deque<record> recs;
  if (s.known.count(key)) {
    auto loaded = s.ctx->db->load_records(s.id, key);
    if (loaded)
      recs = std::move(loaded.value());
    else
      shard_warn_limited(self, "corrupt entity state", loaded.error_message());
  }
  auto a = self->spawn<caf::linked>(entity_actor, key, s.plan, std::move(recs),
                                    caf::actor_cast<caf::actor>(self), s.ctx->opts.entity_idle,
                                    s.ctx->opts.materialize_every, s.ctx->cache, s.id.shard);
  s.active.emplace(key, a);
  s.by_addr.emplace(a.address(), key);
  return a;
}

caf::behavior shard_actor(shard_self self, context_ptr ctx, shard_id id) {
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

  shard_open_consumer(self);
  self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);

  return {
      [=](init_atom) {  // retry after a failure
        if (!self->state.ready) shard_open_consumer(self);
      },
      [=](init_atom, const std::string& error, uint64_t next_cseq) {
        if (!self->state.ready) shard_consumer_opened(self, error, next_cseq);
      },
      [=](delivery& d) { shard_on_delivery(self, d); },
      [=](flush_atom) {
        self->state.flush_scheduled = false;
        shard_apply_pending(self);
      },
      [=](tick_atom) { shard_on_tick(self); },
      [=](watchdog_atom, int64_t pending, int64_t last, const std::string& error) {
        shard_on_watchdog(self, pending, last, error);
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
      [=](read_atom, shard_read& req) { shard_serve_read(self, req); },
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
        return self->delegate(activate_entity(self, key), crash_atom::value);
      },
      [=](stop_atom) { self->quit(); },
  };
}

}  // namespace tessera
