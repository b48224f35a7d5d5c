// `tessera`: launch a node, or talk to one over its Cap'n Proto RPC gateway.
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdio>

#include "commands.h"
#include "tessera/node.h"
#include "time_util.h"

namespace {

void add_rpc(CLI::App* cmd, std::string& rpc) {
  cmd->add_option("--rpc", rpc, "node RPC address HOST:PORT")
      ->envname("TESSERA_RPC")
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tessera: a real-time machine-learning runtime"};
  app.require_subcommand(1);
  app.set_config(
      "--config", "",
      "config file (TOML or INI; keys as the long flags, e.g. data-dir = \"/var/lib/tessera\")");

  tessera::node_config nc;
  std::string log_level = "info", idle = "5m";
  auto* node_cmd =
      app.add_subcommand("node", "run a node (starts its own nats-server unless --nats is given)");
  node_cmd->add_option("--data-dir", nc.data_dir, "data directory (RocksDB, embedded NATS storage)")
      ->envname("TESSERA_DATA_DIR")
      ->capture_default_str();
  node_cmd->add_option("--rpc", nc.rpc, "RPC listen address HOST:PORT (port 0 = any free)")
      ->envname("TESSERA_RPC")
      ->capture_default_str();
  node_cmd
      ->add_option("--nats", nc.nats_url,
                   "NATS URL; without it an embedded nats-server runs on loopback")
      ->envname("TESSERA_NATS");
  node_cmd->add_option("--definitions", nc.definitions, "Lua definitions file")
      ->envname("TESSERA_DEFINITIONS")
      ->required();
  node_cmd
      ->add_option("--shards", nc.shards,
                   "logical shards, fixed when the data dir is created (default: the data dir's, "
                   "8 for a new one)")
      ->envname("TESSERA_SHARDS");
  node_cmd->add_option("--node-id", nc.node_id, "node id (default: kept in DATA_DIR/node_id)")
      ->envname("TESSERA_NODE_ID");
  node_cmd
      ->add_option("--entity-idle", idle, "passivate entity actors idle this long (e.g. 30s, 5m)")
      ->envname("TESSERA_ENTITY_IDLE")
      ->capture_default_str();
  node_cmd->add_option("--threads", nc.threads, "actor scheduler threads (0 = cores)")
      ->envname("TESSERA_THREADS");
  node_cmd
      ->add_option("--advertise", nc.advertise,
                   "RPC address other nodes and clients use (default: the bound one)")
      ->envname("TESSERA_ADVERTISE");
  node_cmd
      ->add_option(
          "--replicas", nc.replicas,
          "JetStream replicas of streams, KV buckets and snapshots (3 on a 3-server NATS cluster)")
      ->envname("TESSERA_REPLICAS")
      ->capture_default_str();
  node_cmd->add_option("--heartbeat-ms", nc.heartbeat_ms, "cluster heartbeat interval")
      ->envname("TESSERA_HEARTBEAT_MS")
      ->capture_default_str();
  node_cmd
      ->add_option("--dead-after-ms", nc.dead_after_ms,
                   "a member silent this long is dead and its shards move")
      ->envname("TESSERA_DEAD_AFTER_MS")
      ->capture_default_str();
  node_cmd
      ->add_option("--handoff-wait-ms", nc.handoff_wait_ms,
                   "a new owner waits at most this long for the old one to let go of a shard")
      ->envname("TESSERA_HANDOFF_WAIT_MS")
      ->capture_default_str();
  node_cmd
      ->add_option("--snapshot-every", nc.snapshot_every_s,
                   "seconds between shard snapshots (when changed)")
      ->envname("TESSERA_SNAPSHOT_EVERY")
      ->capture_default_str();
  node_cmd
      ->add_option("--leave-timeout-ms", nc.leave_timeout_ms,
                   "graceful stop: time to hand shards to other nodes")
      ->envname("TESSERA_LEAVE_TIMEOUT_MS")
      ->capture_default_str();
  node_cmd
      ->add_flag("--sync", nc.sync_writes, "fsync every state write (survives power loss, slower)")
      ->envname("TESSERA_SYNC");
  bool no_prediction_log = false;
  node_cmd->add_option("--alert-webhook", nc.alert_webhook,
                       "POST every alert transition as JSON to this http:// URL (retried with "
                       "back-off; one node of the cluster delivers each)");
  node_cmd
      ->add_option("--monitor-save-ms", nc.monitor_save_ms,
                   "save each monitored model's state (label join, pairs, drift windows) to "
                   "JetStream this often; whoever computes the model next resumes from it")
      ->check(CLI::Range(int64_t{100}, int64_t{3600} * 1000))
      ->capture_default_str();
  node_cmd->add_flag("--no-prediction-log", no_prediction_log,
                     "do not log predictions to JetStream (TSR_PREDICTIONS)");
  node_cmd
      ->add_option("--predict-max-batch", nc.predict_max_batch,
                   "rows per forward pass of a model (micro-batching)")
      ->capture_default_str();
  node_cmd
      ->add_option("--predict-max-wait-us", nc.predict_max_wait_us,
                   "how long a forward pass waits for rows already on their way (never when idle)")
      ->capture_default_str();
  node_cmd
      ->add_option("--predict-deadline-ms", nc.predict_deadline_ms,
                   "default deadline of a predict call (callers may set their own)")
      ->capture_default_str();
  node_cmd
      ->add_option("--follow-ack-wait-ms", nc.follow_ack_wait_ms,
                   "stream-following models: redeliver an event whose predictions are not stored "
                   "within this")
      ->capture_default_str();
  node_cmd->add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->envname("TESSERA_LOG_LEVEL")
      ->capture_default_str();

  tessera::cli::ingest_args ia;
  ia.rpc = "127.0.0.1:7400";
  auto* ingest_cmd =
      app.add_subcommand("ingest", "send events from a CSV or JSON-lines file (optionally .gz)");
  add_rpc(ingest_cmd, ia.rpc);
  ingest_cmd->add_option("--stream", ia.stream, "stream name")->required();
  ingest_cmd->add_option("--format", ia.format, "csv or jsonl (default: from the file name)");
  ingest_cmd->add_option("--batch", ia.batch, "events per RPC call")->capture_default_str();
  ingest_cmd->add_option("--window", ia.window, "RPC calls in flight")->capture_default_str();
  ingest_cmd->add_flag("--quiet", ia.quiet, "no progress bar");
  ingest_cmd->add_flag("--replay", ia.replay,
                       "the file is history: each event was known at its own event time (default: "
                       "known when stored)");
  ingest_cmd->add_option("file", ia.file, "input file")->required();

  tessera::cli::replay_args ra;
  ra.rpc = "127.0.0.1:7400";
  auto* replay_cmd = app.add_subcommand(
      "replay", "replay a period of a file live, at a speed-up, into streams in event-time order");
  add_rpc(replay_cmd, ra.rpc);
  replay_cmd->add_option("--definitions", ra.definitions, "the node's definitions file")
      ->required();
  replay_cmd->add_option("--stream", ra.streams, "a stream each row goes to (repeat for several)")
      ->required();
  replay_cmd->add_option("--from", ra.from, "first event time replayed (ISO-8601)");
  replay_cmd->add_option("--to", ra.to, "end of the period (exclusive)");
  replay_cmd->add_option("--speedup", ra.speedup, "event time per wall time")
      ->capture_default_str();
  replay_cmd->add_option("--every", ra.every, "seconds between progress lines")
      ->capture_default_str();
  replay_cmd->add_option("--model", ra.model, "print this model's serving figures as it goes");
  replay_cmd->add_option("--format", ra.format, "csv or jsonl (default: from the file name)");
  replay_cmd->add_option("file", ra.file, "input file")->required();

  tessera::cli::features_args fa;
  fa.rpc = "127.0.0.1:7400";
  tessera::cli::dataset_args da;
  da.rpc = "127.0.0.1:7400";
  auto* dataset_cmd = app.add_subcommand("dataset", "point-in-time training sets");
  dataset_cmd->require_subcommand(1);
  auto* ds_build = dataset_cmd->add_subcommand(
      "build", "join a label's examples to its features as known at prediction time");
  add_rpc(ds_build, da.rpc);
  ds_build->add_option("label", da.label, "label name (label { ... } in the definitions)")
      ->required();
  ds_build->add_option("--out,-o", da.out, "CSV file to write (a manifest goes beside it)")
      ->required();
  ds_build->add_option("--from", da.from, "first prediction time (ISO-8601, inclusive)");
  ds_build->add_option("--to", da.to, "last prediction time (ISO-8601, exclusive)");
  ds_build->add_flag("--quiet", da.quiet, "no progress bar");

  tessera::cli::train_args ta;
  ta.rpc = "127.0.0.1:7400";
  auto* train_cmd = app.add_subcommand(
      "train", "train a model of the definitions (some node claims the job) and follow it");
  add_rpc(train_cmd, ta.rpc);
  train_cmd->add_option("model", ta.model, "model name (model { ... } in the definitions)")
      ->required();
  train_cmd->add_flag("--no-wait", ta.no_wait, "print the job id and return");
  train_cmd->add_flag("--quiet", ta.quiet, "no progress");

  tessera::cli::models_args ma;
  ma.rpc = "127.0.0.1:7400";
  auto* models_cmd = app.add_subcommand("models", "the model registry");
  models_cmd->require_subcommand(1);
  auto* m_list = models_cmd->add_subcommand("list", "every model with its versions and stages");
  auto* m_show = models_cmd->add_subcommand(
      "show",
      "the model (stages, shares, A/B arms, fallback, shadow sample, max feature age) and one "
      "version: lineage, metrics, inputs");
  auto* m_promote = models_cmd->add_subcommand(
      "promote", "move a version to a stage (default production; atomic)");
  auto* m_canary = models_cmd->add_subcommand(
      "canary", "change the share of label entities the canary version serves");
  m_canary->add_option("--share", ma.share, "share of entities in [0, 1]")->required();
  auto* m_ab = models_cmd->add_subcommand(
      "ab",
      "A/B arms: versions answering for shares of the label entities (sticky), production the "
      "rest; e.g. tessera models ab late_mlp --arm 3=0.5 --arm 4=0.5, or --clear");
  m_ab->add_option("--arm", ma.arms, "VERSION=SHARE (share in [0, 1]; shares sum to at most 1)");
  m_ab->add_flag("--clear", ma.clear, "end the A/B test (production answers for every entity)");
  auto* m_rollback = models_cmd->add_subcommand(
      "rollback", "production goes back to the previous production version");
  auto* m_import = models_cmd->add_subcommand(
      "import", "register a TorchScript file (e.g. from PyTorch) as a candidate");
  auto* m_export =
      models_cmd->add_subcommand("export", "write a version's TorchScript artifact to a file");
  for (auto* c : {m_list, m_show, m_promote, m_canary, m_ab, m_rollback, m_import, m_export})
    add_rpc(c, ma.rpc);
  for (auto* c : {m_list, m_show}) c->add_flag("--json", ma.json, "JSON output");
  for (auto* c : {m_show, m_promote, m_canary, m_ab, m_rollback, m_import, m_export})
    c->add_option("name", ma.name, "model name")->required();
  for (auto* c : {m_show, m_export})
    c->add_option("--version,-v", ma.version, "version (default: production, else the latest)");
  m_promote->add_option("version", ma.version, "version")->required();
  m_promote->add_option("--stage", ma.stage, "candidate, shadow, canary, production or archived")
      ->capture_default_str();
  m_promote->add_option("--share", ma.share,
                        "canary: the share of label entities it serves, in [0, 1] (default 0.1)");
  m_import->add_option("file", ma.file, "TorchScript file (torch.jit.save)")->required();
  m_import
      ->add_option("--label", ma.label, "the label whose feature columns are the model's inputs")
      ->required();
  m_export->add_option("file", ma.file, "file to write")->required();

  tessera::cli::predict_args pa;
  pa.rpc = "127.0.0.1:7400";
  auto* predict_cmd = app.add_subcommand(
      "predict",
      "score examples with a model's production version (or --version), from fresh features; e.g. "
      "tessera predict late_mlp origin=LAX destination=SFO distance=337 "
      "date=2001-06-01T08:00:00Z");
  add_rpc(predict_cmd, pa.rpc);
  predict_cmd->add_option("model", pa.model, "model name")->required();
  predict_cmd->add_option(
      "fields", pa.fields,
      "the example as FIELD=VALUE, the fields of the model's label stream (text: the node parses "
      "them to the stream's types)");
  predict_cmd->add_option("--file", pa.file,
                          "predict every row of a CSV (header: field names) or JSON-lines file "
                          "(optionally .gz): one JSON line per row on stdout, in input order");
  predict_cmd->add_option("--format", pa.format, "csv or jsonl (default: from the file name)");
  predict_cmd->add_flag("--json", pa.json, "JSON output (one example)");
  predict_cmd->add_option("--as-of", pa.as_of,
                          "prediction time (ISO-8601 or epoch); default: the label's prediction "
                          "time from the fields, else the stream's clock");
  predict_cmd->add_option("--version,-v", pa.version, "model version (default: production)");
  predict_cmd->add_flag("--vector", pa.vector,
                        "show the features the model was given (name, value, age, status)");
  predict_cmd->add_option("--deadline-ms", pa.deadline_ms,
                          "deadline of each call at the node (default: the node's, 1000)");
  predict_cmd->add_option(
      "--max-feature-age", pa.max_feature_age,
      "fail an example whose feature values are older than this (e.g. 10m); default: serve "
      "stale values with their age");
  predict_cmd->add_option("--batch", pa.batch, "rows per call (--file)")->capture_default_str();
  predict_cmd->add_option("--concurrency", pa.concurrency, "calls in flight (--file)")
      ->capture_default_str();
  predict_cmd->add_flag("--quiet", pa.quiet, "no progress bar (--file)");

  tessera::cli::predictions_args pla;
  pla.rpc = "127.0.0.1:7400";
  auto* predictions_cmd =
      app.add_subcommand("predictions", "the prediction log (every prediction a node made)");
  predictions_cmd->require_subcommand(1);
  auto* p_tail = predictions_cmd->add_subcommand(
      "tail", "print a model's latest prediction records (JSON lines), --follow for new ones");
  add_rpc(p_tail, pla.rpc);
  p_tail->add_option("model", pla.model, "model name")->required();
  p_tail->add_option("-n", pla.n, "records to print")->capture_default_str();
  p_tail->add_flag("--follow,-f", pla.follow,
                   "keep printing new records (polls every 0.5 s) until interrupted");

  tessera::cli::skew_args ska;
  ska.rpc = "127.0.0.1:7400";
  auto* skew_cmd = app.add_subcommand(
      "skew",
      "training/serving skew: recompute logged feature vectors from the offline log at their "
      "logged time and compare them feature by feature");
  add_rpc(skew_cmd, ska.rpc);
  skew_cmd->add_option("model", ska.model, "model name")->required();
  skew_cmd->add_option("--sample", ska.sample, "logged predictions to recompute")
      ->capture_default_str();
  skew_cmd->add_flag("--json", ska.json, "the report as JSON");

  auto* feat_cmd = app.add_subcommand("features", "read feature vectors of entities");
  add_rpc(feat_cmd, fa.rpc);
  feat_cmd->add_flag("--json", fa.json, "JSON output");
  feat_cmd->add_option(
      "--as-of", fa.as_of,
      "read time: ISO-8601 or epoch, or a duration before the stream's clock such as -6h; default: "
      "the stream's clock (now for a live stream, its watermark for a replay)");
  feat_cmd->add_option("view", fa.view, "view name, or name@version")->required();
  feat_cmd->add_option("entities", fa.entities, "entity keys")->required();

  tessera::cli::alerts_args ala;
  ala.rpc = "127.0.0.1:7400";
  auto* alerts_cmd = app.add_subcommand(
      "alerts", "the cluster's alerts (pending, firing, resolved); --follow prints transitions");
  add_rpc(alerts_cmd, ala.rpc);
  alerts_cmd->add_flag(
      "--follow,-f", ala.follow,
      "print the alert log, then each transition as it happens (until interrupted)");
  alerts_cmd->add_flag("--json", ala.json, "JSON output (JSON lines with --follow)");
  alerts_cmd->require_subcommand(0, 1);
  auto* al_ack = alerts_cmd->add_subcommand("ack", "acknowledge a firing alert");
  add_rpc(al_ack, ala.rpc);
  al_ack->add_option("key", ala.key, "the alert's key")->required();
  al_ack->add_option("--by", ala.by, "who acknowledges (default: $USER)");
  auto* al_silence =
      alerts_cmd->add_subcommand("silence", "suppress an alert's notifications for a while");
  add_rpc(al_silence, ala.rpc);
  al_silence->add_option("key", ala.key, "the alert's key")->required();
  al_silence->add_option("--for", ala.duration, "how long (e.g. 2h, 1d; 0 lifts it)")
      ->capture_default_str();
  al_silence->add_option("--by", ala.by, "who silences (default: $USER)");

  tessera::cli::validate_args va;
  va.rpc = "127.0.0.1:7400";
  auto* validate_cmd = app.add_subcommand("validate", "data expectations checked at ingest");
  validate_cmd->require_subcommand(1);
  auto* v_report = validate_cmd->add_subcommand(
      "report", "per expectation: events checked and failed, the worst slices, the last failures");
  add_rpc(v_report, va.rpc);
  v_report->add_option("stream", va.stream, "stream name")->required();
  v_report->add_flag("--json", va.json, "JSON output");

  tessera::cli::status_args sa;
  sa.rpc = "127.0.0.1:7400";
  auto* status_cmd = app.add_subcommand(
      "status", "streams, shards, lag, entities, dead letters and served models of a node");
  add_rpc(status_cmd, sa.rpc);
  status_cmd->add_flag("--json", sa.json, "JSON output");
  status_cmd->add_flag("--shards", sa.all_shards, "list every shard");

  CLI11_PARSE(app, argc, argv);

  // Large buffers (dataset parts, window indexes: up to tens of MB, built and dropped per part;
  // in the CLI the parts it receives) from the heap instead of fresh mmaps: each fresh mapping
  // costs a page fault per 4 KiB touched and is returned on free. 32 MiB is glibc's largest mmap
  // threshold; up to 256 MiB of freed heap is kept for reuse. Measured on the 3M flights dataset
  // build: node CPU about -20 %, the CLI's page faults 6.6-8.8k -> 3.6k (bench/RESULTS.md).
  const bool heap_set = mallopt(M_MMAP_THRESHOLD, 32 << 20) && mallopt(M_TRIM_THRESHOLD, 256 << 20);
  if (node_cmd->parsed()) {
    // Block the stop signals in every thread; the main thread waits for them with sigwait.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    if (!heap_set) spdlog::warn("mallopt refused the heap settings");
    spdlog::set_level(spdlog::level::from_str(log_level));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    auto d = tessera::parse_duration(idle);
    if (!d || *d <= 0) {
      std::fprintf(stderr, "error: --entity-idle: %s\n",
                   d ? "must be positive" : d.error_message().c_str());
      return 2;
    }
    nc.entity_idle_ms = *d / 1000;
    nc.prediction_log = !no_prediction_log;
    auto n = tessera::node::start(nc);
    if (!n) {
      spdlog::error("{}", n.error_message());
      return 2;
    }
    std::printf("tessera node %s listening on RPC port %d\n", (*n)->node_id().c_str(),
                (*n)->rpc_port());
    std::fflush(stdout);
    tessera::node::wait_for_stop_signal();
    (*n)->stop();
    return 0;
  }
  if (ingest_cmd->parsed()) return tessera::cli::run_ingest(ia);
  if (replay_cmd->parsed()) return tessera::cli::run_replay(ra);
  if (feat_cmd->parsed()) return tessera::cli::run_features(fa);
  if (status_cmd->parsed()) return tessera::cli::run_status(sa);
  if (ds_build->parsed()) return tessera::cli::run_dataset_build(da);
  if (train_cmd->parsed()) return tessera::cli::run_train(ta);
  if (predict_cmd->parsed()) return tessera::cli::run_predict(pa);
  if (p_tail->parsed()) return tessera::cli::run_predictions_tail(pla);
  if (skew_cmd->parsed()) return tessera::cli::run_skew(ska);
  if (v_report->parsed()) return tessera::cli::run_validate_report(va);
  if (alerts_cmd->parsed()) {
    ala.action = al_ack->parsed() ? "ack" : al_silence->parsed() ? "silence" : "";
    return tessera::cli::run_alerts(ala);
  }
  for (auto* c : {m_list, m_show, m_promote, m_canary, m_ab, m_rollback, m_import, m_export})
    if (c->parsed()) {
      ma.action = c->get_name();
      return tessera::cli::run_models(ma);
    }
  return 2;
}
