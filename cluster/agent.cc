#include "agent.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "assignment.h"
#include "bus.h"
#include "codec.h"
#include "handoff.h"
#include "metrics.h"
#include "stream_clock.h"
#include "time_util.h"

namespace tessera {
namespace {

using clk = std::chrono::steady_clock;
constexpr const char* kLeaseKey = "leader";
constexpr const char* kMapKey = "map";

}  // namespace

result<std::unique_ptr<cluster_agent>> cluster_agent::start(const agent_options& o, deps d) {
  std::unique_ptr<cluster_agent> a(new cluster_agent());
  a->opts_ = o;
  a->d_ = std::move(d);
  a->started_us_ = now_micros();
  // Its own JetStream context with a short timeout: a slow call must not stall the control loop.
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 3000;
  if (natsConnection_JetStream(&a->js_, a->d_.nats->connection(), &jo) != NATS_OK)
    return make_error("cannot open a JetStream context for the cluster agent");
  auto js = a->js_;
  // A NATS cluster that has just started may take a few seconds to elect its JetStream
  // leaders: retry the set-up for a while before giving up. Failures to reach the buckets are
  // retryable; a cluster this node must not join (errc::invalid) is final.
  std::string last_error;
  auto deadline = clk::now() + std::chrono::seconds(30);
  while (true) {
    auto step = [&]() -> status {
      if (!a->nodes_) {
        auto r = kv_bucket::open(js, {"TSR_NODES", 3600 * 1000, o.replicas, 1});
        if (!r) return make_error(r.error_message(), errc::retryable);
        a->nodes_ = std::move(r.value());
      }
      if (!a->lease_) {
        auto r = kv_bucket::open(js, {"TSR_LEASE", o.lease_ttl.count(), o.replicas, 1});
        if (!r) return make_error(r.error_message(), errc::retryable);
        a->lease_ = std::move(r.value());
      }
      if (!a->map_kv_) {
        auto r = kv_bucket::open(js, {"TSR_SHARDMAP", 0, o.replicas, 1});
        if (!r) return make_error(r.error_message(), errc::retryable);
        a->map_kv_ = std::move(r.value());
      }
      if (!a->snaps_) {
        snapshot_store::options so;
        so.replicas = o.replicas;
        auto r = snapshot_store::open(js, so);
        if (!r) return make_error(r.error_message(), errc::retryable);
        a->snaps_ = std::move(r.value());
      }
      // The shard count is fixed at cluster creation: a node configured otherwise must not join.
      auto cur = a->map_kv_->get(kMapKey);
      if (!cur) return make_error(cur.error_message(), errc::retryable);
      if (cur->has_value()) {
        try {
          auto j = nlohmann::json::parse((*cur)->value);
          uint32_t n = j.at("shard_count").get<uint32_t>();
          if (n != o.shard_count)
            return make_error("the cluster at this NATS has " + std::to_string(n) +
                                  " shards; this node is configured with " +
                                  std::to_string(o.shard_count) +
                                  " (the shard count is fixed when the cluster is created)",
                              errc::invalid);
        } catch (const std::exception& e) {
          spdlog::warn(
              "cluster: the stored shard map is unreadable ({}); the leader will rewrite it",
              e.what());
        }
      }
      return ok_status();
    };
    auto st = step();
    if (st) break;
    if (!is_retryable(st.error_code())) return make_error(st.error_message(), st.error_code());
    if (clk::now() > deadline) return make_error("cannot join the cluster: " + st.error_message());
    if (st.error_message() != last_error) spdlog::warn("cluster: {}; retrying", st.error_message());
    last_error = st.error_message();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  shard_handoff::deps hd;
  hd.nats = a->d_.nats;
  hd.db = a->d_.db;
  hd.defs = a->d_.defs;
  hd.hosts = a->d_.hosts;
  hd.view = a->d_.view;
  hd.snaps = a->snaps_.get();
  shard_handoff::membership hm;
  hm.other_server = [p = a.get()](uint32_t shard) { return p->other_server(shard); };
  hm.announce = [p = a.get()] { p->beat(); };
  a->handoff_ = std::make_unique<shard_handoff>(o, std::move(hd), std::move(hm));
  a->beat();
  a->hb_thread_ = std::thread([p = a.get()] { p->heartbeat_loop(); });
  a->members_thread_ = std::thread([p = a.get()] { p->members_loop(); });
  a->ctl_thread_ = std::thread([p = a.get()] { p->control_loop(); });
  return a;
}

cluster_agent::~cluster_agent() {
  stop();
  handoff_.reset();
  snaps_.reset();
  nodes_.reset();
  lease_.reset();
  map_kv_.reset();
  if (js_) jsCtx_Destroy(js_);
}

void cluster_agent::stop() {
  stop_ = true;
  cv_.notify_all();
  if (hb_thread_.joinable()) hb_thread_.join();
  if (ctl_thread_.joinable()) ctl_thread_.join();
  if (members_thread_.joinable()) members_thread_.join();
}

bool cluster_agent::wait_ready(std::chrono::milliseconds timeout) {
  auto deadline = clk::now() + timeout;
  while (clk::now() < deadline && !stop_) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (map_.present) {
        bool ready = true;
        for (uint32_t s = 0; s < map_.owners.size(); ++s)
          if (map_.owners[s] == opts_.node_id && d_.view->local(s) != shard_local::serving)
            ready = false;
        bool listed = std::find(map_.members.begin(), map_.members.end(), opts_.node_id) !=
                      map_.members.end();
        if (ready && listed) return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void cluster_agent::leave(std::chrono::milliseconds budget) {
  if (stop_) return;
  auto deadline = clk::now() + budget;
  leaving_ = true;
  beat();
  bool others = false;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& id : live_members(false)) others = others || id != opts_.node_id;
  }
  if (others) {
    spdlog::info("cluster: {} leaving; handing its shards to the other members", opts_.node_id);
    while (clk::now() < deadline && !d_.view->serving().empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop_ = true;
  cv_.notify_all();
  if (ctl_thread_.joinable()) ctl_thread_.join();
  if (hb_thread_.joinable()) hb_thread_.join();
  if (members_thread_.joinable()) members_thread_.join();
  // Shards nobody took: snapshot them so that any node can continue from there. The threads
  // have stopped: the map is the last one read.
  handoff_->snapshot_unowned(deadline, map_.epoch);
  // A failed erase only makes the others wait: a member entry counts until its heartbeat
  // expires, a lapsed lease is taken over.
  if (auto st = nodes_->erase(opts_.node_id); !st)
    spdlog::warn("cluster: {} left, but its member entry stays until its heartbeat expires: {}",
                 opts_.node_id, st.error_message());
  if (leader_)
    if (auto st = lease_->erase(kLeaseKey); !st)
      spdlog::warn("cluster: {} left, but its leader lease stays until it lapses: {}",
                   opts_.node_id, st.error_message());
}

std::vector<std::string> cluster_agent::live_members(bool include_leaving) const {
  std::vector<std::string> out;
  auto now = clk::now();
  for (auto& [id, m] : members_)
    if (now - m.changed <= opts_.dead_after && (include_leaving || !m.leaving)) out.push_back(id);
  std::sort(out.begin(), out.end());
  return out;
}

void cluster_agent::beat() {
  std::lock_guard<std::mutex> g(beat_mu_);
  // Shards being released still count as served: a new owner waits until their snapshot is out.
  std::vector<uint32_t> served;
  for (uint32_t s = 0; s < opts_.shard_count; ++s) {
    auto st = d_.view->local(s);
    if (st == shard_local::serving || st == shard_local::releasing) served.push_back(s);
  }
  nlohmann::json j{{"id", opts_.node_id},
                   {"rpc", opts_.rpc_address},
                   {"served", served},
                   {"leaving", leaving_.load()},
                   {"shard_count", opts_.shard_count},
                   {"events_applied", d_.metrics ? d_.metrics->events_applied.load() : 0},
                   {"read_calls", d_.metrics ? d_.metrics->read_calls.load() : 0},
                   {"started_us", started_us_},
                   {"event_wire", kEventWireVersion},
                   {"time", format_timestamp(now_micros())}};
  if (d_.clocks) {
    nlohmann::json clocks = nlohmann::json::object();
    for (auto& f : d_.clocks->local()) clocks[f.stream] = {f.watermark, f.accepted};
    j["clocks"] = std::move(clocks);
  }
  auto w = nodes_->put(opts_.node_id, j.dump());
  if (!w.ok) {
    static log_limiter limiter;
    uint64_t suppressed = 0;
    if (limiter.allow("heartbeat", suppressed))
      spdlog::warn("cluster: heartbeat failed: {}", w.error.empty() ? "conflict" : w.error);
  }
}

void cluster_agent::heartbeat_loop() {
  while (!stop_) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, opts_.heartbeat, [this] { return stop_.load(); });
    l.unlock();
    if (stop_) break;
    beat();
    renew_lease();
  }
}

// On the heartbeat thread, so that a long reconcile on the control thread never lets the lease
// lapse under a live leader.
void cluster_agent::renew_lease() {
  if (!leader_) return;
  auto now = clk::now();
  auto w = lease_->update(kLeaseKey, opts_.node_id, lease_rev_);
  if (w.ok) {
    lease_rev_ = w.revision;
    lease_renewed_ = now;
  } else if (w.conflict || now - lease_renewed_ > opts_.lease_ttl) {
    leader_ = false;
    spdlog::warn("cluster: {} lost the leader lease{}", opts_.node_id,
                 w.conflict ? " (another node holds it)" : "");
  }
}

// Follows TSR_NODES through a watcher: each heartbeat arrives as an update and stamps its
// member alive now (by this node's clock, so clock skew between machines does not matter).
void cluster_agent::members_loop() {
  std::unique_ptr<kv_bucket::watcher> w;
  auto last_own = clk::now();
  while (!stop_) {
    if (!w) {
      auto nw = nodes_->watch_all();
      if (!nw) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      w = std::move(nw.value());
      last_own = clk::now();
    }
    auto u = w->next(100);
    auto now = clk::now();
    if (!u) {
      w.reset();  // e.g. NATS restarted: watch again
      continue;
    }
    // Our own heartbeat comes by every `heartbeat`: if it stops, the watcher is stuck.
    if (now - last_own > 4 * opts_.heartbeat + std::chrono::seconds(1)) w.reset();
    if (!u->has_value()) continue;
    auto& up = **u;
    if (up.key == opts_.node_id) last_own = now;
    std::lock_guard<std::mutex> g(mu_);
    if (up.deleted) {
      members_.erase(up.key);
      continue;
    }
    observed o;
    o.revision = up.entry.revision;
    o.changed = now;
    try {
      auto j = nlohmann::json::parse(up.entry.value);
      o.rpc = j.value("rpc", "");
      o.leaving = j.value("leaving", false);
      o.events_applied = j.value("events_applied", uint64_t(0));
      o.event_wire = j.value("event_wire", uint32_t(1));
      for (auto& s : j.at("served")) o.served.insert(s.get<uint32_t>());
      if (d_.clocks && j.contains("clocks"))
        for (auto& [stream, wm] : j["clocks"].items()) {
          d_.clocks->advance_remote(stream, wm.at(0).get<int64_t>());
          d_.clocks->advance_remote_accepted(stream, wm.at(1).get<int64_t>());
        }
    } catch (const std::exception&) {
      // An unreadable heartbeat counts as a member that serves nothing.
    }
    members_[up.key] = std::move(o);
  }
}

// Takes the lease when it is free (the leader renews it on the heartbeat thread).
void cluster_agent::run_lease() {
  auto now = clk::now();
  if (leader_ || leaving_ || now - lease_checked_ < opts_.heartbeat / 2) return;
  lease_checked_ = now;
  auto cur = lease_->get(kLeaseKey);
  if (!cur) return;
  lease_holder_ = cur->has_value() ? (*cur)->value : "";
  if (cur->has_value() && (*cur)->value != opts_.node_id) return;  // someone else leads
  kv_write w = cur->has_value() ? lease_->update(kLeaseKey, opts_.node_id,
                                                 (*cur)->revision)  // ours from an earlier run
                                : lease_->create(kLeaseKey, opts_.node_id);
  if (w.ok) {
    leader_ = true;
    lease_rev_ = w.revision;
    lease_renewed_ = now;
    spdlog::info("cluster: {} is the leader", opts_.node_id);
  }
}

void cluster_agent::run_map() {
  auto cur = map_kv_->get(kMapKey);
  if (!cur) return;
  map_state m;
  if (cur->has_value()) {
    try {
      auto j = nlohmann::json::parse((*cur)->value);
      m.present = true;
      m.revision = (*cur)->revision;
      m.epoch = j.at("epoch").get<uint64_t>();
      m.owners = j.at("owners").get<std::vector<std::string>>();
      m.members = j.at("members").get<std::vector<std::string>>();
      if (m.owners.size() != opts_.shard_count) m.present = false;
    } catch (const std::exception&) {
      m = map_state{};
      m.revision = (*cur)->revision;
    }
  }
  if (leader_ && !leaving_) {
    std::vector<std::string> alive;
    {
      std::lock_guard<std::mutex> g(mu_);
      alive = live_members(false);
    }
    // Our own heartbeat not seen back for dead_after: our view of TSR_NODES is stale (our NATS
    // server failing over, say), and everyone else would look dead. Judge nobody until it is
    // back, instead of moving every shard here and back again.
    const bool own_seen = std::find(alive.begin(), alive.end(), opts_.node_id) != alive.end();
    if (!own_seen && m.present) {
      static log_limiter limiter;
      uint64_t suppressed = 0;
      if (limiter.allow("stale members", suppressed))
        spdlog::warn(
            "cluster: own heartbeat not seen back for {} ms; keeping the shard map until it is",
            opts_.dead_after.count());
      alive = m.members;  // the same members give the same assignment: nothing moves
    } else if (!own_seen) {
      alive.push_back(opts_.node_id);
    }
    std::sort(alive.begin(), alive.end());
    auto owners = assign_shards(opts_.shard_count, alive);
    if (!m.present || owners != m.owners || alive != m.members) {
      nlohmann::json j{{"epoch", m.epoch + 1},    {"shard_count", opts_.shard_count},
                       {"owners", owners},        {"members", alive},
                       {"leader", opts_.node_id}, {"time", format_timestamp(now_micros())}};
      kv_write w = m.revision ? map_kv_->update(kMapKey, j.dump(), m.revision)
                              : map_kv_->create(kMapKey, j.dump());
      if (w.ok) {
        size_t moved = 0;
        for (uint32_t s = 0; s < owners.size(); ++s)
          moved += !m.present || m.owners[s] != owners[s];
        spdlog::info("cluster: shard map epoch {}: {} members, {} shards moved", m.epoch + 1,
                     alive.size(), moved);
        m.present = true;
        m.revision = w.revision;
        m.epoch += 1;
        m.owners = std::move(owners);
        m.members = std::move(alive);
      } else if (w.conflict) {
        d_.view->metrics.map_conflicts++;  // another leader wrote first: re-read next tick
      }
    }
  }
  if (m.present) d_.view->set_map(m.epoch, m.owners);
  std::lock_guard<std::mutex> g(mu_);
  map_ = std::move(m);
}

void cluster_agent::control_loop() {
  while (!stop_) {
    run_lease();
    run_map();
    map_state m;
    {
      std::lock_guard<std::mutex> g(mu_);
      m = map_;
    }
    if (m.present) handoff_->reconcile(m.owners, m.epoch, stop_);
    handoff_->periodic_snapshot(m.epoch);
    // Publish members for status.
    std::vector<member_info> mi;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto now = clk::now();
      for (auto& [id, m] : members_) {
        member_info x;
        x.id = id;
        x.rpc = m.rpc;
        x.alive = now - m.changed <= opts_.dead_after;
        x.leaving = m.leaving;
        x.shards_served = static_cast<uint32_t>(m.served.size());
        x.events_applied = m.events_applied;
        x.event_wire = m.event_wire;
        x.silent_s = std::chrono::duration<double>(now - m.changed).count();
        mi.push_back(std::move(x));
      }
    }
    // Never name as leader a member this node considers dead: its lease may not have lapsed yet,
    // but it leads nothing (status shows no leader until the lease has a live holder).
    std::string leader = leader_ ? opts_.node_id : "";
    if (!leader_)
      for (auto& m : mi)
        if (m.id == lease_holder_ && m.alive && !lease_holder_.empty()) leader = lease_holder_;
    d_.view->set_members(std::move(mi), std::move(leader));
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, opts_.tick, [this] { return stop_.load(); });
  }
}

// A live member other than this node that lists `shard` as served (the last by id), or "".
std::string cluster_agent::other_server(uint32_t shard) {
  std::string holder;
  std::lock_guard<std::mutex> g(mu_);
  auto now = clk::now();
  for (auto& [id, o] : members_) {
    if (id == opts_.node_id || now - o.changed > opts_.dead_after) continue;
    if (o.served.count(shard)) holder = id;
  }
  return holder;
}

}  // namespace tessera
