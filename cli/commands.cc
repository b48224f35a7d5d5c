#include "commands.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>
#include <thread>

#include "cli_util.h"
#include "drift_text.h"
#include "hash.h"
#include "input_reader.h"
#include "tessera/client.h"
#include "time_util.h"

namespace tessera::cli {
namespace {

using clock_type = std::chrono::steady_clock;

nlohmann::json value_json(const client::value& v) {
  switch (v.index()) {
    case 1:
      return std::get<int64_t>(v);
    case 2:
      return std::get<double>(v);
    case 3:
      return std::get<std::string>(v);
    case 4:
      return std::get<bool>(v);
    case 5:
      return format_timestamp(std::get<client::timestamp>(v).micros);
    case 6:
      return std::get<std::vector<std::string>>(v);
  }
  return nullptr;
}

}  // namespace

int run_ingest(const ingest_args& a) {
  auto reader = input_reader::open(a.file, a.format);
  if (!reader) {
    std::fprintf(stderr, "error: %s\n", reader.error_message().c_str());
    return 2;
  }
  if (a.batch == 0 || a.batch > 100000) {
    std::fprintf(stderr, "error: --batch must be between 1 and 100000\n");
    return 2;
  }
  {
    auto conn = ingest_connection(a.rpc);

    struct chunk {
      std::vector<input_row> rows;
      std::string id;
    };
    struct inflight {
      chunk c;
      std::future<result<client::ingest_result>> f;
    };
    uint64_t sent = 0, accepted = 0, duplicates = 0, rejected = 0, bad_rows = 0, chunk_no = 0,
             late = 0;
    std::deque<inflight> window;
    auto start = clock_type::now();
    progress_line progress(a.quiet);
    std::vector<std::string> problems;
    auto note = [&](uint64_t line, const std::string& what) {
      if (problems.size() < 20) problems.push_back("line " + std::to_string(line) + ": " + what);
    };
    auto draw = [&](bool final) {
      if (!progress.due(final)) return;
      double secs = std::chrono::duration<double>(clock_type::now() - start).count();
      double rate = secs > 0 ? static_cast<double>(accepted + duplicates) / secs : 0;
      progress.draw(final ? 1.0 : (*reader)->progress(),
                    human(accepted + duplicates) + " events  " +
                        human(static_cast<uint64_t>(rate)) + " ev/s  " +
                        human(rejected + bad_rows) + " rejected",
                    final);
    };
    auto send = [&](chunk c) {
      std::vector<client::event> evs(c.rows.size());
      for (size_t i = 0; i < c.rows.size(); ++i) {
        auto& row = c.rows[i];
        if (a.replay) evs[i].known_time = -1;
        // The row's fields move into the event: the chunk keeps only line numbers (for reports).
        evs[i].fields.reserve(row.fields.size());
        for (auto& f : row.fields)
          evs[i].fields.emplace_back(std::move(f.name), field_value(std::move(f)));
        row.fields.clear();
      }
      auto f = conn->ingest_async(a.stream, std::move(evs), c.id);
      window.push_back({std::move(c), std::move(f)});
    };
    auto settle_front = [&]() -> bool {
      inflight f = std::move(window.front());
      window.pop_front();
      auto r = f.f.get();
      if (!r) {
        std::fprintf(stderr, "\nerror: ingest of lines %llu-%llu failed:\n",
                     static_cast<unsigned long long>(f.c.rows.front().line),
                     static_cast<unsigned long long>(f.c.rows.back().line));
        print_error(a.rpc, r.failure(), "  ");
        std::fprintf(stderr,
                     "  re-running the same command resumes safely: batches already stored are "
                     "not counted twice\n");
        return false;
      }
      accepted += r->accepted - r->duplicates;
      duplicates += r->duplicates;
      late += r->late;
      for (auto& rj : r->rejected) {
        ++rejected;
        uint64_t line = rj.index < f.c.rows.size() ? f.c.rows[rj.index].line : 0;
        note(line, (rj.field.empty() ? "" : "field " + rj.field + ": ") + rj.reason);
      }
      return true;
    };

    chunk cur;
    uint64_t content_hash = 14695981039346656037ULL;
    input_row row;
    bool more = true;
    while (more) {
      more = (*reader)->next(row);
      if (more) {
        if (!row.error.empty()) {
          ++bad_rows;
          note(row.line, row.error);
          continue;
        }
        for (auto& f : row.fields)
          content_hash = (content_hash ^ stable_hash(f.text_value)) * 1099511628211ULL;
        cur.rows.push_back(std::move(row));
        row = input_row();
      }
      if (cur.rows.size() >= a.batch || (!more && !cur.rows.empty())) {
        // The id depends on the stream, the chunk's position and content: a re-run of the same
        // file produces the same ids, which JetStream de-duplicates.
        char idbuf[64];
        std::snprintf(idbuf, sizeof idbuf, "%016llx-%llu",
                      static_cast<unsigned long long>(content_hash ^ stable_hash(a.stream)),
                      static_cast<unsigned long long>(chunk_no++));
        cur.id = idbuf;
        sent += cur.rows.size();
        send(std::move(cur));
        cur = chunk();
        content_hash = 14695981039346656037ULL;
        while (window.size() >= static_cast<size_t>(std::max(1, a.window)))
          if (!settle_front()) return 2;
        draw(false);
      }
    }
    while (!window.empty())
      if (!settle_front()) return 2;
    draw(true);
    double secs = std::chrono::duration<double>(clock_type::now() - start).count();
    std::fprintf(stderr,
                 "ingested %s events into %s in %.1f s (%s already stored, skipped), %s rejected\n",
                 human(accepted).c_str(), a.stream.c_str(), secs, human(duplicates).c_str(),
                 human(rejected + bad_rows).c_str());
    if (late)
      std::fprintf(stderr,
                   "%s events older than the online windows: kept for training sets only (see the "
                   "stream's clock in tessera status)\n",
                   human(late).c_str());
    for (auto& p : problems) std::fprintf(stderr, "  %s\n", p.c_str());
    if (rejected + bad_rows > problems.size())
      std::fprintf(stderr, "  … and %s more\n",
                   human(rejected + bad_rows - problems.size()).c_str());
    return (rejected + bad_rows) ? 1 : 0;
  }
}

int run_features(const features_args& a) {
  int64_t as_of = 0;
  if (!a.as_of.empty() && a.as_of[0] == '-') {
    // Relative to the stream's clock: the gateway takes a negative asOf as that much before it.
    auto d = parse_duration(a.as_of.substr(1));
    if (!d || *d <= 0) {
      std::fprintf(stderr, "error: --as-of %s: %s\n", a.as_of.c_str(),
                   d ? "give a positive duration after '-', e.g. -6h" : d.error_message().c_str());
      return 2;
    }
    as_of = -*d;
  } else if (!a.as_of.empty()) {
    auto t = parse_timestamp(a.as_of);
    if (!t) {
      std::fprintf(stderr, "error: --as-of: %s\n", t.error_message().c_str());
      return 2;
    }
    as_of = *t;
  }
  {
    auto conn = client::connection::open(a.rpc);
    auto resp = conn->features(a.view, a.entities, as_of);
    if (!resp) return fail(a.rpc, resp);
    if (a.json) {
      auto arr = nlohmann::json::array();
      for (auto& v : *resp) {
        nlohmann::json values = nlohmann::json::object(), times = nlohmann::json::object();
        for (auto& f : v.values) {
          values[f.name] = value_json(f.v);
          times[f.name] = f.event_time ? nlohmann::json(format_timestamp(f.event_time))
                                       : nlohmann::json(nullptr);
        }
        arr.push_back({{"entity", v.entity},
                       {"view", v.view + "@" + std::to_string(v.version)},
                       {"values", values},
                       {"feature_event_times", times},
                       {"event_time", v.event_time ? nlohmann::json(format_timestamp(v.event_time))
                                                   : nlohmann::json(nullptr)},
                       {"as_of", format_timestamp(v.as_of)},
                       {"status", status_name(v.status)}});
      }
      std::cout << arr.dump(2) << "\n";
      return 0;
    }
    for (auto& v : *resp) {
      std::printf("%s  (%s@%u, %s, as of %s, last event %s)\n", v.entity.c_str(), v.view.c_str(),
                  v.version, status_name(v.status), format_timestamp(v.as_of).c_str(),
                  v.event_time ? format_timestamp(v.event_time).c_str() : "none");
      for (auto& f : v.values) {
        auto j = value_json(f.v);
        std::printf("  %-24s %s\n", f.name.c_str(), j.is_null() ? "null" : j.dump().c_str());
      }
    }
    return 0;
  }
}

int run_status(const status_args& a) {
  {
    auto conn = client::connection::open(a.rpc);
    auto resp = conn->status();
    if (!resp) return fail(a.rpc, resp);
    auto st = resp->get();
    if (a.json) {
      nlohmann::json j{{"node_id", st.getNodeId().cStr()},
                       {"nats_url", st.getNatsUrl().cStr()},
                       {"shard_count", st.getShardCount()},
                       {"events_applied", st.getEventsApplied()},
                       {"dead_letters", st.getDeadLetters()},
                       {"rejected_at_gateway", st.getRejectedAtGateway()},
                       {"entity_restarts", st.getEntityRestarts()},
                       {"events_offline_only", st.getEventsOfflineOnly()},
                       {"settled_waits", st.getSettledWaits()},
                       {"settle_timeouts", st.getSettleTimeouts()},
                       {"uptime_seconds", st.getUptimeSeconds()}};
      j["streams"] = nlohmann::json::array();
      for (auto s : st.getStreams()) j["streams"].push_back(s.cStr());
      j["views"] = nlohmann::json::array();
      for (auto s : st.getViews()) j["views"].push_back(s.cStr());
      j["shards"] = nlohmann::json::array();
      for (auto s : st.getShards())
        j["shards"].push_back(
            {{"stream", s.getStream().cStr()},
             {"kind", s.getKind().cStr()},
             {"shard", s.getShard()},
             {"applied_seq", s.getAppliedSeq()},
             {"watermark", s.getWatermark() ? format_timestamp(s.getWatermark()) : ""},
             {"lag", s.getLag()},
             {"entities_active", s.getEntitiesActive()},
             {"entities_passivated", s.getEntitiesPassivated()},
             {"dead_letters", s.getDeadLetters()},
             {"restarts", s.getRestarts()},
             {"failed", s.getFailed().cStr()}});
      j["leader"] = st.getLeader().cStr();
      j["map_epoch"] = st.getMapEpoch();
      j["members"] = nlohmann::json::array();
      for (auto m : st.getMembers())
        j["members"].push_back({{"node_id", m.getNodeId().cStr()},
                                {"rpc", m.getRpc().cStr()},
                                {"alive", m.getAlive()},
                                {"leaving", m.getLeaving()},
                                {"shards_served", m.getShardsServed()},
                                {"silent_seconds", m.getSilentSeconds()},
                                {"events_applied", m.getEventsApplied()}});
      j["snapshots"] = {{"written", st.getSnapshotsWritten()},
                        {"restored", st.getSnapshotsRestored()},
                        {"refused", st.getSnapshotsRefused()},
                        {"unchanged", st.getSnapshotsUnchanged()}};
      j["shards_acquired"] = st.getShardsAcquired();
      j["shards_released"] = st.getShardsReleased();
      j["map_conflicts"] = st.getMapConflicts();
      j["jobs"] = nlohmann::json::array();
      for (auto jb : st.getJobs())
        j["jobs"].push_back({{"id", jb.getId().cStr()},
                             {"model", jb.getModel().cStr()},
                             {"state", jb.getState().cStr()},
                             {"node", jb.getNode().cStr()},
                             {"attempt", jb.getAttempt()},
                             {"phase", jb.getPhase().cStr()},
                             {"epoch", jb.getEpoch()},
                             {"epochs", jb.getEpochs()},
                             {"fraction", jb.getFraction()},
                             {"loss", jb.getLoss()},
                             {"version", jb.getVersion()},
                             {"test_auc", jb.getTestAuc()},
                             {"error", jb.getError().cStr()}});
      j["clocks"] = nlohmann::json::array();
      for (auto c : st.getClocks())
        j["clocks"].push_back(
            {{"stream", c.getStream().cStr()},
             {"mode", c.getMode().cStr()},
             {"read_time", c.getReadTime() ? format_timestamp(c.getReadTime()) : ""},
             {"watermark", c.getWatermark() ? format_timestamp(c.getWatermark()) : ""},
             {"max_future", format_duration(c.getMaxFuture())},
             {"max_jump", format_duration(c.getMaxJump())},
             {"late", c.getLate()},
             {"refused", c.getRefused()}});
      j["shard_owners"] = nlohmann::json::array();
      for (auto o : st.getShardOwners()) j["shard_owners"].push_back(o.cStr());
      j["apply_stages"] = nlohmann::json::array();
      for (auto l : st.getApplyStages())
        j["apply_stages"].push_back({{"stage", l.getStage().cStr()},
                                     {"count", l.getCount()},
                                     {"p50_ms", l.getP50Micros() / 1e3},
                                     {"p99_ms", l.getP99Micros() / 1e3},
                                     {"p999_ms", l.getP999Micros() / 1e3}});
      j["models"] = nlohmann::json::array();
      for (auto m : st.getModels())
        j["models"].push_back(
            {{"model", m.getModel().cStr()},
             {"version", m.getVersion()},
             {"stage", m.getStage().cStr()},
             {"loaded_at", m.getLoadedAt() ? format_timestamp(m.getLoadedAt()) : ""},
             {"requests", m.getRequests()},
             {"requests_per_second", m.getRequestsPerSecond()},
             {"p50_ms", m.getP50Micros() / 1e3},
             {"p99_ms", m.getP99Micros() / 1e3},
             {"mean_batch", m.getMeanBatch()},
             {"errors", m.getErrors()},
             {"log_drops", m.getLogDrops()},
             {"load_error", m.getLoadError().cStr()},
             {"share", m.getShare()},
             {"shadow_skipped", m.getShadowSkipped()},
             {"fallbacks", m.getFallbacks()},
             {"rules", m.getRules().cStr()},
             {"rule_failures", m.getRuleFailures()},
             {"arm", m.getArm().cStr()},
             {"mean_score", m.getMeanScore()},
             {"scores", m.getScores()}});
      j["follows"] = nlohmann::json::array();
      for (auto f : st.getFollows())
        j["follows"].push_back({{"model", f.getModel().cStr()},
                                {"stream", f.getStream().cStr()},
                                {"predicted", f.getPredicted()},
                                {"skipped", f.getSkipped()},
                                {"dead_lettered", f.getDeadLettered()},
                                {"retried", f.getRetried()},
                                {"duplicates", f.getDuplicates()},
                                {"pending", f.getPending()},
                                {"lag_p50_ms", f.getLagP50Ms()},
                                {"lag_p99_ms", f.getLagP99Ms()}});
      j["quality"] = nlohmann::json::array();
      for (auto q : st.getQuality()) {
        nlohmann::json arms = nlohmann::json::array();
        for (auto a : q.getArms())
          arms.push_back({{"stage", a.getStage().cStr()},
                          {"version", a.getVersion()},
                          {"pairs", a.getPairs()},
                          {"positives", a.getPositives()},
                          {"auc", a.getAuc()},
                          {"auc_interval", {a.getAucLow(), a.getAucHigh()}},
                          {"log_loss", a.getLogLoss()},
                          {"log_loss_interval", {a.getLogLossLow(), a.getLogLossHigh()}},
                          {"accuracy", a.getAccuracy()},
                          {"accuracy_interval", {a.getAccuracyLow(), a.getAccuracyHigh()}},
                          {"ece", a.getEce()},
                          {"label_lag_p50_ms", a.getLabelLagP50Ms()},
                          {"label_lag_p99_ms", a.getLabelLagP99Ms()}});
        j["quality"].push_back({{"model", q.getModel().cStr()},
                                {"arms", arms},
                                {"predictions", q.getPredictions()},
                                {"labels", q.getLabels()},
                                {"joined", q.getJoined()},
                                {"unlabelled", q.getUnlabelled()},
                                {"late", q.getLate()},
                                {"unmatched", q.getUnmatched()},
                                {"duplicate_labels", q.getDuplicateLabels()},
                                {"duplicate_predictions", q.getDuplicatePredictions()},
                                {"waiting", q.getWaiting()},
                                {"compared", q.getCompared()},
                                {"canary_worse", q.getCanaryWorse()},
                                {"canary_log_loss_p", q.getCanaryLogLossP()},
                                {"canary_auc_p", q.getCanaryAucP()},
                                {"verdicts", q.getVerdicts()},
                                {"owner", q.getOwner().cStr()},
                                {"owned", q.getOwned()},
                                {"state",
                                 {{"saved_at", q.getSavedAt()},
                                  {"saved_predictions", q.getSavedPredictions()},
                                  {"restored_at", q.getRestoredAt()}}},
                                {"drift", drift_json(q.getDrift())},
                                {"drift_mismatched", q.getDriftMismatched()},
                                {"skew",
                                 {{"at", q.getSkewAt()},
                                  {"compared", q.getSkewCompared()},
                                  {"mismatched", q.getSkewMismatched()},
                                  {"worst", q.getSkewWorst().cStr()}}},
                                {"slos", slo_json(q.getSlos())}});
      }
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    std::printf("node %s  up %.0f s  NATS %s  %u shards\n", st.getNodeId().cStr(),
                st.getUptimeSeconds(), st.getNatsUrl().cStr(), st.getShardCount());
    std::printf(
        "events applied %s (offline only %s)  dead letters %s  rejected at gateway %s  entity "
        "restarts %s\n",
        human(st.getEventsApplied()).c_str(), human(st.getEventsOfflineOnly()).c_str(),
        human(st.getDeadLetters()).c_str(), human(st.getRejectedAtGateway()).c_str(),
        human(st.getEntityRestarts()).c_str());
    if (st.getMembers().size()) {
      std::printf("cluster: leader %s, shard map epoch %llu, %u members\n",
                  st.getLeader().size() ? st.getLeader().cStr() : "(none)",
                  static_cast<unsigned long long>(st.getMapEpoch()), st.getMembers().size());
      std::map<std::string, unsigned> owned;
      for (auto o : st.getShardOwners()) owned[o.cStr()]++;
      std::printf(
          "  snapshots written %llu, restored %llu, refused %llu; shards acquired %llu, released "
          "%llu\n",
          static_cast<unsigned long long>(st.getSnapshotsWritten()),
          static_cast<unsigned long long>(st.getSnapshotsRestored()),
          static_cast<unsigned long long>(st.getSnapshotsRefused()),
          static_cast<unsigned long long>(st.getShardsAcquired()),
          static_cast<unsigned long long>(st.getShardsReleased()));
      for (auto m : st.getMembers())
        std::printf("  %-20s %-22s %-8s owns %3u  serves %3u  applied %8s  heartbeat %.1f s ago\n",
                    m.getNodeId().cStr(), m.getRpc().cStr(),
                    m.getLeaving() ? "leaving"
                    : m.getAlive() ? "alive"
                                   : "DEAD",
                    owned[m.getNodeId().cStr()], m.getShardsServed(),
                    human(m.getEventsApplied()).c_str(), m.getSilentSeconds());
      for (auto m : st.getMembers())
        if (m.getEventWire() == 1)  // 0: told by a node from before the field
          std::printf(
              "  events are published with named fields: %s runs a build that does not read "
              "values by position (until its heartbeat expires, an hour after it stops)\n",
              m.getNodeId().cStr());
    }
    for (auto c : st.getClocks())
      std::printf(
          "stream %s: %s clock, reads at %s (watermark %s); max_future %s, max_jump %s; late %s, "
          "refused %s\n",
          c.getStream().cStr(), c.getMode().cStr(),
          c.getReadTime() ? format_timestamp(c.getReadTime()).c_str() : "- (no event yet)",
          c.getWatermark() ? format_timestamp(c.getWatermark()).c_str() : "-",
          format_duration(c.getMaxFuture()).c_str(), format_duration(c.getMaxJump()).c_str(),
          human(c.getLate()).c_str(), human(c.getRefused()).c_str());
    for (auto jb : st.getJobs()) {
      std::string state = jb.getState().cStr();
      std::printf("job %-34s %-8s %-9s", jb.getId().cStr(), state.c_str(), jb.getNode().cStr());
      if (state == "running")
        std::printf(" %s %3.0f%%%s", jb.getPhase().cStr(), jb.getFraction() * 100,
                    std::string(jb.getPhase().cStr()) == "training"
                        ? fmt::format(" epoch {}/{} loss {:.4f}", jb.getEpoch(), jb.getEpochs(),
                                      jb.getLoss())
                              .c_str()
                        : "");
      else if (state == "done")
        std::printf(" version %u, test AUC %.4f", jb.getVersion(), jb.getTestAuc());
      else if (state == "failed")
        std::printf(" %s", jb.getError().cStr());
      std::printf("\n");
    }
    if (st.getModels().size()) {
      std::printf("%-24s %7s %-14s %9s %9s %9s %9s %6s %9s %6s %9s\n", "model (served here)",
                  "version", "stage", "examples", "req/s", "p50 ms", "p99 ms", "batch", "errors",
                  "mean", "log drops");
      for (auto m : st.getModels()) {
        std::string stage = m.getStage().cStr();
        if (std::string(m.getArm().cStr()) == "ab" && stage != "ab") stage += " ab";
        if (m.getArm().size()) stage += " " + fmt::format("{:g}", 100 * m.getShare()) + "%";
        std::printf("%-24s %7u %-14s %9s %9.1f %9.2f %9.2f %6.1f %9s %6.3f %9s\n",
                    m.getModel().cStr(), m.getVersion(), stage.c_str(),
                    human(m.getRequests()).c_str(), m.getRequestsPerSecond(),
                    m.getP50Micros() / 1e3, m.getP99Micros() / 1e3, m.getMeanBatch(),
                    human(m.getErrors()).c_str(), m.getMeanScore(), human(m.getLogDrops()).c_str());
        if (m.getLoadError().size())
          std::printf("  %s v%u not serving: %s\n", m.getModel().cStr(), m.getVersion(),
                      m.getLoadError().cStr());
        if (m.getFallbacks())
          std::printf("  %s v%u: %s examples answered by its fallback\n", m.getModel().cStr(),
                      m.getVersion(), human(m.getFallbacks()).c_str());
        if (m.getRules().size())
          std::printf("  %s v%u rules: %s; %s failed (on_error answered)\n", m.getModel().cStr(),
                      m.getVersion(), m.getRules().cStr(), human(m.getRuleFailures()).c_str());
        if (m.getShadowSkipped())
          std::printf("  %s v%u (shadow): %s examples skipped (queue full, late or failed)\n",
                      m.getModel().cStr(), m.getVersion(), human(m.getShadowSkipped()).c_str());
      }
    }
    for (auto f : st.getFollows())
      std::printf(
          "follow %s <- %s: %s predicted, %s skipped, %s dead-lettered, %s retried, backlog %s "
          "messages, lag p50 %.1f ms p99 %.1f ms\n",
          f.getModel().cStr(), f.getStream().cStr(), human(f.getPredicted()).c_str(),
          human(f.getSkipped()).c_str(), human(f.getDeadLettered()).c_str(),
          human(f.getRetried()).c_str(), human(f.getPending()).c_str(), f.getLagP50Ms(),
          f.getLagP99Ms());
    if (st.getFollows().size() || st.getSettledWaits())
      std::printf("settled reads: %s waited for their shard, %s answered when the wait ran out\n",
                  human(st.getSettledWaits()).c_str(), human(st.getSettleTimeouts()).c_str());
    for (auto q : st.getQuality()) {
      if (!q.getOwned()) {  // another node computes it (one per model)
        std::printf("quality %s: computed on node %s\n", q.getModel().cStr(),
                    q.getOwner().size() ? q.getOwner().cStr() : "(none yet)");
        continue;
      }
      std::printf(
          "quality %s: %s predictions, %s labels, %s joined, %s waiting; unlabelled %s, late %s, "
          "unmatched labels %s, duplicate labels %s\n",
          q.getModel().cStr(), human(q.getPredictions()).c_str(), human(q.getLabels()).c_str(),
          human(q.getJoined()).c_str(), human(q.getWaiting()).c_str(),
          human(q.getUnlabelled()).c_str(), human(q.getLate()).c_str(),
          human(q.getUnmatched()).c_str(), human(q.getDuplicateLabels()).c_str());
      if (q.getSavedAt() != 0)
        std::printf("  state saved %.1f s ago (%s predictions)%s\n",
                    static_cast<double>(now_micros() - q.getSavedAt()) / 1e6,
                    human(q.getSavedPredictions()).c_str(),
                    q.getRestoredAt() != 0 ? ", restored at start" : "");
      for (auto a : q.getArms())
        std::printf(
            "  v%-3u %-10s %9s pairs  AUC %.4f [%.4f, %.4f]  log loss %.4f [%.4f, %.4f]  "
            "accuracy %.4f  ECE %.4f  label lag p50 %.1f h\n",
            a.getVersion(), a.getStage().cStr(), human(a.getPairs()).c_str(), a.getAuc(),
            a.getAucLow(), a.getAucHigh(), a.getLogLoss(), a.getLogLossLow(), a.getLogLossHigh(),
            a.getAccuracy(), a.getEce(), a.getLabelLagP50Ms() / 3.6e6);
      if (q.getCompared())
        std::printf("  canary vs production: %s (log loss p %.3g, AUC p %.3g)\n",
                    q.getCanaryWorse() ? "WORSE" : "not worse", q.getCanaryLogLossP(),
                    q.getCanaryAucP());
      print_drift(q.getDrift());
      print_slos(q.getSlos());
      if (q.getSkewAt())
        std::printf("  skew: %llu of %llu logged vectors differ from the offline log%s%s\n",
                    static_cast<unsigned long long>(q.getSkewMismatched()),
                    static_cast<unsigned long long>(q.getSkewCompared()),
                    q.getSkewWorst().size() ? ", most often " : "", q.getSkewWorst().cStr());
    }
    for (auto l : st.getApplyStages())
      if (l.getCount())
        std::printf("apply %-9s p50 %8.2f ms  p99 %8.2f ms  p99.9 %8.2f ms  (%s batches)\n",
                    l.getStage().cStr(), l.getP50Micros() / 1e3, l.getP99Micros() / 1e3,
                    l.getP999Micros() / 1e3, human(l.getCount()).c_str());
    struct agg {
      uint64_t lag = 0, active = 0, passive = 0, dead = 0, shards = 0, failed = 0;
      int64_t wm = 0;
    };
    std::map<std::string, agg> by;
    for (auto s : st.getShards()) {
      auto& g = by[std::string(s.getStream().cStr()) + "/" + s.getKind().cStr()];
      g.lag += s.getLag();
      g.active += s.getEntitiesActive();
      g.passive += s.getEntitiesPassivated();
      g.dead += s.getDeadLetters();
      g.shards++;
      g.failed += s.getFailed().size() > 0;
      g.wm = std::max(g.wm, s.getWatermark());
    }
    std::printf("%-24s %7s %10s %10s %12s %8s %8s  %s\n", "stream/kind", "shards", "lag", "active",
                "passivated", "dead", "failed", "watermark");
    for (auto& [k, g] : by)
      std::printf("%-24s %7llu %10s %10s %12s %8s %8llu  %s\n", k.c_str(),
                  static_cast<unsigned long long>(g.shards), human(g.lag).c_str(),
                  human(g.active).c_str(), human(g.passive).c_str(), human(g.dead).c_str(),
                  static_cast<unsigned long long>(g.failed),
                  g.wm ? format_timestamp(g.wm).c_str() : "-");
    for (auto s : st.getShards()) {
      if (!a.all_shards && s.getFailed().size() == 0 && s.getRestarts() == 0) continue;
      std::printf(
          "  shard %s/%s/%u: seq %llu lag %llu active %u passivated %u dead %llu restarts %u %s\n",
          s.getStream().cStr(), s.getKind().cStr(), s.getShard(),
          static_cast<unsigned long long>(s.getAppliedSeq()),
          static_cast<unsigned long long>(s.getLag()), s.getEntitiesActive(),
          s.getEntitiesPassivated(), static_cast<unsigned long long>(s.getDeadLetters()),
          s.getRestarts(),
          s.getFailed().size() ? (std::string("FAILED: ") + s.getFailed().cStr()).c_str() : "");
    }
    return 0;
  }
}

}  // namespace tessera::cli
