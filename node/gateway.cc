#include "gateway.h"

#include <capnp/ez-rpc.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/timer.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "actors/features/messages.h"
#include "actors/features/vector_cache.h"
#include "actors/training/dataset.h"
#include "actors/training/trainer.h"
#include "actors/training/training_service.h"
#include "cluster/cluster_view.h"
#include "cluster/registry.h"
#include "codec.h"
#include "hash.h"
#include "reader.h"
#include "stream_clock.h"
#include "time_util.h"

namespace tessera {

struct gateway::stop_signal {
  std::mutex mu;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller;
  bool stop_requested = false;
};

namespace {

constexpr size_t kEventsPerMessage = 1000;

[[noreturn]] void fail(const std::string& msg) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str(msg.c_str())));
}
[[noreturn]] void overloaded(const std::string& msg) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::OVERLOADED, __FILE__, __LINE__, kj::str(msg.c_str())));
}

template <typename T>
struct xthread {
  kj::Own<kj::CrossThreadPromiseFulfiller<T>> f;
};

class gateway_impl final : public wire::Gateway::Server {
 public:
  gateway_impl(std::shared_ptr<const features_context> ctx, caf::actor sup, gateway_options opts)
      : ctx_(ctx),
        sup_(std::move(sup)),
        opts_(std::move(opts)),
        started_(std::chrono::steady_clock::now()),
        reader_(ctx, ctx->nats) {}

