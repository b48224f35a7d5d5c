#include "handoff.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent.h"
#include "bus.h"
#include "cluster_view.h"
#include "definitions.h"
#include "shard_host.h"
#include "snapshots.h"
#include "store.h"
#include "time_util.h"

namespace tessera {
namespace {

using clk = std::chrono::steady_clock;

// Every (stream, kind) slice of a shard number, with the views it materialises.
std::vector<store::slice> slices_of(const definitions& defs) {
  std::vector<store::slice> out;
  for (auto& p : defs.plans()) {
    store::slice s{p.stream, p.entity, {}};
    for (const view_def* v : p.views) s.views.push_back(v->qualified());
    out.push_back(std::move(s));
  }
  return out;
}

std::string slice_name(const store::slice& s) {
  return s.stream + "/" + s.kind;
}

}  // namespace

shard_handoff::shard_handoff(const agent_options& o, deps d, membership m)
    : node_id_(o.node_id),
      handoff_wait_(o.handoff_wait),
      snapshot_every_(o.snapshot_every),
      snapshot_max_bytes_(o.snapshot_max_bytes),
      d_(std::move(d)),
      m_(std::move(m)) {}

void shard_handoff::reconcile(const std::vector<std::string>& owners, uint64_t epoch,
                              const std::atomic<bool>& stop) {
  // Releases first: the new owners wait for them.
  std::vector<uint32_t> to_release;
  for (uint32_t s = 0; s < owners.size() && !stop; ++s) {
    bool mine = owners[s] == node_id_;
    auto st = d_.view->local(s);
    if (!mine && st == shard_local::serving) to_release.push_back(s);
    if (!mine && st == shard_local::acquiring) {
      d_.view->set_local(s, shard_local::none);
      acquiring_since_.erase(s);
    }
  }
  if (!to_release.empty()) release(to_release, epoch);
  std::vector<uint32_t> ready;
  for (uint32_t s = 0; s < owners.size() && !stop; ++s) {
    if (owners[s] != node_id_) continue;
    auto st = d_.view->local(s);
    if (st == shard_local::none) {
      d_.view->set_local(s, shard_local::acquiring);
      acquiring_since_[s] = clk::now();
    }
    if (d_.view->local(s) != shard_local::acquiring) continue;
    // Wait until no other live member of the map still serves it, or for at most handoff_wait.
    const std::string holder = m_.other_server(s);
    if (!holder.empty() && clk::now() - acquiring_since_[s] < handoff_wait_) continue;
    if (!holder.empty())
      spdlog::warn(
          "cluster: {} still claims shard {} after {} ms; taking it over as the shard map says",
          holder, s, handoff_wait_.count());
    if (acquire(s)) ready.push_back(s);
  }
  if (start_shards(ready))
    m_.announce();  // one heartbeat for the batch: the served list is what others wait on
}

bool shard_handoff::acquire(uint32_t shard) {
  auto sl = slices_of(*d_.defs);
  // Start from the newer of the local state and the latest snapshot, slice by slice.
  std::vector<shard_meta> local;
  for (auto& s : sl) local.push_back(d_.db->load_meta(shard_id{s.stream, s.kind, shard}));
  auto latest = d_.snaps->latest(shard);
  if (!latest) {
    d_.view->metrics.snapshots_refused++;
    spdlog::error(
        "cluster: shard {}: refusing its snapshot ({}); continuing from local state and replaying "
        "the stream",
        shard, latest.error_message());
  } else if (latest->has_value()) {
    const auto& man = **latest;
    std::vector<store::slice> newer;
    for (size_t i = 0; i < sl.size(); ++i) {
      auto it = man.applied.find(slice_name(sl[i]));
      if (it != man.applied.end() && it->second > local[i].applied_seq) newer.push_back(sl[i]);
    }
    if (!newer.empty()) {
      auto blob = d_.snaps->fetch(man);
      status st =
          blob ? d_.db->import_slices(shard, newer, *blob) : make_error(blob.error_message());
      if (!st) {
        d_.view->metrics.snapshots_refused++;
        spdlog::error(
            "cluster: shard {}: refusing its snapshot from {} ({}); continuing from local state "
            "and replaying the stream",
            shard, man.node, st.error_message());
      } else {
        d_.view->metrics.snapshots_restored++;
        spdlog::info("cluster: shard {}: restored {} slice(s) from the snapshot of {} ({} bytes)",
                     shard, newer.size(), man.node, man.bytes);
      }
    }
    // Local state now equal to the stored snapshot, slice by slice: nothing to snapshot until
    // something is applied (a restarted node used to upload every shard again).
    bool same = man.applied.size() == sl.size();
    uint64_t total = 0;
    for (size_t i = 0; i < sl.size() && same; ++i) {
      auto it = man.applied.find(slice_name(sl[i]));
      const uint64_t applied =
          d_.db->load_meta(shard_id{sl[i].stream, sl[i].kind, shard}).applied_seq;
      same = it != man.applied.end() && it->second == applied;
      total += applied;
    }
    if (same)
      snapshot_applied_[shard] = total;
    else
      snapshot_applied_.erase(shard);
  }
  return true;
}

// Starts the actors of every prepared shard with one message: under a backlog the actor
// threads are busy, and a message per shard would start the last shards seconds late.
size_t shard_handoff::start_shards(const std::vector<uint32_t>& shards) {
  if (shards.empty()) return 0;
  // A shard is served once every family serves it; the rest are offered again next tick.
  std::vector<uint32_t> started = shards;
  for (shard_host* h : d_.hosts) {
    auto got = h->start_shards(shards);
    std::sort(got.begin(), got.end());
    std::vector<uint32_t> both;
    for (uint32_t s : started)
      if (std::binary_search(got.begin(), got.end(), s)) both.push_back(s);
    started = std::move(both);
  }
  for (uint32_t s : started) {  // the rest (e.g. still stopping from an earlier release): next tick
    d_.view->set_local(s, shard_local::serving);
    acquiring_since_.erase(s);
    last_snapshot_[s] = clk::now();
    d_.view->metrics.shards_acquired++;
  }
  return started.size();
}

// Stops the shards' actors (all at once, each commits what it applied), snapshots each,
// drops their consumers, then tells the others with one heartbeat.
void shard_handoff::release(const std::vector<uint32_t>& shards, uint64_t epoch) {
  for (uint32_t s : shards) d_.view->set_local(s, shard_local::releasing);
  for (shard_host* h : d_.hosts) h->stop_shards(shards);
  for (uint32_t s : shards) {
    if (!snapshot_current(s))
      if (auto st = snapshot(s, epoch); !st)
        spdlog::warn("cluster: shard {}: snapshot on release failed: {}", s, st.error_message());
    for (auto& sl : slices_of(*d_.defs)) d_.nats->delete_consumer_async(sl.stream, sl.kind, s);
    d_.view->set_local(s, shard_local::none);
    d_.view->metrics.shards_released++;
  }
  m_.announce();
  spdlog::info("cluster: released {} shard(s)", shards.size());
}

// Unchanged since the stored snapshot (ours, or found equal to the local state at acquire): the
// next owner finds it as it is. A restart or a leave used to upload every shard again.
bool shard_handoff::snapshot_current(uint32_t shard) const {
  auto known = snapshot_applied_.find(shard);
  if (known == snapshot_applied_.end()) return false;
  uint64_t total = 0;
  for (auto& sl : slices_of(*d_.defs))
    total += d_.db->load_meta(shard_id{sl.stream, sl.kind, shard}).applied_seq;
  return known->second == total;
}

status shard_handoff::snapshot(uint32_t shard, uint64_t epoch) {
  auto sl = slices_of(*d_.defs);
  auto blob = d_.db->export_slices(shard, sl, snapshot_max_bytes_);
  if (!blob) return make_error(blob.error_message());
  auto metas = store::metas_in(shard, sl, *blob);
  if (!metas) return make_error(metas.error_message());
  snapshot_manifest m;
  m.shard = shard;
  m.node = node_id_;
  m.epoch = epoch;
  m.created_us = now_micros();
  for (size_t i = 0; i < sl.size(); ++i) m.applied[slice_name(sl[i])] = (*metas)[i].applied_seq;
  auto saved = d_.snaps->save(m, *blob);
  if (!saved) return make_error(saved.error_message());
  last_snapshot_[shard] = clk::now();
  snapshot_applied_[shard] = m.total_applied();
  if (*saved) d_.view->metrics.snapshots_written++;
  return ok_status();
}

void shard_handoff::periodic_snapshot(uint64_t epoch) {
  // At most one shard per tick, so a tick stays short.
  auto now = clk::now();
  for (uint32_t s : d_.view->serving()) {
    auto it = last_snapshot_.find(s);
    if (it != last_snapshot_.end() && now - it->second < snapshot_every_) continue;
    if (snapshot_current(s)) {
      last_snapshot_[s] = now;  // nothing new
      d_.view->metrics.snapshots_unchanged++;
      continue;
    }
    if (auto st = snapshot(s, epoch); !st) {
      last_snapshot_[s] = now;
      spdlog::warn("cluster: periodic snapshot of shard {} failed: {}", s, st.error_message());
    }
    return;
  }
}

void shard_handoff::snapshot_unowned(clk::time_point deadline, uint64_t epoch) {
  for (uint32_t s : d_.view->serving()) {
    if (clk::now() >= deadline) break;
    if (snapshot_current(s)) continue;
    if (auto st = snapshot(s, epoch); !st)
      spdlog::warn("cluster: snapshot of shard {} on leave failed: {}", s, st.error_message());
  }
}

}  // namespace tessera
