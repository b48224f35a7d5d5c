#include "shard_actor.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "shard_apply.h"
#include "shard_consumer.h"
#include "shard_reads.h"
#include "time_util.h"

namespace tessera {

void shard_warn_limited(shard_self self, const std::string& what, const std::string& detail) {
  uint64_t suppressed = 0;
  if (self->state.ctx->limiter->allow(self->state.id.stream + ":" + what, suppressed))
    spdlog::warn("shard {}: {}: {}{}", self->state.id.name(), what, detail,
                 suppressed ? fmt::format(" ({} similar suppressed)", suppressed) : "");
}

entity_table::entity& activate_entity(shard_self self, const std::string& key) {
  auto& s = self->state;
  auto& slot = s.entities->slot(key);
  if (slot.active) {
    slot.last_used = std::chrono::steady_clock::now();
    return slot;
  }
  std::vector<record> recs;
  if (slot.persisted) {
    // What any window or as-of read the shard still serves can reach (see shard_reads.h):
    // after pruned_to minus the retention. A live shard that has applied nothing since it
    // opened takes now as its prune point, as its next batch will.
    const int64_t prune_point = s.pruned_to                           ? s.pruned_to
                                : s.stream->clock == clock_mode::live ? now_micros()
                                                                      : s.meta.watermark;
    auto loaded = s.ctx->db->load_window(s.id, key, prune_point - s.plan->retention_us, s.log_slots,
                                         s.plan->stored_field_index.size());
    if (loaded)
      recs = std::move(loaded.value());
    else
      shard_warn_limited(self, "corrupt entity state", loaded.error_message());
  }
  return s.entities->activate(key, std::move(recs));
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
  st.entities = std::make_unique<entity_table>(st.plan, ctx->cache, id.shard);
  st.log_slots = stored_slot_of(*st.plan);

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
      [=](tick_atom) {
        shard_on_tick(self);
        shard_serve_deferred(self);
        // Passivation: entities unused for entity_idle are dropped (their state is persisted).
        auto& s = self->state;
        const auto idle = s.ctx->opts.entity_idle;
        const auto now = std::chrono::steady_clock::now();
        if (now - s.last_passivation >= std::max<std::chrono::milliseconds>(idle / 4, {})) {
          s.last_passivation = now;
          if (size_t n = s.entities->passivate_idle(idle))
            spdlog::debug("shard {}: passivated {} entities", s.id.name(), n);
        }
      },
      [=](watchdog_atom, int64_t pending, int64_t last, const std::string& error) {
        shard_on_watchdog(self, pending, last, error);
      },
      [=](read_atom, shard_read& req) { shard_serve_read(self, req); },
      [=](status_atom) -> shard_status {
        auto& s = self->state;
        shard_status out;
        out.id = s.id;
        out.meta = s.meta;
        out.lag = s.last_pending + s.pending.size();
        out.active = static_cast<uint32_t>(s.entities->active_count());
        out.passivated = static_cast<uint32_t>(s.entities->passive_count());
        return out;
      },
      [=](crash_atom, const std::string& key) {
        // Test hook: the entity's next apply throws, exercising one-for-one restart.
        activate_entity(self, key).TEST_crash_next = true;
        return true;
      },
      [=](stop_atom) { self->quit(); },
  };
}

}  // namespace tessera
