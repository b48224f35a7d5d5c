#include "entity_actor.h"

#include "codec.h"
#include "vector_cache.h"

namespace tessera {

caf::behavior entity_actor(caf::stateful_actor<entity_state>* self, std::string key,
                           const kind_plan* plan, std::deque<record> records, caf::actor shard,
                           std::chrono::milliseconds idle,
                           std::chrono::milliseconds materialize_every, vector_cache* cache,
                           uint32_t shard_no) {
  self->state.key = std::move(key);
  self->state.plan = plan;
  self->state.records = std::move(records);
  self->state.cache.resize(plan->views.size());
  // The vector at t: the last one computed while it is still valid at t (the stream's clock
  // moves on every read), else computed anew and published to the node's vector cache.
  auto compute = [self, cache, shard_no](uint32_t view, int64_t t) -> feature_vector {
    auto& c = self->state.cache[view];
    if (!c || !still_valid(c->second, t)) {
      const view_def* v = self->state.plan->views[view];
      c.emplace(t, compute_vector(*v, self->state.records, t, self->state.key));
      if (cache) cache->put(v->qualified(), shard_no, self->state.key, c->second);
    }
    feature_vector out = c->second;
    out.as_of = t;
    return out;
  };
  return {
      // `prune_at`, `clock`: see shard_actor.cc, apply_job.
      [=](apply_atom, const record_batch& batch, int64_t prune_at, int64_t clock) -> entity_delta {
        if (self->state.TEST_crash_next) {
          self->state.TEST_crash_next = false;
          throw std::runtime_error("TEST_crash requested");
        }
        auto& st = self->state;
        // Published vectors describe the old state: withdraw them before changing it.
        if (cache)
          for (const view_def* v : st.plan->views) cache->erase(v->qualified(), shard_no, st.key);
        for (auto& c : st.cache) c.reset();
        for (const auto& r : *batch) insert_record(st.records, r);
        entity_delta d;
        d.key = st.key;
        // Drop what no window or as-of read can reach any more.
        const int64_t cutoff = prune_at - st.plan->retention_us;
        while (!st.records.empty() && st.records.front().time <= cutoff) {
          const auto& r = st.records.front();
          d.pruned.push_back({r.time, r.seq, r.idx});
          st.records.pop_front();
        }
        auto now = std::chrono::steady_clock::now();
        if (now - st.last_materialized >= materialize_every) {
          st.last_materialized = now;
          for (uint32_t v = 0; v < st.plan->views.size(); ++v)
            d.vectors.emplace_back(st.plan->views[v]->qualified(),
                                   encode_vector(compute(v, clock)));
        }
        return d;
      },
      [=](read_atom, uint32_t view, int64_t t) -> feature_vector {
        if (view >= self->state.plan->views.size()) throw std::out_of_range("view index");
        return compute(view, t);
      },
      [=](crash_atom) {
        self->state.TEST_crash_next = true;
        return true;
      },
      [=](stop_atom) { self->quit(); },
      caf::after(idle) >> [=] { self->send(shard, passivate_atom::value, self->state.key); },
  };
}

}  // namespace tessera
