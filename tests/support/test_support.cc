#include "test_support.h"
#include "cluster/status_check.h"
#include "nats_server.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "hash.h"

namespace tessera::test {

namespace fs = std::filesystem;

temp_dir::temp_dir() {
  char tmpl[] = "/tmp/tessera-test-XXXXXX";
  path = ::mkdtemp(tmpl);
}
temp_dir::~temp_dir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

void write_flights_csv(const std::string& path, const std::vector<flight>& fs) {
  std::ofstream out(path);
  out << "date,delay,distance,origin,destination\n";
  for (auto& f : fs) {
    std::time_t secs = f.time / 1000000;
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&secs));
    out << buf << "," << f.delay << ",0," << f.origin << "," << f.destination << "\n";
  }
}

std::string slice_path() {
  return TSR_TEST_DATA_DIR "/flights-slice.csv.gz";
}
std::string flights_definitions() {
  return TSR_TEST_DATA_DIR "/flights-departure.lua";
}
std::string flights_example_definitions() {
  return TSR_EXAMPLES_DIR "/flights/flights.lua";
}

namespace {
int64_t parse_iso(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
              &tm.tm_min, &tm.tm_sec, &ms);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000000 + ms * 1000;
}
}  // namespace

const std::vector<flight>& slice() {
  static std::vector<flight> flights = [] {
    std::vector<flight> out;
    gzFile f = gzopen(slice_path().c_str(), "rb");
    EXPECT_NE(f, nullptr);
    char buf[4096];
    bool header = true;
    while (gzgets(f, buf, sizeof buf)) {
      if (header) {
        header = false;
        continue;
      }
      std::string line(buf);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      std::stringstream ss(line);
      std::string date, delay, distance, origin, dest;
      std::getline(ss, date, ',');
      std::getline(ss, delay, ',');
      std::getline(ss, distance, ',');
      std::getline(ss, origin, ',');
      std::getline(ss, dest, ',');
      // The example's event time, in its own words: departure + (30 + distance / 8 + delay)
      // minutes.
      const int64_t dep = parse_iso(date);
      const double dist = std::stod(distance), del = std::stod(delay);
      const int64_t arrival =
          std::llround(static_cast<double>(dep) + 60000000.0 * (30.0 + dist / 8.0 + del));
      out.push_back({dep, del, origin, dest, dist, arrival});
    }
    gzclose(f);
    return out;
  }();
  return flights;
}

airport_ref airport_at(const std::vector<flight>& fs, const std::string& origin, int64_t t) {
  const int64_t h = 3600LL * 1000000;
  airport_ref r;
  double s1 = 0, s24 = 0;
  for (auto& f : fs) {
    if (f.origin != origin || f.time > t) continue;
    if (f.time > t - 24 * h) {
      ++r.count_24h;
      s24 += f.delay;
      r.max_24h = r.max_24h ? std::max(*r.max_24h, f.delay) : f.delay;
      if (f.delay > 15) ++r.late_24h;
      r.latest = std::max(r.latest, f.time);
    }
    if (f.time > t - h) {
      ++r.count_1h;
      s1 += f.delay;
    }
  }
  if (r.count_1h) r.mean_1h = s1 / r.count_1h;
  if (r.count_24h) r.mean_24h = s24 / r.count_24h;
  return r;
}

route_ref route_at(const std::vector<flight>& fs, const std::string& route, int64_t t) {
  const int64_t w = 7 * 86400LL * 1000000;
  route_ref r;
  double s = 0;
  for (auto& f : fs) {
    if (f.origin + "-" + f.destination != route || f.time > t || f.time <= t - w) continue;
    ++r.count_7d;
    s += f.delay;
    r.latest = std::max(r.latest, f.time);
  }
  if (r.count_7d) r.mean_7d = s / r.count_7d;
  return r;
}

node_harness::node_harness(const std::string& data_dir, int64_t entity_idle_ms,
                           const std::string& definitions, uint32_t shards) {
  node_config cfg;
  cfg.data_dir = data_dir;
  cfg.rpc = "127.0.0.1:0";
  cfg.definitions = definitions;
  cfg.entity_idle_ms = entity_idle_ms;
  cfg.shards = shards;
  auto r = node::start(cfg);
  if (!r.ok())
    ADD_FAILURE() << r.error_message();
  else
    n = std::move(r.value());
}

