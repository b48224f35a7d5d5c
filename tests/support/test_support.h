// Shared pieces of the integration tests: temp dirs, the committed flights slice, an
// independent brute-force reference of the example's views, and node/RPC helpers.
#pragma once
#include <capnp/ez-rpc.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "schemas/tessera.capnp.h"
#include "tessera/node.h"

namespace tessera::test {

struct temp_dir {
  temp_dir();
  ~temp_dir();
  std::string path;
};

struct flight {
  int64_t time;  // µs
  double delay;
  std::string origin, destination;
};

// Reads tests/data/flights-slice.csv.gz with its own CSV and time parsing.
const std::vector<flight>& slice();
std::string slice_path();

// Brute-force values of the example views at time t, straight from the definition's words.
struct airport_ref {
  int64_t count_1h = 0, count_24h = 0, late_24h = 0;
  std::optional<double> mean_1h, mean_24h, max_24h;
  int64_t latest = 0;
};
struct route_ref {
  int64_t count_7d = 0;
  std::optional<double> mean_7d;
  int64_t latest = 0;
};
airport_ref airport_at(const std::vector<flight>& fs, const std::string& origin, int64_t t);
route_ref route_at(const std::vector<flight>& fs, const std::string& route, int64_t t);

// The flights example's definitions file.
std::string flights_definitions();

// A node in this process with an embedded nats-server, on a temp data dir.
struct node_harness {
  explicit node_harness(const std::string& data_dir, int64_t entity_idle_ms = 5 * 60 * 1000);
  std::unique_ptr<node> n;
  std::string rpc() const { return "127.0.0.1:" + std::to_string(n->rpc_port()); }
};

// Runs the `tessera` binary; returns its exit code; stderr+stdout in `output`.
int run_cli(const std::string& args, std::string* output = nullptr);

// Polls status until the persisted per-shard applied counts sum to `events` and lag is 0.
// Returns the sum reached.
uint64_t wait_applied(const std::string& rpc, uint64_t events, int timeout_s = 60);

// Reads vectors for many entities over RPC (chunks of 500).
std::vector<std::pair<std::string, std::map<std::string, std::optional<double>>>> read_vectors(
    const std::string& rpc, const std::string& view, const std::vector<std::string>& keys, int64_t as_of,
    std::vector<int64_t>* event_times = nullptr, std::vector<int64_t>* as_ofs = nullptr);

// Compares every entity of both example views at `as_of` (0 = each shard's watermark) with
// the reference over `fs`; returns the number of mismatching values (details go to stderr).
size_t compare_all(const std::string& rpc, const std::vector<flight>& fs, int64_t as_of);

}  // namespace tessera::test
