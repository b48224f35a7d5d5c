#include "shard_consumer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "shard_apply.h"
#include "vector_cache.h"

namespace tessera {
namespace {

using clock_type = std::chrono::steady_clock;
// Pulls wait up to 5 s on the server. The shard keeps one waiting there at all times: once its
// newest pull is half expired it sends the next (at most two outstanding), so a pull that
// expires or is used up without the shard knowing (its credit is an estimate) never leaves the
// shard uncovered until the next tick or delivery. With 1 s pulls and no refresh, probes at
// 1k events/s waited up to 0.9 s in delivery (probe p99 460 ms; 28 ms with this: bench/RESULTS.md).
// The shard's credit estimate is approximate (data messages do not say which pull they
// answer); the refresh also heals a wrong one. Idle cost: 0.4 requests/s per shard.
constexpr int64_t kPullExpiresMs = 5000;
// The least a pull asks for, however many slices share pull_bytes_in_flight.
constexpr int64_t kMinPullBytes = 64 << 10;
// Silence after which the shard checks that its consumer really has nothing for it.
constexpr auto kWatchdogSilence = std::chrono::seconds(10);

}  // namespace

void shard_open_consumer(shard_self self) {
  auto& s = self->state;
  if (s.applying) {  // a batch is still being applied: re-open once it is committed
    self->delayed_send(self, std::chrono::milliseconds(50), init_atom::value);
    return;
  }
  // A fresh inbox for the (re-)created consumer: see shard_state::inbox_gen.
  s.inbox.reset();
  s.pulls.clear();
  s.pending.clear();
  s.pulls_sent = s.pull_ends = 0;
  s.last_end.clear();
  // A store written by an older Tessera kept window records beside the log: upgrade it once.
  // (New definitions need nothing: windows are loaded from the log in the plan's layout.)
  if (auto upgraded = s.ctx->db->ensure_layout(s.id, *s.plan); !upgraded)
    spdlog::error("shard {}: {}", s.id.name(), upgraded.error_message());
  else if (*upgraded)
    spdlog::info(
        "shard {}: upgraded its store: windows now load from the offline log ({} window records "
        "dropped)",
        s.id.name(), **upgraded);
  s.meta = s.ctx->db->load_meta(s.id);
  // Vectors cached by an earlier incarnation may include applied-but-uncommitted events.
  if (s.ctx->cache) s.ctx->cache->clear_shard(s.id.shard);
  if (s.ctx->clocks) s.ctx->clocks->advance_local(s.id.stream, s.meta.watermark);
  // Entities persisted by an earlier incarnation were pruned at most at its watermark (replay)
  // or at a wall-clock time before now (live, judged at the next apply).
  s.pruned_to = s.stream->clock == clock_mode::replay ? s.meta.watermark : 0;
  // Entities are reloaded from what is committed.
  s.entities->reset(s.ctx->db->known_entities(s.id));
  caf::actor me = caf::actor_cast<caf::actor>(self);
  s.ctx->nats->open_consumer_async(
      s.id.stream, s.id.kind, s.id.shard, s.meta.applied_seq + 1, [me](result<uint64_t> r) {
        caf::anon_send(me, init_atom::value, r ? std::string() : r.error_message(),
                       r ? *r : uint64_t{0});
      });
}

void shard_consumer_opened(shard_self self, const std::string& error, uint64_t next_cseq) {
  auto& s = self->state;
  s.next_cseq = next_cseq;
  if (!error.empty()) {
    shard_warn_limited(self, "consumer not ready", error + "; retrying");
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
  shard_pull(self);
}

void shard_pull(shard_self self) {
  auto& s = self->state;
  if (!s.ready) return;
  const int batch = s.ctx->opts.pull_batch;
  int credit = 0;
  auto now = clock_type::now();
  auto newest = clock_type::time_point::min();
  for (auto it = s.pulls.begin(); it != s.pulls.end();) {
    // A pull the server never answered (e.g. lost in a reconnect) is forgotten after expiry.
    if (now - it->second.issued > std::chrono::milliseconds(kPullExpiresMs + 500)) {
      it = s.pulls.erase(it);
    } else {
      newest = std::max(newest, it->second.issued);
      credit += (it++)->second.remaining;
    }
  }
  const bool half_expired =
      !s.pulls.empty() && now - newest > std::chrono::milliseconds(kPullExpiresMs / 2);
  if (s.pulls.size() >= 2 || (credit >= batch / 2 && !half_expired) ||
      s.pending.size() >= static_cast<size_t>(4 * batch))
    return;
  // Bytes in flight stay bounded node-wide: each pull asks for its share of
  // pull_bytes_in_flight, as if every (shard, kind) slice were here with two pulls out.
  const int64_t slices = std::max<int64_t>(
      1, int64_t{s.ctx->opts.shard_count} * static_cast<int64_t>(s.ctx->defs->plans().size()));
  int asked = batch;
  int64_t max_bytes =
      std::max<int64_t>(kMinPullBytes, s.ctx->opts.pull_bytes_in_flight / (2 * slices));
  if (s.oversized_next) asked = 1, max_bytes = 0, s.oversized_next = false;
  uint64_t no = s.ctx->nats->pull(s.id.stream, s.id.kind, s.id.shard, *s.inbox, asked, max_bytes,
                                  kPullExpiresMs);
  if (no) s.pulls[no] = {asked, asked, now}, ++s.pulls_sent;
}

void shard_on_delivery(shard_self self, delivery& d) {
  auto& s = self->state;
  if (d.inbox_gen != s.inbox_gen || !s.inbox) return;  // from a replaced consumer
  if (d.end) {
    ++s.pull_ends;
    s.last_end = d.status + (d.description.empty() ? "" : " " + d.description);
    auto p = s.pulls.find(d.pull_no);
    if (p == s.pulls.end()) return;
    const bool delivered_none = p->second.remaining == p->second.asked;
    s.pulls.erase(p);
    // 503: nobody serves the consumer (its NATS server died); 404: it is gone. Re-create
    // it from the committed sequence; what was pending will be delivered again (and what
    // is already applied is skipped by sequence).
    if ((d.status == "503" || d.status == "404") && s.ready) {
      shard_warn_limited(self, "consumer lost",
                         "status " + d.status + "; re-creating it from sequence " +
                             std::to_string(s.meta.applied_seq + 1));
      s.ready = false;  // shard_open_consumer drops the old inbox, pulls and pending deliveries
      self->delayed_send(self, std::chrono::milliseconds(200), init_atom::value);
      return;
    }
    // 409 on the byte limit is a pull's ordinary end under load; others ("Exceeded
    // MaxWaiting") mean pulling less often.
    if (d.status == "409" && d.description.find("MaxBytes") != std::string::npos) {
      if (delivered_none) s.oversized_next = true;
      shard_pull(self);
    } else if (d.status == "409")
      self->delayed_send(self, std::chrono::milliseconds(50), tick_atom::value);
    else
      shard_pull(self);
    return;
  }
  if (s.next_cseq && d.cseq && d.cseq != s.next_cseq) {
    // Deliveries were lost on the way (see shard_state::next_cseq): apply nothing after
    // the gap; what is pending is delivered again by the re-created consumer.
    shard_warn_limited(self, "deliveries lost",
                       "consumer sequence " + std::to_string(d.cseq) + " arrived, " +
                           std::to_string(s.next_cseq) +
                           " expected; re-creating the consumer from sequence " +
                           std::to_string(s.meta.applied_seq + 1));
    s.inbox.reset();  // later deliveries of this consumer are dropped
    s.ready = false;  // shard_open_consumer drops the pulls and pending deliveries
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
  shard_schedule_apply(self);
  shard_pull(self);
}

void shard_on_tick(shard_self self) {
  shard_pull(self);
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
}

void shard_on_watchdog(shard_self self, int64_t pending, int64_t last, const std::string& error) {
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
  int credit = 0;
  for (auto& [no, p] : s.pulls) credit += p.remaining;
  const std::string pulls = fmt::format(
      " ({} pulls sent, {} ended{}{}; {} out with credit {})", s.pulls_sent, s.pull_ends,
      s.last_end.empty() ? "" : ", the last with ", s.last_end, s.pulls.size(), credit);
  shard_warn_limited(
      self, "consumer stalled",
      !error.empty() ? "consumer unreachable (" + error + "); re-creating it"
      : lost ? "the stream holds sequence " + std::to_string(last) + " for this shard but " +
                   std::to_string(s.meta.applied_seq) +
                   " is the last applied and the consumer has nothing pending; re-creating it"
             : std::to_string(pending) + " messages wait but none arrived for " +
                   std::to_string(kWatchdogSilence.count()) + " s" + pulls +
                   "; re-creating the consumer");
  s.ready = false;  // shard_open_consumer drops the old inbox, pulls and pending deliveries
  self->send(self, init_atom::value);
}

}  // namespace tessera