  kj::Promise<void> ingest(IngestContext call) override {
    ctx_->metrics->ingest_calls++;
    auto p = call.getParams();
    std::string stream_name = p.getStream();
    const stream_def* s = ctx_->defs->find_stream(stream_name);
    if (!s) fail("unknown stream '" + stream_name + "'" + known_streams());
    auto plans = ctx_->defs->plans_for_stream(stream_name);
    if (plans.empty())
      fail("stream '" + stream_name + "' feeds no feature view; nothing would read these events");
    auto events = p.getEvents();
    if (events.size() > opts_.max_events_per_call)
      fail("batch of " + std::to_string(events.size()) + " events exceeds the limit of " +
           std::to_string(opts_.max_events_per_call) + "; split it");
    std::string batch_id = p.getBatchId();
    if (batch_id.size() > 200) fail("batchId longer than 200 bytes");
    for (char c : batch_id)
      if (c < 0x21 || c > 0x7e) fail("batchId must be printable ASCII without spaces");
    if (in_flight_.load() + events.size() > opts_.max_events_in_flight)
      overloaded("gateway overloaded: " + std::to_string(in_flight_.load()) +
                 " events await JetStream; retry later");

    // Validate every event; keep the good ones grouped by (kind, shard).
    struct rejected_event {
      uint32_t index;
      event_error err;
    };
    std::vector<rejected_event> rejected;
    std::map<std::pair<size_t, uint32_t>, std::vector<std::pair<uint32_t, std::string>>>
        groups;  // -> (event index, key)
    std::vector<normalized_event> normalized(events.size());
    std::vector<int64_t> known(events.size(), 0);
    std::vector<bool> decoded(events.size(), false), is_late(events.size(), false);
    uint32_t accepted = 0, refused = 0;
    std::vector<int64_t> times;
    for (uint32_t i = 0; i < events.size(); ++i) {
      auto e = events[i];
      event_error err;
      if (e.getStream().size() && std::string(e.getStream().cStr()) != stream_name) {
        rejected.push_back({i,
                            {"", "event names stream '" + std::string(e.getStream().cStr()) +
                                     "' in a call for '" + stream_name + "'"}});
        continue;
      }
      if (!normalize_event(e, *s, normalized[i], err)) {
        if (err.outlier) ++refused;
        rejected.push_back({i, err});
        continue;
      }
      decoded[i] = true;
      times.push_back(normalized[i].time);
    }
    // The stream's clock (runtime/stream_clock.h) as this call arrives: now for a live stream,
    // else the latest event time applied or accepted anywhere (a replay's accepted events run
    // ahead of its applied ones). Late events (older than the online windows) are judged by it,
    // here and by the shards (EventBatch.clock). Outliers are measured from it and, within this
    // call, from the events accepted before them. A stream's very first call has no such time:
    // it is measured from the median of the call's own events, so a few bad ones among many good
    // are refused (a first call of only bad events cannot be told from good ones: they set the
    // clock, and the later good events are then reported late, or refused when far behind).
    stream_clocks* clocks = ctx_->clocks;
    const bool live = s->clock == clock_mode::live;
    const int64_t now = now_micros();
    const int64_t replay_ref = clocks ? clocks->jump_reference(stream_name) : 0;
    const int64_t call_clock = live ? now : replay_ref;
    // A live stream's reference is never behind the wall clock: a quiet stream's next event at
    // now is no jump (max_future bounds it from the other side).
    int64_t jump_ref = live ? std::max(replay_ref, now) : replay_ref;
    if (jump_ref == 0 && !times.empty()) {
      std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
      jump_ref = times[times.size() / 2];
    }
    int64_t longest_retention = 0;
    for (auto* p : plans) longest_retention = std::max(longest_retention, p->retention_us);
    int64_t batch_max = 0;
    for (uint32_t i = 0; i < events.size(); ++i) {
      if (!decoded[i]) continue;
      auto e = events[i];
      event_error err;
      const int64_t t = normalized[i].time;
      if (std::string why = jump_refusal(*s, t, std::max(jump_ref, batch_max)); !why.empty()) {
        ++refused;
        rejected.push_back({i, {s->time_field, why}});
        continue;
      }
      const int64_t kt = e.getKnownTime();
      if (kt == -1) {
        known[i] = normalized[i].time;
      } else if (kt != 0) {
        if (!timestamp_is_sane(kt, kMaxFutureUs)) {
          rejected.push_back({i,
                              {"knownTime", "absurd known time " + std::to_string(kt) +
                                                " µs (use 0 for now, -1 for the event time)"}});
          continue;
        }
        known[i] = kt;
      }
      std::vector<std::pair<size_t, std::string>> keys;
      bool ok = true;
      for (size_t pi = 0; pi < plans.size() && ok; ++pi) {
        std::string key = entity_key(normalized[i], *plans[pi], err);
        if (key.empty())
          ok = false;
        else
          keys.emplace_back(pi, std::move(key));
      }
      if (!ok) {
        rejected.push_back({i, err});
        continue;
      }
      for (auto& [pi, key] : keys)
        groups[{pi, shard_of(key, ctx_->opts.shard_count)}].emplace_back(i, std::move(key));
      ++accepted;
      // Older than every online window, yet within the offline retention (older ones become
      // dead letters at the shard, as a re-run ingest's duplicates would not be told apart here).
      is_late[i] = call_clock > 0 && t <= call_clock - longest_retention &&
                   t > call_clock - s->offline_retention_us;
      batch_max = std::max(batch_max, t);
    }
    if (clocks) {
      if (batch_max) clocks->advance_accepted(stream_name, batch_max);
      if (refused) clocks->count_refused(stream_name, refused);
    }
    if (!rejected.empty()) {
      ctx_->metrics->rejected_at_gateway += rejected.size();
      uint64_t suppressed = 0;
      if (ctx_->limiter->allow("gateway:rejected", suppressed))
        spdlog::warn("ingest {}: rejected {} of {} events, first at {}: {} {}{}", stream_name,
                     rejected.size(), events.size(), rejected[0].index, rejected[0].err.field,
                     rejected[0].err.reason,
                     suppressed ? fmt::format(" ({} similar suppressed)", suppressed) : "");
    }
    auto fill_rejections = [rejected](wire::Gateway::IngestResults::Builder r) {
      auto rl = r.initRejected(static_cast<unsigned>(rejected.size()));
      for (size_t k = 0; k < rejected.size(); ++k) {
        rl[k].setIndex(rejected[k].index);
        rl[k].setField(rejected[k].err.field);
        rl[k].setReason(rejected[k].err.reason);
      }
    };

    // One JetStream message per (kind, shard, chunk); resolve when all are acknowledged.
    struct pending_call {
      std::mutex mu;
      size_t left = 0;
      std::string error;
      uint32_t duplicate_events = 0;
      uint32_t late_events = 0;  // in messages JetStream stored (not in duplicates)
      std::shared_ptr<xthread<void>> done;
    };
    auto pc = std::make_shared<pending_call>();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    pc->done = std::make_shared<xthread<void>>(xthread<void>{kj::mv(paf.fulfiller)});
    std::vector<std::pair<std::string, kj::Array<capnp::word>>> messages;
    struct message_counts {
      std::string id;
      uint32_t events = 0, late = 0;  // counted through the first plan's messages only
    };
    std::vector<message_counts> ids;
    int64_t ingest_time = now_micros();
    for (auto& [gk, members] : groups) {
      const kind_plan* plan = plans[gk.first];
      for (size_t off = 0, chunk = 0; off < members.size(); off += kEventsPerMessage, ++chunk) {
        size_t n = std::min(kEventsPerMessage, members.size() - off);
        capnp::MallocMessageBuilder mb;
        auto batch = mb.initRoot<wire::EventBatch>();
        batch.setIngestTime(ingest_time);
        batch.setClock(call_clock > 0 ? call_clock : 1);  // 1: judged, with no clock yet
        auto out = batch.initEvents(static_cast<unsigned>(n));
        uint32_t late_here = 0;
        for (size_t k = 0; k < n; ++k) {
          auto& [idx, key] = members[off + k];
          const normalized_event& ne = normalized[idx];
          late_here += is_late[idx];
          auto ev = out[static_cast<unsigned>(k)];
          ev.setStream(stream_name);
          ev.setKey(key);
          ev.setEventTime(ne.time);
          if (known[idx]) ev.setKnownTime(known[idx]);
          size_t present = 0;
          for (auto& v : ne.fields) present += !is_null(v);
          auto fl = ev.initFields(static_cast<unsigned>(present));
          unsigned fi = 0;
          for (size_t f = 0; f < ne.fields.size(); ++f) {
            if (is_null(ne.fields[f])) continue;
            fl[fi].setName(s->fields[f].name);
            write_value(fl[fi].initValue(), ne.fields[f]);
            ++fi;
          }
        }
        std::string subject = event_subject(stream_name, plan->entity, gk.second);
        std::string id = batch_id.empty()
                             ? ""
                             : batch_id + "." + plan->entity + "." + std::to_string(gk.second) +
                                   "." + std::to_string(chunk);
        messages.emplace_back(subject, capnp::messageToFlatArray(mb));
        // Every plan carries the same events: count duplicates through the first plan only.
        ids.push_back(gk.first == 0 ? message_counts{id, static_cast<uint32_t>(n), late_here}
                                    : message_counts{id});
      }
    }
    call.releaseParams();
    size_t total_events = accepted;
    in_flight_ += total_events;
    pc->left = messages.size();
    auto results_ready =
        paf.promise.then([this, pc, accepted, total_events, fill_rejections, call]() mutable {
          in_flight_ -= total_events;
          if (!pc->error.empty())
            kj::throwFatalException(
                kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                              kj::str("JetStream did not store the batch: ", pc->error.c_str(),
                                      "; retry with the same batchId")));
          auto r = call.getResults();
          r.setAccepted(accepted);
          r.setDuplicates(std::min(pc->duplicate_events, accepted));
          r.setLate(pc->late_events);
          fill_rejections(r);
        });
    if (messages.empty()) {
      pc->done->f->fulfill();
      return results_ready;
    }
    for (size_t m = 0; m < messages.size(); ++m) {
      auto bytes = messages[m].second.asBytes();
      const uint32_t n_events = ids[m].events, n_late = ids[m].late;
      ctx_->nats->publish(messages[m].first, bytes.begin(), bytes.size(), ids[m].id,
                          [pc, n_events, n_late](const std::string& err, bool dup) {
                            std::lock_guard<std::mutex> g(pc->mu);
                            if (!err.empty() && pc->error.empty()) pc->error = err;
                            if (dup)
                              pc->duplicate_events += n_events;
                            else
                              pc->late_events += n_late;
                            if (--pc->left == 0) pc->done->f->fulfill();
                          });
    }
    return results_ready;
  }

  kj::Promise<void> getFeatures(GetFeaturesContext call) override {
    ctx_->metrics->read_calls++;
    auto p = call.getParams();
    std::string view_name = p.getView();
    const view_def* v = ctx_->defs->find_view(view_name);
    if (!v) fail("unknown view '" + view_name + "'" + known_views());
    auto ents = p.getEntities();
    if (ents.size() == 0) fail("no entities given");
    if (ents.size() > opts_.max_entities_per_read)
      fail(std::to_string(ents.size()) + " entities in one call exceeds the limit of " +
           std::to_string(opts_.max_entities_per_read));
    int64_t as_of = p.getAsOf();
    if (as_of > 0 && !timestamp_is_sane(as_of, 100LL * 365 * 86400 * 1000000))
      fail("asOf " + std::to_string(as_of) +
           " is not a plausible time in microseconds since the epoch");
    if (as_of < -100LL * 365 * 86400 * 1000000)
      fail("asOf " + std::to_string(as_of) + " reaches back more than a century before the clock");
    std::vector<std::string> keys;
    keys.reserve(ents.size());
    for (uint32_t i = 0; i < ents.size(); ++i) {
      std::string k(ents[i].cStr(), ents[i].size());
      if (!key_is_valid(k))
        fail("invalid entity key (empty, longer than 256 bytes, or containing NUL)");
      keys.push_back(std::move(k));
    }
    auto deadline = std::chrono::steady_clock::now() + opts_.move_wait;
    return read_until(v, std::move(keys), as_of, deadline).then([call](answer a) mutable {
      if (!a.vectors) {
        if (a.retryable) overloaded(a.vectors.error_message());
        fail(a.vectors.error_message());
      }
      auto vl = call.getResults().initVectors(static_cast<unsigned>(a.vectors->size()));
      for (size_t i = 0; i < a.vectors->size(); ++i)
        write_vector(vl[static_cast<unsigned>(i)], (*a.vectors)[i]);
    });
  }

  kj::Promise<void> datasetShard(DatasetShardContext call) override {
    auto p = call.getParams();
    std::string name = p.getLabel();
    const label_def* l = ctx_->defs->find_label(name);
    if (!l) fail("unknown label '" + name + "'" + known_labels());
    const uint32_t shard = p.getShard();
    if (shard >= ctx_->opts.shard_count)
      fail("shard " + std::to_string(shard) + " does not exist (the cluster has " +
           std::to_string(ctx_->opts.shard_count) + ")");
    const int64_t from = p.getFrom(), to = p.getTo();
    if (from >= to) fail("empty time range: from must be before to");
    if (!ctx_->datasets) fail("this node builds no datasets");
    struct part_answer {
      result<dataset_part> part;
      bool retryable;
    };
    auto paf = kj::newPromiseAndCrossThreadFulfiller<part_answer>();
    auto f = std::make_shared<xthread<part_answer>>();
    f->f = kj::mv(paf.fulfiller);
    ctx_->datasets->shard_part(*l, shard, from, to, [f](result<dataset_part> r, bool retryable) {
      f->f->fulfill(part_answer{std::move(r), retryable});
    });
    return paf.promise.then([call](part_answer a) mutable {
      if (!a.part) {
        if (a.retryable) overloaded(a.part.error_message());
        fail(a.part.error_message());
      }
      auto out = call.getResults().initPart();
      auto cl = out.initColumns(static_cast<unsigned>(a.part->columns.size()));
      for (size_t i = 0; i < a.part->columns.size(); ++i)
        cl.set(static_cast<unsigned>(i), a.part->columns[i]);
      out.setCsv(
          kj::arrayPtr(reinterpret_cast<const kj::byte*>(a.part->csv.data()), a.part->csv.size()));
      out.setRows(a.part->rows);
      out.setExamples(a.part->examples);
      out.setOutsideRetention(a.part->outside_retention);
      out.setUnlabelled(a.part->unlabelled);
      out.setNonFinite(a.part->non_finite);
    });
  }

  kj::Promise<void> train(TrainContext call) override {
    std::string model = call.getParams().getModel();
    return off_thread<std::string>([t = training(), model] { return t->submit(model); })
        .then([call](result<std::string> r) mutable {
          call.getResults().setJobId(value_or_fail(std::move(r)));
        });
  }

  kj::Promise<void> job(JobContext call) override {
    std::string id = call.getParams().getJobId();
    return off_thread<job_info>([t = training(), id] { return t->job(id); })
        .then([call](result<job_info> r) mutable {
          write_job(call.getResults().initJob(), value_or_fail(std::move(r)));
        });
  }

  kj::Promise<void> listModels(ListModelsContext call) override {
    return off_thread<std::string>([t = training()]() -> result<std::string> {
             auto l = t->registry().list();
             if (!l) return make_error(l.error_message());
             return l->dump();
           })
        .then([call](result<std::string> r) mutable {
          call.getResults().setJson(value_or_fail(std::move(r)));
        });
  }

  kj::Promise<void> showModel(ShowModelContext call) override {
    std::string name = call.getParams().getName();
    uint32_t version = call.getParams().getVersion();
    return off_thread<std::string>([t = training(), name, version]() -> result<std::string> {
             auto j = t->registry().show(name, version);
             if (!j) return make_error(j.error_message());
             return j->dump();
           })
        .then([call](result<std::string> r) mutable {
          call.getResults().setJson(value_or_fail(std::move(r)));
        });
  }

  kj::Promise<void> promoteModel(PromoteModelContext call) override {
    auto p = call.getParams();
    std::string name = p.getName(), stage = p.getStage();
    uint32_t version = p.getVersion();
    if (version == 0) fail("name the version to promote");
    return off_thread<bool>([t = training(), name, version, stage]() -> result<bool> {
             auto st = t->registry().promote(name, version, stage);
             if (!st) return make_error(st.error_message());
             spdlog::info("registry: {} version {} promoted to {}", name, version, stage);
             return true;
           })
        .then([](result<bool> r) { value_or_fail(std::move(r)); });
  }

  kj::Promise<void> rollbackModel(RollbackModelContext call) override {
    std::string name = call.getParams().getName();
    return off_thread<uint32_t>([t = training(), name]() -> result<uint32_t> {
             auto v = t->registry().rollback(name);
             if (v) spdlog::info("registry: {} rolled back to version {}", name, *v);
             return v;
           })
        .then([call](result<uint32_t> r) mutable {
          call.getResults().setVersion(value_or_fail(std::move(r)));
        });
  }

  kj::Promise<void> importModel(ImportModelContext call) override {
    auto p = call.getParams();
    std::string name = p.getName(), label = p.getLabel();
    const label_def* l = ctx_->defs->find_label(label);
    if (!l) fail("unknown label '" + label + "'" + known_labels());
    bool name_ok = !name.empty() && name.size() <= 64;
    for (char c : name)
      name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
    if (!name_ok) fail("model names are letters, digits and _ (at most 64)");
    auto bytes = p.getArtifact();
    std::string artifact(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
    return off_thread<uint32_t>(
               [t = training(), name, l, artifact = std::move(artifact)]() -> result<uint32_t> {
                 auto cols = l->feature_columns();
                 auto ok = check_torchscript(artifact, cols.size());
                 if (!ok) return make_error("refused: " + ok.error_message());
                 nlohmann::json views = nlohmann::json::array();
                 for (const view_def* v : l->views) views.push_back(v->qualified());
                 return t->registry().register_version(
                     name,
                     {{"kind", "imported"},
                      {"inputs", cols},
                      {"lineage", {{"label", l->name}, {"views", views}, {"imported", true}}}},
                     artifact);
               })
        .then([call](result<uint32_t> r) mutable {
          call.getResults().setVersion(value_or_fail(std::move(r)));
        });
  }

  kj::Promise<void> exportModel(ExportModelContext call) override {
    std::string name = call.getParams().getName();
    uint32_t version = call.getParams().getVersion();
    struct exported {
      std::string bytes;
      uint32_t version;
    };
    return off_thread<exported>([t = training(), name, version]() -> result<exported> {
             auto j = t->registry().show(name, version);
             if (!j) return make_error(j.error_message());
             uint32_t v = (*j)["version"].get<uint32_t>();
             auto a = t->registry().artifact(name, v);
             if (!a) return make_error(a.error_message());
             return exported{std::move(a.value()), v};
           })
        .then([call](result<exported> r) mutable {
          auto e = value_or_fail(std::move(r));
          call.getResults().setArtifact(
              kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.bytes.data()), e.bytes.size()));
          call.getResults().setVersion(e.version);
        });
  }

  // The kj timer of the server's event loop (set right after the server is built).
  kj::Timer* timer = nullptr;

 private:
  struct answer {
    result<std::vector<feature_vector>> vectors;
    bool retryable;
  };
  // Reads; while a shard is moving (a retryable error), waits and tries again until `deadline`,
  // so that a caller sees a move as a short delay rather than an error when it is quick.
  kj::Promise<answer> read_until(const view_def* v, std::vector<std::string> keys, int64_t as_of,
                                 std::chrono::steady_clock::time_point deadline) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<answer>();
    auto f = std::make_shared<xthread<answer>>();
    f->f = kj::mv(paf.fulfiller);
    reader_.read(v, keys, as_of, /*forward=*/true,
                 [f](result<std::vector<feature_vector>> r, bool retryable) {
                   f->f->fulfill(answer{std::move(r), retryable});
                 });
    return paf.promise.then([this, v, keys = std::move(keys), as_of,
                             deadline](answer a) mutable -> kj::Promise<answer> {
      if (a.vectors || !a.retryable || !timer ||
          std::chrono::steady_clock::now() + kRetryStep >= deadline)
        return kj::mv(a);
      return timer->afterDelay(20 * kj::MILLISECONDS)
          .then([this, v, keys = std::move(keys), as_of, deadline]() mutable {
            return read_until(v, std::move(keys), as_of, deadline);
          });
    });
  }
  static constexpr auto kRetryStep = std::chrono::milliseconds(20);

 public:
  kj::Promise<void> status(StatusContext call) override {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<std::vector<shard_status>>();
    auto holder = std::make_shared<xthread<std::vector<shard_status>>>();
    holder->f = kj::mv(paf.fulfiller);
    status_request req;
    // Fulfilled even if the request is dropped (the supervisor stopping): a destroyed cross-thread
    // fulfiller would fail the call with an obscure message.
    struct once {
      std::shared_ptr<xthread<std::vector<shard_status>>> h;
      bool done = false;
      ~once() {
        if (!done) h->f->fulfill(std::vector<shard_status>{});
      }
    };
    auto o = std::make_shared<once>();
    o->h = holder;
    req.done = [o](std::vector<shard_status> v) {
      if (o->done) return;
      o->done = true;
      o->h->f->fulfill(std::move(v));
    };
    caf::anon_send(sup_, status_atom::value, std::move(req));
    return paf.promise.then([this, call](std::vector<shard_status> shards) mutable {
      std::sort(shards.begin(), shards.end(),
                [](auto& a, auto& b) { return a.id.name() < b.id.name(); });
      auto st = call.getResults().initStatus();
      st.setNodeId(ctx_->node_id);
      st.setNatsUrl(opts_.nats_url);
      st.setShardCount(ctx_->opts.shard_count);
      auto& streams = ctx_->defs->streams();
      auto sl = st.initStreams(static_cast<unsigned>(streams.size()));
      for (size_t i = 0; i < streams.size(); ++i) sl.set(static_cast<unsigned>(i), streams[i].name);
      auto& views = ctx_->defs->views();
      auto vl = st.initViews(static_cast<unsigned>(views.size()));
      for (size_t i = 0; i < views.size(); ++i)
        vl.set(static_cast<unsigned>(i), views[i].qualified());
      auto shl = st.initShards(static_cast<unsigned>(shards.size()));
      uint64_t dead = 0;
      for (size_t i = 0; i < shards.size(); ++i) {
        auto& s = shards[i];
        auto b = shl[static_cast<unsigned>(i)];
        b.setStream(s.id.stream);
        b.setKind(s.id.kind);
        b.setShard(s.id.shard);
        b.setAppliedSeq(s.meta.applied_seq);
        b.setWatermark(s.meta.watermark);
        b.setLag(s.lag);
        b.setEntitiesActive(s.active);
        b.setEntitiesPassivated(s.passivated);
        b.setDeadLetters(s.meta.dead_letters);
        b.setRestarts(s.restarts);
        b.setFailed(s.failed);
        b.setEventsApplied(s.meta.events_applied);
        dead += s.meta.dead_letters;
      }
      st.setEventsApplied(ctx_->metrics->events_applied.load());
      st.setDeadLetters(dead);
      st.setRejectedAtGateway(ctx_->metrics->rejected_at_gateway.load());
      st.setEntityRestarts(ctx_->metrics->entity_restarts.load());
      st.setEventsOfflineOnly(ctx_->metrics->events_offline_only.load());
      if (training_service* t = ctx_->training.load()) {
        auto jobs = t->jobs();
        auto jl = st.initJobs(static_cast<unsigned>(jobs.size()));
        for (size_t i = 0; i < jobs.size(); ++i) write_job(jl[static_cast<unsigned>(i)], jobs[i]);
      }
      if (auto* clocks = ctx_->clocks) {
        auto cl = st.initClocks(static_cast<unsigned>(streams.size()));
        for (size_t i = 0; i < streams.size(); ++i) {
          auto c = cl[static_cast<unsigned>(i)];
          const std::string& n = streams[i].name;
          c.setStream(n);
          c.setMode(clock_mode_name(streams[i].clock));
          c.setReadTime(clocks->read_time(n));
          c.setWatermark(clocks->watermark(n));
          c.setMaxFuture(streams[i].max_future_us);
          c.setMaxJump(streams[i].max_jump_us);
          c.setLate(clocks->late(n));
          c.setRefused(clocks->refused(n));
        }
      }
      st.setUptimeSeconds(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
      if (ctx_->cluster) {
        auto members = ctx_->cluster->members();
        auto ml = st.initMembers(static_cast<unsigned>(members.size()));
        for (size_t i = 0; i < members.size(); ++i) {
          auto m = ml[static_cast<unsigned>(i)];
          m.setNodeId(members[i].id);
          m.setRpc(members[i].rpc);
          m.setAlive(members[i].alive);
          m.setLeaving(members[i].leaving);
          m.setShardsServed(members[i].shards_served);
          m.setSilentSeconds(members[i].silent_s);
          m.setEventsApplied(members[i].events_applied);
        }
        st.setLeader(ctx_->cluster->leader());
        st.setMapEpoch(ctx_->cluster->epoch());
        auto owners = ctx_->cluster->owners();
        auto ol = st.initShardOwners(static_cast<unsigned>(owners.size()));
        for (size_t i = 0; i < owners.size(); ++i) ol.set(static_cast<unsigned>(i), owners[i]);
        auto& cm = ctx_->cluster->metrics;
        st.setSnapshotsWritten(cm.snapshots_written.load());
        st.setSnapshotsRestored(cm.snapshots_restored.load());
        st.setSnapshotsRefused(cm.snapshots_refused.load());
        st.setShardsAcquired(cm.shards_acquired.load());
        st.setShardsReleased(cm.shards_released.load());
        st.setMapConflicts(cm.map_conflicts.load());
        st.setSnapshotsUnchanged(cm.snapshots_unchanged.load());
      }
      const auto& sg = ctx_->metrics->stages;
      const std::pair<const char*, const latency_histogram*> stages[] = {{"delivery", &sg.delivery},
                                                                         {"queued", &sg.queued},
                                                                         {"applying", &sg.applying},
                                                                         {"total", &sg.total}};
      auto ls = st.initApplyStages(4);
      for (unsigned i = 0; i < 4; ++i) {
        ls[i].setStage(stages[i].first);
        ls[i].setCount(stages[i].second->count());
        ls[i].setP50Micros(stages[i].second->quantile_us(0.5));
        ls[i].setP99Micros(stages[i].second->quantile_us(0.99));
        ls[i].setP999Micros(stages[i].second->quantile_us(0.999));
      }
    });
  }

 private:
  std::string known_streams() const {
    std::string s;
    for (auto& x : ctx_->defs->streams()) s += (s.empty() ? "" : ", ") + x.name;
    return " (known: " + s + ")";
  }
  training_service* training() const {
    training_service* t = ctx_->training.load();
    if (!t)
      overloaded(
          "training and the registry are not ready on this node yet (it is still joining); retry");
    return t;
  }
  // Runs `fn` on the training service's worker (blocking NATS calls stay off the kj thread).
  template <typename T>
  kj::Promise<result<T>> off_thread(std::function<result<T>()> fn) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<result<T>>();
    auto f = std::make_shared<xthread<result<T>>>();
    f->f = kj::mv(paf.fulfiller);
    training()->run([f, fn = std::move(fn)] { f->f->fulfill(fn()); });
    return kj::mv(paf.promise);
  }
  template <typename T>
  static T value_or_fail(result<T> r) {
    if (!r) fail(r.error_message());
    return std::move(r.value());
  }
  static void write_job(wire::JobStatus::Builder b, const job_info& j) {
    b.setId(j.id);
    b.setModel(j.model);
    b.setState(j.state);
    b.setNode(j.node);
    b.setAttempt(j.attempt);
    b.setPhase(j.phase);
    b.setEpoch(j.epoch);
    b.setEpochs(j.epochs);
    b.setFraction(j.fraction);
    b.setLoss(j.loss);
    b.setError(j.error);
    b.setVersion(j.version);
    b.setTestAuc(j.test_auc);
  }

  std::string known_labels() const {
    std::string s;
    for (auto& x : ctx_->defs->labels()) s += (s.empty() ? "" : ", ") + x.name;
    return " (known: " + (s.empty() ? std::string("none; define one with label { ... }") : s) + ")";
  }
  std::string known_views() const {
    std::string s;
    for (auto& x : ctx_->defs->views()) s += (s.empty() ? "" : ", ") + x.qualified();
    return " (known: " + s + ")";
  }

  std::shared_ptr<const features_context> ctx_;
  caf::actor sup_;
  gateway_options opts_;
  std::chrono::steady_clock::time_point started_;
  std::atomic<size_t> in_flight_{0};
  feature_reader reader_;
};

}  // namespace

