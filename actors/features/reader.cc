#include "reader.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <map>
#include <mutex>
#include <tuple>

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
std::string node_points_subject(const std::string& node_id) {
  return "tsr.node." + node_id + ".points";
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

// Collects read_points' answers, one slot per lookup.
struct points_gather {
  std::mutex mu;
  std::vector<result<feature_vector>> out;
  size_t left = 0;
  points_done_fn done;

  void finish_one() {  // with mu held
    if (--left == 0) done(std::move(out));
  }
  void fail(const std::vector<uint32_t>& positions, const error& e) {  // with mu held
    for (uint32_t p : positions) out[p] = e;
  }
};

std::string flat(capnp::MessageBuilder& mb) {
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// The read time of a read of `v` asking for `as_of` (0: the stream's clock `clock`; < 0: that
// long before it), or why it has none. An explicit time at or before the clock less the view's
// as_of_horizon is refused here; a reading of the clock (`at_clock`) is left for the shard to
// judge against what it has pruned (see read_at).
result<int64_t> resolve_as_of(const features_context& ctx, const view_def* v, int64_t as_of,
                              bool at_clock, int64_t clock) {
  if (as_of < 0) {  // that long before the stream's clock
    if (clock == 0)
      return make_error("as-of " + format_duration(-as_of) + " before the clock of stream " +
                            v->stream + ", which has no event yet",
                        errc::invalid);
    as_of += clock;
  }
  if (as_of == 0) return clock;
  if (!at_clock && clock != 0 && as_of <= clock - v->as_of_horizon_us)
    return make_error("as-of " + format_timestamp(as_of) +
                          " is before the retained window of view " + v->qualified() +
                          " (earliest " + format_timestamp(clock - v->as_of_horizon_us + 1) +
                          ", the stream's " + clock_mode_name(ctx.clocks->mode(v->stream)) +
                          " clock " + format_timestamp(clock) + " less its as_of_horizon)",
                      errc::invalid);
  return as_of;
}

// Why shard `sh` of v's kind is not read here: it is moving (`r` unavailable), or, when the read
// may not be forwarded, another node serves it.
error not_here(const features_context& ctx, const view_def* v, uint32_t sh, const route& r) {
  if (r.kind == route::unavailable)
    return make_error(v->stream + "/" + v->entity + ": " + r.why, errc::retryable);
  return make_error(v->stream + "/" + v->entity + ": shard " + std::to_string(sh) +
                        " is not served by node " + ctx.cluster->node_id() + " (owner " + r.owner +
                        "); retry",
                    errc::retryable);
}

route route_here(const features_context& ctx, uint32_t sh) {
  return ctx.cluster ? ctx.cluster->route_of(sh) : route{route::local, {}, {}};
}

// A shard_read of `keys` to this node's actor of shard `sh` of v's kind, answered once through
// `answer` (see answer_once); an error when the shard has no actor here now.
struct local_send {
  caf::actor shard;
  shard_read req;
};
result<local_send> shard_request(const features_context& ctx, const view_def* v, uint32_t sh,
                                 std::vector<std::string> keys, int64_t as_of, bool at_clock,
                                 std::function<void(result<std::vector<feature_vector>>)> answer,
                                 bool settled = false) {
  shard_id id{v->stream, v->entity, sh};
  std::string why;
  caf::actor a = ctx.directory->get(id.name(), why);
  if (!a)
    return make_error("shard " + id.name() + " is unavailable (" + why + "); retry",
                      errc::retryable);
  const kind_plan* plan = ctx.defs->find_plan(v->stream, v->entity);
  local_send out{std::move(a), {}};
  while (plan->views[out.req.view] != v) ++out.req.view;
  out.req.keys = std::move(keys);
  out.req.as_of = as_of;
  out.req.at_clock = at_clock;
  out.req.settled = settled;
  auto once = std::make_shared<answer_once>();
  once->fn = std::move(answer);
  out.req.done = [once](result<std::vector<feature_vector>> res) { (*once)(std::move(res)); };
  return out;
}

// The error of a request to node `owner` that got no answer.
error owner_silent(const std::string& owner, const result<std::string>& rep) {
  return make_error("node " + owner + " did not answer (" + rep.error_message() + "); retry",
                    errc::retryable);
}
// An error node `owner` answered, with its code (`retryable`: a node that predates codes).
error owner_error(const std::string& owner, capnp::Text::Reader text, uint8_t code,
                  bool retryable = false) {
  errc c = static_cast<errc>(code);
  if (c == errc::internal && retryable) c = errc::retryable;
  return make_error(std::string(text.cStr()) + " (at node " + owner + ")", c);
}

error unknown_view(const std::string& view) {
  return make_error("unknown view '" + view + "' (the nodes run different definitions?)",
                    errc::not_found);
}

std::string encode_forward(const std::string& view, const std::vector<std::string>& keys,
                           int64_t as_of, bool at_clock) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<wire::ForwardedRead>();
  r.setAtClock(at_clock);
  r.setView(view);
  auto l = r.initEntities(static_cast<unsigned>(keys.size()));
  for (size_t i = 0; i < keys.size(); ++i) l.set(static_cast<unsigned>(i), keys[i]);
  r.setAsOf(as_of);
  return flat(mb);
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
  return flat(mb);
}

// A PointRead of the points at `positions` (Point: feature_reader::timed_point).
template <typename Point>
std::string encode_points(const std::vector<Point>& points,
                          const std::vector<uint32_t>& positions) {
  capnp::MallocMessageBuilder mb;
  auto l = mb.initRoot<wire::PointRead>().initItems(static_cast<unsigned>(positions.size()));
  for (unsigned k = 0; k < positions.size(); ++k) {
    const auto& p = points[positions[k]];
    l[k].setView(p.view->qualified());
    l[k].setEntity(p.key);
    l[k].setAsOf(p.as_of);
    l[k].setAtClock(p.at_clock);
    l[k].setSettled(p.settled);
  }
  return flat(mb);
}

// `answers` empty with `failure`: the request as a whole was refused.
std::string encode_points_reply(const std::vector<result<feature_vector>>& answers,
                                const std::map<std::string, int64_t>& watermarks,
                                const error* failure = nullptr) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<wire::PointReadReply>();
  auto al = r.initAnswers(static_cast<unsigned>(answers.size()));
  for (unsigned k = 0; k < answers.size(); ++k) {
    if (answers[k]) {
      write_vector(al[k].initVector(), *answers[k]);
    } else {
      al[k].setError(answers[k].error_message());
      al[k].setCode(static_cast<uint8_t>(answers[k].error_code()));
    }
  }
  auto wl = r.initWatermarks(static_cast<unsigned>(watermarks.size()));
  unsigned k = 0;
  for (auto& [stream, wm] : watermarks) {
    wl[k].setStream(stream);
    wl[k++].setWatermark(wm);
  }
  if (failure) {
    r.setError(failure->message);
    r.setCode(static_cast<uint8_t>(failure->code));
  }
  return flat(mb);
}

}  // namespace