int run_cli(const std::string& args, std::string* output) {
  std::string cmd = std::string(TSR_BINARY) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  if (output) *output = out;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::unique_ptr<client::connection> open_client(const std::string& rpc) {
  client::options o;
  o.address = rpc;
  o.retry.attempts = 1;
  return client::connection::open(std::move(o));
}

std::optional<double> number_of(const client::value& v) {
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (auto* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

uint64_t wait_applied(const std::string& rpc, uint64_t events, int timeout_s) {
  auto c = open_client(rpc);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  uint64_t sum = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto st = c->status();
    if (!st) {
      ADD_FAILURE() << "status of " << rpc << ": " << failure_text(st);
      return sum;
    }
    sum = 0;
    uint64_t lag = 0;
    for (auto s : st->get().getShards()) {
      sum += s.getEventsApplied();
      lag += s.getLag();
    }
    if (sum >= events && lag == 0) return sum;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return sum;
}

std::vector<std::pair<std::string, std::map<std::string, std::optional<double>>>> read_vectors(
    const std::string& rpc, const std::string& view, const std::vector<std::string>& keys,
    int64_t as_of, std::vector<int64_t>* event_times, std::vector<int64_t>* as_ofs) {
  auto c = open_client(rpc);
  std::vector<std::pair<std::string, std::map<std::string, std::optional<double>>>> out;
  for (size_t off = 0; off < keys.size(); off += 500) {
    size_t n = std::min<size_t>(500, keys.size() - off);
    std::vector<std::string> chunk(keys.begin() + static_cast<std::ptrdiff_t>(off),
                                   keys.begin() + static_cast<std::ptrdiff_t>(off + n));
    auto got = c->features(view, chunk, as_of);
    if (!got) {
      ADD_FAILURE() << "reading " << view << " through " << rpc << ": " << failure_text(got);
      return out;
    }
    for (auto& v : *got) {
      std::map<std::string, std::optional<double>> vals;
      for (auto& f : v.values) vals[f.name] = number_of(f.v);
      out.emplace_back(v.entity, std::move(vals));
      if (event_times) event_times->push_back(v.event_time);
      if (as_ofs) as_ofs->push_back(v.as_of);
    }
  }
  return out;
}

namespace {
size_t check(const std::string& what, std::optional<double> got, std::optional<double> want) {
  bool ok = got.has_value() == want.has_value() &&
            (!got || std::fabs(*got - *want) <= 1e-9 * std::max(1.0, std::fabs(*want)));
  if (!ok) {
    static int shown = 0;
    if (shown++ < 20)
      std::fprintf(stderr, "mismatch %s: got %s want %s\n", what.c_str(),
                   got ? std::to_string(*got).c_str() : "null",
                   want ? std::to_string(*want).c_str() : "null");
  }
  return ok ? 0 : 1;
}
}  // namespace

size_t compare_all(const std::string& rpc, const std::vector<flight>& fs, int64_t as_of) {
  std::set<std::string> origins, routes;
  // Default reads are at the stream's clock: for the tests' replay stream, the latest event time
  // of any flight, the same for every entity.
  int64_t stream_clock = 0;
  for (auto& f : fs) {
    origins.insert(f.origin);
    routes.insert(f.origin + "-" + f.destination);
    stream_clock = std::max(stream_clock, f.time);
  }
  if (as_of == 0) {
    // Nodes agree on the clock within a heartbeat: in a cluster, the node read through may
    // learn the last shards' watermark a moment after they applied it.
    int64_t seen = 0;
    auto client = open_client(rpc);
    bool agreed = eventually(
        [&] {
          auto st = client->status();
          if (!st) {
            ADD_FAILURE() << "status of " << rpc << ": " << failure_text(st);
            return true;  // the reads below say what they get
          }
          for (auto c : st->get().getClocks())
            if (std::string(c.getStream().cStr()) == "flights") seen = c.getReadTime();
          return seen >= stream_clock;
        },
        std::chrono::seconds(30));
    if (!agreed)
      std::fprintf(stderr, "node %s: the stream's clock reads %lld after 30 s, %lld expected\n",
                   rpc.c_str(), static_cast<long long>(seen), static_cast<long long>(stream_clock));
  }
  size_t bad = 0;
  std::vector<std::string> keys(origins.begin(), origins.end());
  std::vector<int64_t> times, as_ofs;
  auto got = read_vectors(rpc, "airport_delay", keys, as_of, &times, &as_ofs);
  if (got.size() != keys.size()) return keys.size();
  for (size_t i = 0; i < keys.size(); ++i) {
    int64_t t = as_of ? as_of : stream_clock;
    bad += check(keys[i] + " as_of", static_cast<double>(as_ofs[i]), static_cast<double>(t));
    auto r = airport_at(fs, keys[i], t);
    auto& v = got[i].second;
    bad += check(keys[i] + " count_1h", v["count_1h"], static_cast<double>(r.count_1h));
    bad += check(keys[i] + " mean_delay_1h", v["mean_delay_1h"], r.mean_1h);
    bad += check(keys[i] + " count_24h", v["count_24h"], static_cast<double>(r.count_24h));
    bad += check(keys[i] + " mean_delay_24h", v["mean_delay_24h"], r.mean_24h);
    bad += check(keys[i] + " max_delay_24h", v["max_delay_24h"], r.max_24h);
    bad += check(keys[i] + " late_24h", v["late_24h"], static_cast<double>(r.late_24h));
    bad += check(keys[i] + " event_time", static_cast<double>(times[i]),
                 static_cast<double>(r.latest));
  }
  keys.assign(routes.begin(), routes.end());
  times.clear();
  as_ofs.clear();
  got = read_vectors(rpc, "route_delay", keys, as_of, &times, &as_ofs);
  if (got.size() != keys.size()) return bad + keys.size();
  for (size_t i = 0; i < keys.size(); ++i) {
    int64_t t = as_of ? as_of : stream_clock;
    bad += check(keys[i] + " as_of", static_cast<double>(as_ofs[i]), static_cast<double>(t));
    auto r = route_at(fs, keys[i], t);
    auto& v = got[i].second;
    bad += check(keys[i] + " count_7d", v["count_7d"], static_cast<double>(r.count_7d));
    bad += check(keys[i] + " mean_delay_7d", v["mean_delay_7d"], r.mean_7d);
    bad += check(keys[i] + " event_time", static_cast<double>(times[i]),
                 static_cast<double>(r.latest));
  }
  return bad;
}

int embedded_nats_pid(const std::string& node_dir) {
  std::ifstream in(node_dir + "/nats/nats-server.pid");
  int pid = 0;
  in >> pid;
  return pid;
}

node_process::node_process(const std::string& d, const std::string& nats_url,
                           const std::string& node_id, const std::string& extra_args,
                           const std::string& definitions)
    : dir(d), port(find_free_port()) {
  std::string cmd = std::string("exec ") + TSR_BINARY + " node --shards " +
                    std::to_string(kTestShards) + " --data-dir " + dir +
                    " --rpc 127.0.0.1:" + std::to_string(port) + " --definitions " + definitions +
                    (nats_url.empty() ? "" : " --nats " + nats_url) +
                    (node_id.empty() ? "" : " --node-id " + node_id) + " " + extra_args + " >>" +
                    dir + "/node.log 2>&1";
  std::filesystem::create_directories(dir);
  pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    ::_exit(127);
  }
  for (int i = 0; i < 600 && !tcp_port_open(port); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

node_process::~node_process() {
  if (pid > 0) kill(SIGKILL);
}

void node_process::kill(int sig) {
  if (pid <= 0) return;
  ::kill(pid, sig);
  if (sig == SIGKILL) {
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
}

int node_process::wait() {
  int st = 0;
  if (pid > 0) ::waitpid(pid, &st, 0);
  pid = -1;
  return st;
}

std::string node_process::log_tail(int lines) const {
  std::string out;
  FILE* f = ::popen(("tail -n " + std::to_string(lines) + " " + dir + "/node.log").c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  ::pclose(f);
  return out;
}

cluster_progress cluster_applied(const std::vector<std::string>& rpcs) {
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_shard;  // kind/shard → (applied, lag)
  for (auto& rpc : rpcs) {
    auto st = open_client(rpc)->status();
    // A node that is gone or restarting: its shards are reported by their new owners.
    if (!st) continue;
    for (auto sh : st->get().getShards()) {
      if (sh.getFailed().size()) continue;
      auto key = std::string(sh.getKind().cStr()) + "/" + std::to_string(sh.getShard());
      auto& e = by_shard[key];
      e.first = std::max<uint64_t>(e.first, sh.getEventsApplied());
      e.second += sh.getLag();
    }
  }
  cluster_progress p;
  for (auto& [k, v] : by_shard) {
    p.applied += v.first;
    p.lag += v.second;
  }
  p.shards = static_cast<uint32_t>(by_shard.size());
  return p;
}

uint64_t wait_cluster_applied(const std::vector<std::string>& rpcs, uint64_t events,
                              int timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  cluster_progress p;
  while (std::chrono::steady_clock::now() < deadline) {
    p = cluster_applied(rpcs);
    if (p.applied >= events && p.lag == 0 && p.shards == 128) return p.applied;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return p.applied;
}

double wait_all_served(const std::string& rpc, uint32_t shard_count, int timeout_s,
                       const std::string& gone, size_t members) {
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(timeout_s)) {
    // A fresh connection each time (the node may be restarting); an error: not served yet.
    auto st = open_client(rpc)->status();
    if (st && every_shard_served(st->get(), shard_count, gone, members))
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

}  // namespace tessera::test
