// The client commands of the `tessera` CLI. Each returns the process exit code:
// 0 success, 1 partial (some input rejected), 2 failure.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tessera::cli {

struct ingest_args {
  std::string rpc;
  std::string stream;
  std::string file;
  std::string format;
  size_t batch = 5000;
  int window = 4;  // calls in flight
  bool quiet = false;
  bool replay = false;  // history: each event was known at its own event time
};
int run_ingest(const ingest_args& a);

// `tessera replay`: rows of FILE whose event time falls in [from, to), one event per stream
// (with the fields the stream declares in `definitions`), sent in event-time order as the clock
// advances `speedup` times faster than the wall clock; every `every` seconds a line of what
// `model` served meanwhile (empty: no line). Exit 1 when some events were rejected, 2 on error.
struct replay_args {
  std::string rpc;
  std::string file, format;
  std::string definitions;
  std::vector<std::string> streams;
  std::string from, to;  // ISO-8601; empty: unbounded
  double speedup = 3600;
  double every = 5;
  std::string model;
  size_t batch = 5000;  // events per tick at most
};
int run_replay(const replay_args& a);

struct features_args {
  std::string rpc;
  std::string view;
  std::vector<std::string> entities;
  std::string as_of;
  bool json = false;
};
int run_features(const features_args& a);

struct status_args {
  std::string rpc;
  bool json = false;
  bool all_shards = false;
};
int run_status(const status_args& a);

struct dataset_args {
  std::string rpc;
  std::string label;
  std::string out;
  std::string from, to;  // prediction-time range (ISO-8601); empty = unbounded
  bool quiet = false;
};
// Writes OUT (CSV with a header) and OUT.manifest.json; exit 2 on an empty dataset or an error.
int run_dataset_build(const dataset_args& a);

struct train_args {
  std::string rpc;
  std::string model;
  bool no_wait = false;
  bool quiet = false;
};
// Queues a training job and follows it to the end; exit 2 if it fails.
int run_train(const train_args& a);

struct models_args {
  std::string rpc;
  std::string action;  // list show promote canary ab rollback import export
  std::string name;
  uint32_t version = 0;
  std::string stage = "production";
  double share = -1;              // promote --stage canary --share S; models canary M --share S
  std::vector<std::string> arms;  // models ab M --arm V=SHARE ...
  bool clear = false;             // models ab M --clear
  std::string label;
  std::string file;
  bool json = false;
};
int run_models(const models_args& a);

// `tessera predict`: one example from FIELD=VALUE arguments, or every row of --file (one JSON
// line per row on stdout, in input order). Exit 1 when some rows of a file failed (each line
// says why), 2 when the call failed or the single example did.
struct predict_args {
  std::string rpc;
  std::string model;
  std::vector<std::string> fields;  // FIELD=VALUE
  std::string file, format;         // --file: CSV or JSON lines, optionally .gz
  std::string as_of;                // prediction time; empty: from the fields, else the clock
  uint32_t version = 0;             // 0: production
  uint32_t deadline_ms = 0;         // 0: the node's default
  std::string max_feature_age;      // a duration; empty: stale values are served
  bool vector = false;              // show the features the model was given
  bool json = false;
  bool quiet = false;
  size_t batch = 256;   // rows per call (--file)
  int concurrency = 4;  // calls in flight (--file)
};
int run_predict(const predict_args& a);

// `tessera predictions tail`: the last N records of a model's prediction log (JSON lines), and
// with --follow the new ones as they come, until interrupted.
struct predictions_args {
  std::string rpc;
  std::string model;
  uint32_t n = 10;
  bool follow = false;
};
int run_predictions_tail(const predictions_args& a);

// `tessera skew`: logged vectors recomputed offline and compared, as a table or JSON.
struct skew_args {
  std::string rpc;
  std::string model;
  uint32_t sample = 1000;
  bool json = false;
};
int run_skew(const skew_args& a);

// `tessera alerts`: list (text or --json), --follow the log of transitions; `ack KEY`,
// `silence KEY --for 2h`.
struct alerts_args {
  std::string rpc;
  std::string action;  // "", "ack", "silence"
  std::string key;
  std::string duration = "1h";
  std::string by;
  bool follow = false;
  bool json = false;
};
int run_alerts(const alerts_args& a);

// `tessera validate report STREAM`: the stream's expectations as ingest saw them.
struct validate_args {
  std::string rpc;
  std::string stream;
  bool json = false;
};
int run_validate_report(const validate_args& a);

}  // namespace tessera::cli