void feature_reader::read(const view_def* v, std::vector<std::string> keys, int64_t as_of,
                          bool forward, done_fn done) const {
  read_at(v, std::move(keys), as_of, as_of == 0, forward, std::move(done));
}

void feature_reader::read_at(const view_def* v, std::vector<std::string> keys, int64_t as_of,
                             bool at_clock, bool forward, done_fn done) const {
  const std::string qualified = v->qualified();
  // One read time for the whole read, on every shard and node: the stream's clock unless the
  // caller named one (a forwarded part always names it).
  const int64_t clock = ctx_->clocks ? ctx_->clocks->read_time(v->stream) : 0;
  if (auto t = resolve_as_of(*ctx_, v, as_of, at_clock, clock); !t) {
    done(t.failure());
    return;
  } else {
    as_of = *t;
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
  std::vector<local_send> locals;
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<uint32_t>>>
      remote;  // by owner
  for (auto& [sh, part] : parts) {
    route r = route_here(*ctx_, sh);
    if (r.kind == route::unavailable || (r.kind == route::remote && !forward)) {
      const error e = not_here(*ctx_, v, sh, r);
      g->fail(e.message, e.code);
      continue;
    }
    if (r.kind == route::remote) {
      auto& rp = remote[r.owner];
      for (size_t k = 0; k < part.first.size(); ++k) {
        rp.first.push_back(part.first[k]);
        rp.second.push_back(part.second[k]);
      }
      continue;
    }
    std::vector<std::string> miss;
    std::vector<uint32_t> miss_pos;
    for (size_t k = 0; k < part.first.size(); ++k) {
      if (as_of != 0)
        if (auto hit = ctx_->cache->get(qualified, sh, part.first[k], as_of)) {
          g->out[part.second[k]] = std::move(*hit);
          continue;
        }
      miss.push_back(std::move(part.first[k]));
      miss_pos.push_back(part.second[k]);
    }
    if (miss.empty()) continue;
    auto send = shard_request(
        *ctx_, v, sh, std::move(miss), as_of, at_clock,
        [g, positions = std::move(miss_pos)](result<std::vector<feature_vector>> res) {
          std::lock_guard<std::mutex> l(g->mu);
          if (!res)
            g->fail(res.error_message(), res.error_code());
          else
            for (size_t k = 0; k < res->size() && k < positions.size(); ++k)
              g->out[positions[k]] = std::move((*res)[k]);
          g->finish_one();
        });
    if (!send) {
      g->fail(send.error_message(), send.error_code());
      continue;
    }
    locals.push_back(std::move(*send));
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
            const error e = owner_silent(owner, rep);
            g->fail(e.message, e.code);
          } else {
            bool ok = with_message<wire::ForwardedReadReply>(
                *rep, [&](wire::ForwardedReadReply::Reader r) {
                  if (clocks && r.getClock() > 0) clocks->advance_remote(stream, r.getClock());
                  if (r.getError().size()) {
                    const error e = owner_error(owner, r.getError(), r.getCode(), r.getRetryable());
                    g->fail(e.message, e.code);
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

void feature_reader::read_points(std::vector<point_lookup> lookups, int64_t timeout_ms,
                                 points_done_fn done) const {
  std::vector<timed_point> points(lookups.size());
  for (size_t i = 0; i < lookups.size(); ++i) {
    points[i].view = lookups[i].view;
    points[i].key = std::move(lookups[i].key);
    points[i].as_of = lookups[i].as_of;
    points[i].at_clock = lookups[i].as_of == 0;
    // Only a replay-clock stream's shard holds a settled read (shard_reads.h); on a live one
    // it answers at once, so such a lookup may be served from the vector cache as any other.
    const stream_def* sd =
        lookups[i].view ? ctx_->defs->find_stream(lookups[i].view->stream) : nullptr;
    points[i].settled = lookups[i].settled && sd && sd->clock == clock_mode::replay;
  }
  read_points_at(std::move(points), /*forward=*/true, timeout_ms, std::move(done));
}

void feature_reader::read_points_at(std::vector<timed_point> points, bool forward,
                                    int64_t timeout_ms, points_done_fn done) const {
  auto g = std::make_shared<points_gather>();
  g->out.assign(points.size(), make_error("not answered", errc::internal));
  g->done = std::move(done);
  // Phase 1, nothing sent yet (as in read_at): resolve each point's read time (the stream's
  // clock read once per stream), route it, answer cache hits, and group the rest.
  std::map<std::string, int64_t> clocks;  // by stream
  using group_key = std::tuple<uint32_t, const view_def*, int64_t, bool,
                               bool>;  // shard, view, t, at_clock, settled
  std::map<group_key, std::pair<std::vector<std::string>, std::vector<uint32_t>>> groups;
  std::map<std::string, std::vector<uint32_t>> remote;  // positions by owner
  for (uint32_t i = 0; i < points.size(); ++i) {
    timed_point& p = points[i];
    if (p.refused) {
      g->out[i] = *p.refused;
      continue;
    }
    const view_def* v = p.view;
    auto c = clocks.find(v->stream);
    if (c == clocks.end())
      c = clocks.emplace(v->stream, ctx_->clocks ? ctx_->clocks->read_time(v->stream) : 0).first;
    auto t = resolve_as_of(*ctx_, v, p.as_of, p.at_clock, c->second);
    if (!t) {
      g->out[i] = t.failure();
      continue;
    }
    p.as_of = *t;
    const uint32_t sh = shard_of(p.key, ctx_->opts.shard_count);
    const route r = route_here(*ctx_, sh);
    if (r.kind == route::remote && forward) {
      remote[r.owner].push_back(i);
    } else if (r.kind != route::local) {
      g->out[i] = not_here(*ctx_, v, sh, r);
    } else if (auto hit = p.as_of != 0 && !p.settled
                              ? ctx_->cache->get(v->qualified(), sh, p.key, p.as_of)
                              : std::nullopt) {
      g->out[i] = std::move(*hit);
    } else {
      auto& grp = groups[group_key{sh, v, p.as_of, p.at_clock, p.settled}];
      grp.first.push_back(std::move(p.key));
      grp.second.push_back(i);
    }
  }
  std::vector<local_send> locals;
  for (auto& [k, grp] : groups) {
    auto& [sh, v, as_of, at_clock, settled] = k;
    auto send = shard_request(
        *ctx_, v, sh, std::move(grp.first), as_of, at_clock,
        [g, positions = grp.second](result<std::vector<feature_vector>> res) {
          std::lock_guard<std::mutex> l(g->mu);
          if (!res) {
            g->fail(positions, res.failure());
          } else if (res->size() != positions.size()) {
            g->fail(positions,
                    make_error("a shard answered " + std::to_string(res->size()) + " vectors for " +
                                   std::to_string(positions.size()) + " entities",
                               errc::internal));
          } else {
            for (size_t j = 0; j < positions.size(); ++j)
              g->out[positions[j]] = std::move((*res)[j]);
          }
          g->finish_one();
        },
        settled);
    if (!send) {
      g->fail(grp.second, send.failure());
      continue;
    }
    locals.push_back(std::move(*send));
  }
  g->left = locals.size() + remote.size() + 1;  // +1: released once everything is sent

  // Phase 2: send. Answers may arrive (even on this thread) from here on.
  for (auto& ls : locals) caf::anon_send(ls.shard, read_atom::value, std::move(ls.req));
  for (auto& [owner, positions] : remote) {
    std::string req = encode_points(points, positions);
    points_requests_->fetch_add(1, std::memory_order_relaxed);
    nats_->request(
        node_points_subject(owner), req, timeout_ms,
        [g, owner = owner, positions = std::move(positions),
         clocks = ctx_->clocks](result<std::string> rep) {
          std::lock_guard<std::mutex> l(g->mu);
          if (!rep) {
            g->fail(positions, owner_silent(owner, rep));
          } else {
            bool ok = with_message<wire::PointReadReply>(*rep, [&](wire::PointReadReply::Reader r) {
              if (clocks)
                for (auto w : r.getWatermarks())
                  if (w.getWatermark() > 0)
                    clocks->advance_remote(w.getStream().cStr(), w.getWatermark());
              auto al = r.getAnswers();
              if (r.getError().size()) {
                g->fail(positions, owner_error(owner, r.getError(), r.getCode()));
              } else if (al.size() != positions.size()) {
                g->fail(positions,
                        make_error("node " + owner + " answered " + std::to_string(al.size()) +
                                       " lookups of " + std::to_string(positions.size()),
                                   errc::internal));
              } else {
                for (unsigned k = 0; k < al.size(); ++k) {
                  if (al[k].getError().size())
                    g->out[positions[k]] = owner_error(owner, al[k].getError(), al[k].getCode());
                  else
                    g->out[positions[k]] = read_vector(al[k].getVector());
                }
              }
            });
            if (!ok)
              g->fail(positions,
                      make_error("node " + owner + " sent a malformed reply", errc::internal));
          }
          g->finish_one();
        });
  }
  std::lock_guard<std::mutex> l(g->mu);
  g->finish_one();
}

void feature_reader::serve_points(const std::string& data, const std::string& reply_subject) const {
  std::vector<timed_point> points;
  std::map<std::string, int64_t> watermarks;  // of the streams read, as this node knows them
  bool ok = with_message<wire::PointRead>(data, [&](wire::PointRead::Reader r) {
    for (auto it : r.getItems()) {
      timed_point p;
      const std::string view = it.getView();
      p.view = ctx_->defs->find_view(view);
      p.key = it.getEntity();
      p.as_of = it.getAsOf();
      p.at_clock = it.getAtClock() || p.as_of == 0;
      p.settled = it.getSettled();
      if (!p.view)
        p.refused = unknown_view(view);
      else if (!key_is_valid(p.key))
        p.refused = make_error("invalid entity key in a forwarded read", errc::invalid);
      else if (ctx_->clocks)
        watermarks.emplace(p.view->stream, ctx_->clocks->watermark(p.view->stream));
      points.push_back(std::move(p));
    }
  });
  if (!ok) {
    const error e = make_error("malformed PointRead", errc::invalid);
    nats_->respond(reply_subject, encode_points_reply({}, {}, &e));
    return;
  }
  auto self = *this;  // the reader is small and immutable
  read_points_at(std::move(points), /*forward=*/false, 0,
                 [self, reply_subject,
                  watermarks = std::move(watermarks)](std::vector<result<feature_vector>> answers) {
                   self.nats_->respond(reply_subject, encode_points_reply(answers, watermarks));
                 });
}

status feature_reader::serve() const {
  if (!ctx_->cluster) return ok_status();
  auto self = *this;  // the reader is small and immutable: a copy lives in the subscription
  if (auto st = nats_->serve(node_points_subject(ctx_->cluster->node_id()),
                             [self](std::string data, std::string reply_subject) {
                               self.serve_points(data, reply_subject);
                             });
      !st)
    return st;
  return nats_->serve(
      node_read_subject(ctx_->cluster->node_id()),
      [self](std::string data, std::string reply_subject) {
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
        if (!v) return respond(unknown_view(view));
        for (auto& k : keys)
          if (!key_is_valid(k))
            return respond(make_error("invalid entity key in a forwarded read", errc::invalid));
        self.read_at(v, std::move(keys), as_of, at_clock || as_of == 0, /*forward=*/false, respond);
      });
}

}  // namespace tessera
