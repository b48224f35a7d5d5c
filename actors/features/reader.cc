#include "reader.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <map>
#include <mutex>

#include "actors/features/messages.h"
#include "actors/features/vector_cache.h"
#include "bus.h"
#include "cluster/cluster_view.h"
#include "codec.h"
#include "hash.h"
#include "schemas/node.capnp.h"
#include "time_util.h"

namespace tessera {

std::string node_read_subject(const std::string& node_id) {
  return "tsr.node." + node_id + ".read";
}

namespace {

// Collects the answers of every group into one vector in request order.
struct gather {
  std::mutex mu;
  std::vector<feature_vector> out;
  size_t left = 0;
  std::string error;
  errc code = errc::internal;
  feature_reader::done_fn done;

  void finish_one() {  // with mu held
    if (--left == 0) {
      if (error.empty())
        done(std::move(out));
      else
        done(make_error(error, code));
    }
  }
  // The answer's error is the first one, with its code; the call is retryable only if every
  // failed group's error is.
  void fail(const std::string& e, errc c) {  // with mu held
    if (error.empty()) {
      error = e;
      code = c;
    } else if (is_retryable(code) && !is_retryable(c)) {
      code = c;
    }
  }
};

// Answers once: with the result, or, if the request is dropped unanswered (a shard actor that
// stops while the read is in its mailbox, e.g. during a handoff), with a retryable error.
struct answer_once {
  std::function<void(result<std::vector<feature_vector>>)> fn;
  bool done = false;
  void operator()(result<std::vector<feature_vector>> r) {
    if (done) return;
    done = true;
    fn(std::move(r));
  }
  ~answer_once() {
    if (!done)
      fn(make_error("the shard stopped before answering (it is moving between nodes); retry",
                    errc::retryable));
  }
};

std::string encode_forward(const std::string& view, const std::vector<std::string>& keys,
                           int64_t as_of, bool at_clock) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<wire::ForwardedRead>();
  r.setAtClock(at_clock);
  r.setView(view);
  auto l = r.initEntities(static_cast<unsigned>(keys.size()));
  for (size_t i = 0; i < keys.size(); ++i) l.set(static_cast<unsigned>(i), keys[i]);
  r.setAsOf(as_of);
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::string encode_reply(const result<std::vector<feature_vector>>& res, int64_t clock) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<wire::ForwardedReadReply>();
  r.setClock(clock);
  if (res) {
    auto l = r.initVectors(static_cast<unsigned>(res->size()));
    for (size_t i = 0; i < res->size(); ++i) write_vector(l[static_cast<unsigned>(i)], (*res)[i]);
  } else {
    r.setError(res.error_message());
    r.setRetryable(is_retryable(res.error_code()));  // for nodes that predate `code`
    r.setCode(static_cast<uint8_t>(res.error_code()));
  }
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

}  // namespace

void feature_reader::read(const view_def* v, std::vector<std::string> keys, int64_t as_of,
                          bool forward, done_fn done) const {
  read_at(v, std::move(keys), as_of, as_of == 0, forward, std::move(done));
}

void feature_reader::read_at(const view_def* v, std::vector<std::string> keys, int64_t as_of,
                             bool at_clock, bool forward, done_fn done) const {
  const kind_plan* plan = ctx_->defs->find_plan(v->stream, v->entity);
  uint32_t view_idx = 0;
  while (plan->views[view_idx] != v) ++view_idx;
  const std::string qualified = v->qualified();
  // One read time for the whole read, on every shard and node: the stream's clock unless the
  // caller named one (a forwarded part always names it).
  const int64_t clock = ctx_->clocks ? ctx_->clocks->read_time(v->stream) : 0;
  if (as_of < 0) {  // that long before the stream's clock
    if (clock == 0) {
      done(make_error("as-of " + format_duration(-as_of) + " before the clock of stream " +
                          v->stream + ", which has no event yet",
                      errc::invalid));
      return;
    }
    as_of += clock;
  }
  if (as_of == 0) {
    as_of = clock;
  } else if (!at_clock && clock != 0 && as_of <= clock - v->as_of_horizon_us) {
    done(make_error("as-of " + format_timestamp(as_of) + " is before the retained window of view " +
                        v->qualified() + " (earliest " +
                        format_timestamp(clock - v->as_of_horizon_us + 1) + ", the stream's " +
                        clock_mode_name(ctx_->clocks->mode(v->stream)) + " clock " +
                        format_timestamp(clock) + " less its as_of_horizon)",
                    errc::invalid));
    return;
  }

  auto g = std::make_shared<gather>();
  g->out.resize(keys.size());
  g->done = std::move(done);
  // Group by shard, remembering each key's position; answer cache hits at once.
  std::map<uint32_t, std::pair<std::vector<std::string>, std::vector<uint32_t>>> parts;
  for (uint32_t i = 0; i < keys.size(); ++i) {
    uint32_t sh = shard_of(keys[i], ctx_->opts.shard_count);
    auto& part = parts[sh];
    part.first.push_back(std::move(keys[i]));
    part.second.push_back(i);
  }
  // Phase 1, nothing sent yet: route every group, answer cache hits, and collect what to send,
  // so that the count of outstanding answers is final before any can arrive.
  struct local_send {
    caf::actor shard;
    shard_read req;
  };
  std::vector<local_send> locals;
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<uint32_t>>>
      remote;  // by owner
  for (auto& [sh, part] : parts) {
    route r = ctx_->cluster ? ctx_->cluster->route_of(sh) : route{route::local, {}, {}};
    if (r.kind == route::unavailable) {
      g->fail(v->stream + "/" + v->entity + ": " + r.why, errc::retryable);
      continue;
    }
    if (r.kind == route::remote) {
      if (!forward) {
        g->fail(v->stream + "/" + v->entity + ": shard " + std::to_string(sh) +
                    " is not served by node " + ctx_->cluster->node_id() + " (owner " + r.owner +
                    "); retry",
                errc::retryable);
        continue;
      }
      auto& rp = remote[r.owner];
      for (size_t k = 0; k < part.first.size(); ++k) {
        rp.first.push_back(part.first[k]);
        rp.second.push_back(part.second[k]);
      }
      continue;
    }
    shard_id id{v->stream, v->entity, sh};
    shard_read req;
    req.view = view_idx;
    req.as_of = as_of;
    req.at_clock = at_clock;
    std::vector<uint32_t> miss_pos;
    for (size_t k = 0; k < part.first.size(); ++k) {
      if (as_of != 0)
        if (auto hit = ctx_->cache->get(qualified, sh, part.first[k], as_of)) {
          g->out[part.second[k]] = std::move(*hit);
          continue;
        }
      req.keys.push_back(std::move(part.first[k]));
      miss_pos.push_back(part.second[k]);
    }
    if (req.keys.empty()) continue;
    std::string why;
    caf::actor a = ctx_->directory->get(id.name(), why);
    if (!a) {
      g->fail("shard " + id.name() + " is unavailable (" + why + "); retry", errc::retryable);
      continue;
    }
    auto once = std::make_shared<answer_once>();
    once->fn = [g, positions = std::move(miss_pos)](result<std::vector<feature_vector>> res) {
      std::lock_guard<std::mutex> l(g->mu);
      if (!res)
        g->fail(res.error_message(), res.error_code());
      else
        for (size_t k = 0; k < res->size() && k < positions.size(); ++k)
          g->out[positions[k]] = std::move((*res)[k]);
      g->finish_one();
    };
    req.done = [once](result<std::vector<feature_vector>> res) { (*once)(std::move(res)); };
    locals.push_back({std::move(a), std::move(req)});
  }
  if (!g->error.empty()) {
    g->left = 1;
    std::lock_guard<std::mutex> l(g->mu);
    g->finish_one();
    return;
  }
  g->left = locals.size() + remote.size() + 1;  // +1: released once everything is sent

  // Phase 2: send. Answers may arrive (even on this thread) from here on.
  for (auto& ls : locals) caf::anon_send(ls.shard, read_atom::value, std::move(ls.req));
  for (auto& [owner, part] : remote) {
    std::string req = encode_forward(qualified, part.first, as_of, at_clock);
    nats_->request(
        node_read_subject(owner), req, forward_timeout_ms_,
        [g, owner = owner, positions = std::move(part.second), clocks = ctx_->clocks,
         stream = v->stream](result<std::string> rep) {
          std::lock_guard<std::mutex> l(g->mu);
          if (!rep) {
            g->fail("node " + owner + " did not answer (" + rep.error_message() + "); retry",
                    errc::retryable);
          } else {
            bool ok = with_message<wire::ForwardedReadReply>(
                *rep, [&](wire::ForwardedReadReply::Reader r) {
                  if (clocks && r.getClock() > 0) clocks->advance_remote(stream, r.getClock());
                  if (r.getError().size()) {
                    errc c = static_cast<errc>(r.getCode());
                    if (c == errc::internal && r.getRetryable()) c = errc::retryable;
                    g->fail(std::string(r.getError().cStr()) + " (at node " + owner + ")", c);
                    return;
                  }
                  auto vl = r.getVectors();
                  if (vl.size() != positions.size()) {
                    g->fail("node " + owner + " answered " + std::to_string(vl.size()) +
                                " vectors for " + std::to_string(positions.size()) + " entities",
                            errc::internal);
                    return;
                  }
                  for (size_t k = 0; k < vl.size(); ++k)
                    g->out[positions[k]] = read_vector(vl[static_cast<unsigned>(k)]);
                });
            if (!ok) g->fail("node " + owner + " sent a malformed reply", errc::internal);
          }
          g->finish_one();
        });
  }
  std::lock_guard<std::mutex> l(g->mu);
  g->finish_one();
}

status feature_reader::serve() const {
  if (!ctx_->cluster) return ok_status();
  auto self = *this;  // the reader is small and immutable: a copy lives in the subscription
  return nats_->serve(node_read_subject(ctx_->cluster->node_id()), [self](
                                                                       std::string data,
                                                                       std::string reply_subject) {
    std::string view;
    std::vector<std::string> keys;
    int64_t as_of = 0;
    bool at_clock = false;
    bool ok = with_message<wire::ForwardedRead>(data, [&](wire::ForwardedRead::Reader r) {
      view = r.getView();
      for (auto e : r.getEntities()) keys.emplace_back(e.cStr(), e.size());
      as_of = r.getAsOf();
      at_clock = r.getAtClock();
    });
    const view_def* v = ok ? self.ctx_->defs->find_view(view) : nullptr;
    const int64_t clock = v && self.ctx_->clocks ? self.ctx_->clocks->watermark(v->stream) : 0;
    auto respond = [self, reply_subject, clock](result<std::vector<feature_vector>> res) {
      self.nats_->respond(reply_subject, encode_reply(res, clock));
    };
    if (!ok) return respond(make_error("malformed ForwardedRead", errc::invalid));
    if (!v)
      return respond(make_error(
          "unknown view '" + view + "' (the nodes run different definitions?)", errc::not_found));
    for (auto& k : keys)
      if (!key_is_valid(k))
        return respond(make_error("invalid entity key in a forwarded read", errc::invalid));
    self.read_at(v, std::move(keys), as_of, at_clock || as_of == 0, /*forward=*/false, respond);
  });
}

}  // namespace tessera
