#include "supervisor.h"

#include <spdlog/spdlog.h>

#include "cluster/shard_map.h"
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
  };

  for (auto& plan : ctx->defs->plans()) {
    for (uint32_t shard : ctx->shards->owned_by(ctx->node_id)) {
      shard_id id{plan.stream, plan.entity, shard};
      self->state.shards[id.name()].id = id;
      spawn_shard(id.name());
    }
  }
  spdlog::info("feature supervisor: {} shard actors ({} plans x {} shards)", self->state.shards.size(),
               ctx->defs->plans().size(), ctx->shards->owned_by(ctx->node_id).size());

  self->set_down_handler([self](caf::down_msg& m) {
    auto& s = self->state;
    auto it = s.by_addr.find(m.source);
    if (it == s.by_addr.end()) return;
    std::string name = it->second;
    s.by_addr.erase(it);
    auto& e = s.shards.at(name);
    e.actor = caf::actor();
    if (s.stopping || m.reason == caf::exit_reason::normal) return;
    s.ctx->metrics->shard_restarts++;
    ++e.total_restarts;
    auto now = std::chrono::steady_clock::now();
    e.restarts.push_back(now);
    while (!e.restarts.empty() && now - e.restarts.front() > s.ctx->opts.restart_window) e.restarts.pop_front();
    std::string why = self->system().render(m.reason);
    if (static_cast<int>(e.restarts.size()) > s.ctx->opts.shard_max_restarts) {
      e.failed = why;
      spdlog::error("shard {} failed {} times within {} s: {}; reported failed, retrying in {} s", name,
                    e.restarts.size(), s.ctx->opts.restart_window.count(), why, kCoolDown.count());
      self->delayed_send(self, kCoolDown, restart_atom::value, name);
      return;
    }
    auto backoff = std::chrono::milliseconds(100 << std::min<size_t>(e.restarts.size(), 6));
    spdlog::warn("shard {} crashed ({}); restarting in {} ms", name, why, backoff.count());
    self->delayed_send(self, backoff, restart_atom::value, name);
  });

  return {
      [=](restart_atom, const std::string& name) {
        auto& s = self->state;
        auto it = s.shards.find(name);
        if (s.stopping || it == s.shards.end() || it->second.actor) return;
        spawn_shard(name);
      },
      [=](read_atom, read_request& req) {
        auto& s = self->state;
        const view_def* v = s.ctx->defs->find_view(req.view);
        if (!v) {
          req.done(make_error("unknown view '" + req.view + "'"));
          return;
        }
        const kind_plan* plan = s.ctx->defs->find_plan(v->stream, v->entity);
        uint32_t view_idx = 0;
        while (plan->views[view_idx] != v) ++view_idx;
        // Group keys by shard, keeping each key's position in the request.
        std::map<uint32_t, std::pair<std::vector<std::string>, std::vector<size_t>>> by_shard;
        for (size_t i = 0; i < req.keys.size(); ++i) {
          uint32_t sh = shard_of(req.keys[i], s.ctx->opts.shard_count);
          by_shard[sh].first.push_back(req.keys[i]);
          by_shard[sh].second.push_back(i);
        }
        struct gather {
          read_request req;
          std::vector<feature_vector> out;
          size_t left;
          bool failed = false;
        };
        auto g = std::make_shared<gather>();
        g->out.resize(req.keys.size());
        g->left = by_shard.size();
        g->req = std::move(req);
        if (g->left == 0) {
          g->req.done(std::move(g->out));
          return;
        }
        for (auto& [sh, part] : by_shard) {
          shard_id id{v->stream, v->entity, sh};
          auto it = s.shards.find(id.name());
          if (it == s.shards.end() || !it->second.actor) {
            if (!g->failed) {
              g->failed = true;
              std::string why = it == s.shards.end() ? "not owned by this node" : "restarting";
              if (it != s.shards.end() && !it->second.failed.empty()) why = "failed: " + it->second.failed;
              g->req.done(make_error("shard " + id.name() + " is unavailable (" + why + "); retry"));
            }
            continue;
          }
          auto positions = part.second;
          self->request(it->second.actor, std::chrono::seconds(10), read_atom::value, view_idx, part.first, g->req.as_of)
              .then(
                  [g, positions](std::vector<feature_vector>& vecs) {
                    for (size_t k = 0; k < vecs.size() && k < positions.size(); ++k) g->out[positions[k]] = std::move(vecs[k]);
                    if (--g->left == 0 && !g->failed) g->req.done(std::move(g->out));
                  },
                  [self, g, id](caf::error& err) {
                    if (g->failed) return;
                    g->failed = true;
                    std::string msg = self->system().render(err);
                    // CAF renders context as e.g. error(…, "text"): keep the text for the caller.
                    auto q1 = msg.find('"'), q2 = msg.rfind('"');
                    if (q1 != std::string::npos && q2 > q1) msg = msg.substr(q1 + 1, q2 - q1 - 1);
                    g->req.done(make_error(msg));
                  });
        }
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
      [=](crash_atom, const std::string& stream, const std::string& kind, const std::string& key) {
        shard_id id{stream, kind, shard_of(key, self->state.ctx->opts.shard_count)};
        auto it = self->state.shards.find(id.name());
        if (it != self->state.shards.end() && it->second.actor) self->send(it->second.actor, crash_atom::value, key);
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
