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

}  // namespace tessera::cli
