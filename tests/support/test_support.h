// Shared pieces of the integration tests: temp dirs, the committed flights slice, an
// independent brute-force reference of the example's views, and node/RPC helpers.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tessera/client.h"
#include "tessera/node.h"

namespace tessera::test {

// Polls `cond` every `every` until it holds or `timeout` passes; returns whether it held. Tests
// wait for conditions with generous deadlines (a loaded 2-core machine), never for a sleep.
template <typename F>
bool eventually(F cond, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every = std::chrono::milliseconds(100)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
  return true;
}

struct temp_dir {
  temp_dir();
  ~temp_dir();
  std::string path;
};

struct flight {
  int64_t time;  // µs: the scheduled departure (`date`), the event time of
                 // tests/data/flights-departure.lua
  double delay;
  std::string origin, destination;
  double distance = 0;
  int64_t arrival = 0;  // µs: the event time of examples/flights/flights.lua
};

// Reads tests/data/flights-slice.csv.gz with its own CSV and time parsing.
const std::vector<flight>& slice();
std::string slice_path();
// Writes `fs` as a flights CSV (date, delay, distance 0, origin, destination) for `tessera ingest`.
void write_flights_csv(const std::string& path, const std::vector<flight>& fs);

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

// The definitions most tests use: tests/data/flights-departure.lua (event time = departure).
std::string flights_definitions();
// The flights example itself (event time = arrival; labels and models).
std::string flights_example_definitions();

// The shard count of the tests' nodes (in process, child processes, local-cluster.sh): 64, the
// count they were written for (shard numbers, 128 (kind, shard) pairs), not the default (8).
inline constexpr uint32_t kTestShards = 64;

// A node in this process with an embedded nats-server, on a temp data dir.
struct node_harness {
  explicit node_harness(const std::string& data_dir, int64_t entity_idle_ms = 5 * 60 * 1000,
                        const std::string& definitions = flights_definitions(),
                        uint32_t shards = kTestShards);
  std::unique_ptr<node> n;
  std::string rpc() const { return "127.0.0.1:" + std::to_string(n->rpc_port()); }
};

// A client connection to `rpc` (include/tessera/client.h) that makes one attempt per call, as
// the tests' raw RPC calls did: a test sees every error the node sends (the tests that poll do
// their own waiting, with eventually()).
std::unique_ptr<client::connection> open_client(const std::string& rpc);

// "[code] message" of a failed result, for failure output.
template <typename T>
std::string failure_text(const result<T>& r) {
  return std::string("[") + errc_name(r.error_code()) + "] " + r.error_message();
}

// A number from a feature value: ints and floats as double, anything else (null) as nullopt.
std::optional<double> number_of(const client::value& v);

// Runs the `tessera` binary; returns its exit code; stderr+stdout in `output`.
int run_cli(const std::string& args, std::string* output = nullptr);

// Polls status until the persisted per-shard applied counts sum to `events` and lag is 0.
// Returns the sum reached. A status call that fails is a test failure (and ends the wait).
uint64_t wait_applied(const std::string& rpc, uint64_t events, int timeout_s = 60);

// Reads vectors for many entities over RPC (chunks of 500). A read that fails is a test failure;
// the vectors read before it are returned (fewer than `keys`).
std::vector<std::pair<std::string, std::map<std::string, std::optional<double>>>> read_vectors(
    const std::string& rpc, const std::string& view, const std::vector<std::string>& keys,
    int64_t as_of, std::vector<int64_t>* event_times = nullptr,
    std::vector<int64_t>* as_ofs = nullptr);

// Compares every entity of both example views at `as_of` (0 = the stream's clock) with
// the reference over `fs`; returns the number of mismatching values (details go to stderr).
size_t compare_all(const std::string& rpc, const std::vector<flight>& fs, int64_t as_of);

// The pid of the embedded nats-server of the node whose data dir is `node_dir` (0 if none).
int embedded_nats_pid(const std::string& node_dir);

// A `tessera node` child process (so that tests can SIGKILL it), logging to <dir>/node.log.
struct node_process {
  // Starts and waits until its RPC port accepts connections. Empty nats_url: embedded server.
  node_process(const std::string& dir, const std::string& nats_url = "",
               const std::string& node_id = "", const std::string& extra_args = "",
               const std::string& definitions = flights_definitions());
  ~node_process();     // SIGKILL if still running
  void kill(int sig);  // and reap it; returns at once for SIGKILL, waits for others
  int wait();          // exit status
  std::string rpc() const { return "127.0.0.1:" + std::to_string(port); }
  std::string log_tail(int lines = 30) const;
  std::string dir;
  int port = 0;
  int pid = -1;
};

// Cluster-wide: the persisted applied counts of every shard served by any of `rpcs` (each shard
// counted once, at the node that serves it), and whether all of them report zero lag.
struct cluster_progress {
  uint64_t applied = 0;
  uint64_t lag = 0;
  uint32_t shards = 0;  // distinct (kind, shard) pairs reported
};
cluster_progress cluster_applied(const std::vector<std::string>& rpcs);
// Polls until `events` are applied over all 64 × 2 shard slices with no lag; returns the sum.
uint64_t wait_cluster_applied(const std::vector<std::string>& rpcs, uint64_t events,
                              int timeout_s = 90);
// Polls `rpc`'s status until the shard map names only live members other than `gone`, each
// serving exactly what it owns and all together every shard (with `members` > 0: exactly that
// many members, each owning some); returns seconds waited, or -1 on timeout.
double wait_all_served(const std::string& rpc, uint32_t shard_count, int timeout_s = 30,
                       const std::string& gone = "", size_t members = 0);

}  // namespace tessera::test