result<std::unique_ptr<gateway>> gateway::start(const gateway_options& o,
                                                std::shared_ptr<const features_context> ctx,
                                                caf::actor supervisor) {
  std::unique_ptr<gateway> g(new gateway());
  g->stop_ = std::make_shared<stop_signal>();
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  g->thread_ = std::thread([&, gp = g.get()] {
    try {
      capnp::ReaderOptions ro;
      ro.traversalLimitInWords = 64 * 1024 * 1024;  // 512 MiB per message at most
      ro.nestingLimit = 32;
      auto impl = kj::heap<gateway_impl>(ctx, supervisor, o);
      gateway_impl* raw = impl.get();
      capnp::EzRpcServer server(kj::mv(impl), o.listen, 7400, ro);
      raw->timer = &server.getIoProvider().getTimer();
      auto& ws = server.getWaitScope();
      gp->port_ = static_cast<int>(server.getPort().wait(ws));
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard<std::mutex> l(gp->stop_->mu);
        gp->stop_->fulfiller = kj::mv(paf.fulfiller);
      }
      {
        std::lock_guard<std::mutex> l(mu);
        ready = true;
        gp->started_ = true;
      }
      cv.notify_all();
      paf.promise.wait(ws);
    } catch (const kj::Exception& e) {
      std::lock_guard<std::mutex> l(mu);
      gp->start_error_ = e.getDescription().cStr();
      ready = true;
      cv.notify_all();
    }
  });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return ready; });
  if (!g->started_) {
    l.unlock();
    g->thread_.join();
    return make_error("cannot serve RPC on " + o.listen + ": " + g->start_error_);
  }
  return g;
}

gateway::~gateway() {
  {
    std::lock_guard<std::mutex> l(stop_->mu);
    if (stop_->fulfiller) stop_->fulfiller->fulfill();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace tessera
