#include "supervisor.h"

#include <spdlog/spdlog.h>

#include "hash.h"
#include "shard_actor.h"

namespace tessera {
namespace {
constexpr auto kCoolDown = std::chrono::seconds(30);
}

caf::behavior feature_supervisor(caf::stateful_actor<supervisor_state>* self, context_ptr ctx) {
  self->state.ctx = ctx;

  auto spawn_shard = [self](const std::string& name) {
    auto& e = self->state.shards.at(name);
    e.actor = self->spawn<caf::monitored>(shard_actor, self->state.ctx, e.id);
    self->state.by_addr[e.actor.address()] = name;
    self->state.ctx->directory->set(name, e.actor);
  };

  // A released shard's actor is gone: forget it, and answer the release once all are.
  auto released_one = [self](const std::string& name) {
    auto& s = self->state;
    auto it = s.shards.find(name);
    if (it == s.shards.end()) return;
    uint32_t shard = it->second.id.shard;
    s.shards.erase(it);
    auto r = s.releases.find(shard);
    if (r != s.releases.end() && --r->second.left == 0) {
      r->second.promise.deliver(true);
      s.releases.erase(r);
    }
  };

  self->set_down_handler([self, released_one](caf::down_msg& m) {
    auto& s = self->state;
    auto it = s.by_addr.find(m.source);
    if (it == s.by_addr.end()) return;
    std::string name = it->second;
    s.by_addr.erase(it);
    auto& e = s.shards.at(name);
    e.actor = caf::actor();
    if (e.releasing) {
      s.ctx->directory->set(name, caf::actor(), "moved to another node");
      released_one(name);
      return;
    }
    s.ctx->directory->set(name, caf::actor(), s.stopping ? "node stopping" : "restarting");
    if (s.stopping || m.reason == caf::exit_reason::normal) return;
    s.ctx->metrics->shard_restarts++;
    ++e.total_restarts;
    auto now = std::chrono::steady_clock::now();
    e.restarts.push_back(now);
    while (!e.restarts.empty() && now - e.restarts.front() > s.ctx->opts.restart_window)
      e.restarts.pop_front();
    std::string why = self->system().render(m.reason);
    if (static_cast<int>(e.restarts.size()) > s.ctx->opts.shard_max_restarts) {
      e.failed = why;
      s.ctx->directory->set(name, caf::actor(), "failed: " + why);
      spdlog::error("shard {} failed {} times within {} s: {}; reported failed, retrying in {} s",
                    name, e.restarts.size(), s.ctx->opts.restart_window.count(), why,
                    kCoolDown.count());
      self->delayed_send(self, kCoolDown, restart_atom::value, name);
      return;
    }
    auto backoff = std::chrono::milliseconds(100 << std::min<size_t>(e.restarts.size(), 6));
    spdlog::warn("shard {} crashed ({}); restarting in {} ms", name, why, backoff.count());
    self->delayed_send(self, backoff, restart_atom::value, name);
  });

  return {
      [=](own_atom, const std::vector<uint32_t>& shards) -> std::vector<uint32_t> {
        auto& s = self->state;
        std::vector<uint32_t> started;
        if (s.stopping) return started;
        for (uint32_t shard : shards) {
          bool busy = false;  // a slice still stopping from an earlier release: retried later
          for (auto& plan : s.ctx->defs->plans()) {
            auto it = s.shards.find(shard_id{plan.stream, plan.entity, shard}.name());
            busy = busy || (it != s.shards.end() && it->second.releasing);
          }
          if (busy) continue;
          for (auto& plan : s.ctx->defs->plans()) {
            shard_id id{plan.stream, plan.entity, shard};
            if (s.shards.count(id.name())) continue;
            s.shards[id.name()].id = id;
            spawn_shard(id.name());
          }
          started.push_back(shard);
        }
        return started;
      },
      [=](release_atom, uint32_t shard) -> caf::result<bool> {
        auto& s = self->state;
        auto rp = self->make_response_promise<bool>();
        size_t left = 0;
        std::vector<std::string> idle;
        for (auto& [name, e] : s.shards) {
          if (e.id.shard != shard || e.releasing) continue;
          e.releasing = true;
          if (e.actor) {
            ++left;
            s.ctx->directory->set(name, caf::actor(), "moving to another node");
            self->send_exit(e.actor, caf::exit_reason::user_shutdown);
          } else {
            idle.push_back(name);  // waiting for a restart: nothing runs
          }
        }
        for (auto& name : idle) {
          s.ctx->directory->set(name, caf::actor(), "moved to another node");
          s.shards.erase(name);
        }
        if (left == 0) {
          rp.deliver(true);
          return rp;
        }
        auto& r = s.releases[shard];
        r.promise = rp;
        r.left += left;
        return rp;
      },
      [=](restart_atom, const std::string& name) {
        auto& s = self->state;
        auto it = s.shards.find(name);
        if (s.stopping || it == s.shards.end() || it->second.actor || it->second.releasing) return;
        spawn_shard(name);
      },
      [=](status_atom, status_request& req) {
        auto& s = self->state;
        struct gather {
          status_request req;
          std::vector<shard_status> out;
          size_t left = 0;
        };
        auto g = std::make_shared<gather>();
        g->req = std::move(req);
        for (auto& [name, e] : s.shards) {
          if (!e.actor) {
            shard_status st;
            st.id = e.id;
            st.meta = s.ctx->db->load_meta(e.id);
            st.restarts = e.total_restarts;
            st.failed = e.failed.empty() ? "restarting" : e.failed;
            g->out.push_back(st);
            continue;
          }
          ++g->left;
          uint32_t restarts = e.total_restarts;
          std::string failed = e.failed;
          self->request(e.actor, std::chrono::seconds(5), status_atom::value)
              .then(
                  [g, restarts](shard_status& st) {
                    st.restarts = restarts;
                    g->out.push_back(std::move(st));
                    if (--g->left == 0) g->req.done(std::move(g->out));
                  },
                  [g, id = e.id, restarts](caf::error&) {
                    shard_status st;
                    st.id = id;
                    st.restarts = restarts;
                    st.failed = "not answering";
                    g->out.push_back(std::move(st));
                    if (--g->left == 0) g->req.done(std::move(g->out));
                  });
        }
        if (g->left == 0) g->req.done(std::move(g->out));
      },
      [=](crash_atom, const std::string& stream, const std::string& kind,
          const std::string& key) -> caf::result<bool> {
        shard_id id{stream, kind, shard_of(key, self->state.ctx->opts.shard_count)};
        auto it = self->state.shards.find(id.name());
        if (it == self->state.shards.end() || !it->second.actor) return false;
        auto rp = self->make_response_promise<bool>();
        self->request(it->second.actor, std::chrono::seconds(30), crash_atom::value, key)
            .then([rp](bool ok) mutable { rp.deliver(ok); },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
      [=](stop_atom) {
        auto& s = self->state;
        s.stopping = true;
        for (auto& [name, e] : s.shards)
          if (e.actor) self->send_exit(e.actor, caf::exit_reason::user_shutdown);
        self->quit();
      },
  };
}

}  // namespace tessera
