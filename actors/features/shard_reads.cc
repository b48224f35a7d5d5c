#include "shard_reads.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "time_util.h"

namespace tessera {

namespace {

// Whether the shard has applied its events up to `t` (see shard_reads.h): past it, or at it
// with nothing received left to apply and nothing more on its consumer.
bool applied_up_to(const shard_state& s, int64_t t) {
  const int64_t wm = s.meta.watermark;
  return wm > t || (wm == t && !s.applying && s.pending.empty() && s.last_pending == 0 && s.ready);
}

// Defers a settled read whose shard has not applied up to its time yet; false: answer it now.
bool defer_settled(shard_self self, shard_read& req) {
  auto& s = self->state;
  if (!req.settled || req.as_of <= 0 || s.stream->clock != clock_mode::replay ||
      applied_up_to(s, req.as_of))
    return false;
  const auto now = std::chrono::steady_clock::now();
  if (req.settle_by == std::chrono::steady_clock::time_point{}) {
    req.settle_by = now + s.ctx->opts.settle_wait;
    s.ctx->metrics->settled_waits++;
  } else if (now >= req.settle_by) {
    s.ctx->metrics->settle_timeouts++;
    shard_warn_limited(self, "settled read timed out",
                       "answered a read as of " + format_timestamp(req.as_of) + " after " +
                           std::to_string(s.ctx->opts.settle_wait.count()) +
                           " ms with the shard's watermark at " +
                           format_timestamp(s.meta.watermark) + " (it may lack recent events)");
    return false;
  }
  s.deferred_reads.push_back(std::move(req));
  return true;
}

}  // namespace

void shard_serve_deferred(shard_self self) {
  auto& s = self->state;
  if (s.deferred_reads.empty()) return;
  std::vector<shard_read> waiting;
  waiting.swap(s.deferred_reads);
  for (auto& req : waiting) shard_serve_read(self, req);  // defers again those still early
}

void shard_serve_read(shard_self self, shard_read& req) {
  auto& s = self->state;
  if (req.view >= s.plan->views.size()) {
    req.done(make_error("view index out of range", errc::invalid));
    return;
  }
  if (defer_settled(self, req)) return;
  const view_def* v = s.plan->views[req.view];
  const int64_t wm = s.meta.watermark;
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
  std::vector<feature_vector> out;
  out.reserve(req.keys.size());
  for (const std::string& key : req.keys) {
    if (!s.entities->persisted(key) && !s.entities->active(key)) {
      spdlog::debug("shard {}: read of {} which it has never applied", s.id.name(), key);
      out.push_back(compute_vector(*v, std::vector<record>{}, t, key));
      continue;
    }
    out.push_back(s.entities->vector(key, activate_entity(self, key), req.view, t));
  }
  req.done(std::move(out));
}

}  // namespace tessera
