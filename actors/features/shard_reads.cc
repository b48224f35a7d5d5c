#include "shard_reads.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "time_util.h"

namespace tessera {

void shard_serve_read(shard_self self, shard_read& req) {
  auto& s = self->state;
  if (req.view >= s.plan->views.size()) {
    req.done(make_error("view index out of range", errc::invalid));
    return;
  }
  const view_def* v = s.plan->views[req.view];
  const int64_t wm = std::max(s.meta.watermark, s.inflight_watermark);
  // Callers resolve the stream's clock once for a whole read (feature_reader); a bare
  // read takes it here. A read at a clock of 0 (a replay stream that had applied nothing when
  // the read began) is answered as of 0 — every vector missing — on every shard alike: a shard
  // that has applied since must not answer at its own newer time, or one read would hold two
  // read times.
  int64_t t = req.as_of;
  if (t == 0 && !(req.at_clock && s.ctx->clocks)) {
    t = s.ctx->clocks ? s.ctx->clocks->read_time(s.id.stream) : 0;
    if (t == 0) t = wm;
  }
  const int64_t pruned = s.pruned_to;
  if (req.as_of && pruned && req.as_of <= pruned - v->as_of_horizon_us && req.at_clock) {
    // The caller's clock lags this shard (another node's heartbeat, or a batch that
    // started applying after the caller read the clock): this shard may have pruned what a
    // read that far back needs. A fresh look at the clock will do.
    req.done(make_error("the stream's clock moved on while reading shard " + s.id.name() +
                            " (it applies events up to " + format_timestamp(pruned) + "); retry",
                        errc::retryable));
    return;
  }
  if (req.as_of && pruned && req.as_of <= pruned - v->as_of_horizon_us) {
    req.done(make_error("as-of " + format_timestamp(req.as_of) +
                            " is before the retained window of view " + v->qualified() +
                            " (earliest " + format_timestamp(pruned - v->as_of_horizon_us + 1) +
                            ")",
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
    self->request(activate_entity(self, key), kEntityRequestTimeout, read_atom::value, req.view, t)
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
                g->req.done(make_error(
                    "reading entity " + key + " failed: " + self->system().render(err) + "; retry",
                    errc::retryable));
              }
            });
  }
  g->req = std::move(req);
  if (g->left == 0) g->req.done(std::move(g->out));
}

}  // namespace tessera
