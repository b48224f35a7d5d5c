// `tessera dataset build`: asks each shard's owner for its part of a point-in-time training set
// (Gateway.datasetShard) and writes them, in shard order, to one CSV file plus a manifest.
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "hash.h"
#include "tessera/client.h"
#include "time_util.h"

namespace tessera::cli {
namespace {

using clock_type = std::chrono::steady_clock;

// Who serves which shard, from one node's status.
struct cluster_map {
  uint32_t shard_count = 0;
  std::vector<std::string> owner_rpc;  // per shard; empty = ask the node we know
};

result<cluster_map> read_map(client::connection& conn, const std::string& fallback_rpc) {
  auto resp = conn.status();
  if (!resp) return resp.failure();
  auto st = resp->get();
  cluster_map m;
  m.shard_count = st.getShardCount();
  std::map<std::string, std::string> rpc_of;
  for (auto mem : st.getMembers())
    if (mem.getAlive()) rpc_of[mem.getNodeId().cStr()] = mem.getRpc().cStr();
  m.owner_rpc.assign(m.shard_count, fallback_rpc);
  auto owners = st.getShardOwners();
  for (uint32_t s = 0; s < owners.size() && s < m.shard_count; ++s) {
    auto it = rpc_of.find(owners[s].cStr());
    if (it != rpc_of.end() && st.getNodeId() != owners[s]) m.owner_rpc[s] = it->second;
  }
  return m;
}

}  // namespace

int run_dataset_build(const dataset_args& a) {
  int64_t from = INT64_MIN / 2, to = INT64_MAX / 2;
  for (auto [text, dst, name] :
       {std::tuple{&a.from, &from, "--from"}, std::tuple{&a.to, &to, "--to"}}) {
    if (text->empty()) continue;
    auto t = parse_timestamp(*text);
    if (!t) {
      std::fprintf(stderr, "error: %s: %s\n", name, t.error_message().c_str());
      return 2;
    }
    *dst = *t;
  }
  if (from >= to) {
    std::fprintf(stderr, "error: --from must be before --to\n");
    return 2;
  }
  const std::string tmp = a.out + ".partial";
  {
    // One connection per node that owns shards. A part refused as retryable (the shard moving,
    // or owned by another node since the map was read) is asked again after re-reading the
    // map, so the connections themselves do not repeat it.
    std::map<std::string, std::unique_ptr<client::connection>> clients;
    auto client_for = [&](const std::string& rpc) -> client::connection& {
      auto& c = clients[rpc];
      if (!c) {
        client::options o;
        o.address = rpc;
        o.retry.attempts = 1;
        o.timeout = std::chrono::minutes(30);  // one shard's part of a large dataset
        c = client::connection::open(o);
      }
      return *c;
    };
    auto first = client::connection::open(a.rpc);
    auto read = read_map(*first, a.rpc);
    if (!read) return fail(a.rpc, read);
    cluster_map map = std::move(read.value());
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      std::fprintf(stderr, "error: cannot write %s\n", tmp.c_str());
      return 2;
    }
    const bool tty = isatty(STDERR_FILENO) && !a.quiet;
    const auto start = clock_type::now();
    uint64_t hash = kFnvOffsetBasis, bytes = 0, rows = 0, examples = 0, outside = 0, unlabelled = 0,
             non_finite = 0;
    std::vector<std::string> columns;
    auto write = [&](const char* p, size_t n) {
      out.write(p, static_cast<std::streamsize>(n));
      hash = fnv1a_update(hash, std::string_view(p, n));
      bytes += n;
    };
    auto draw = [&](uint32_t done, bool final) {
      if ((a.quiet || !tty) && !final) return;  // a log file gets the final line only
      double secs = std::chrono::duration<double>(clock_type::now() - start).count();
      int bars = static_cast<int>(30.0 * done / std::max<uint32_t>(1, map.shard_count));
      std::fprintf(stderr, "%s[%.*s%*s] %u/%u shards  %s rows  %s rows/s%s", tty ? "\r" : "", bars,
                   "##############################", 30 - bars, "", done, map.shard_count,
                   human(rows).c_str(),
                   human(static_cast<uint64_t>(rows / std::max(secs, 1e-3))).c_str(),
                   (final || !tty) ? "\n" : "");
      std::fflush(stderr);
    };
    // Parts in flight: twice a small node's dataset workers, so each worker has its next part
    // queued while the CLI writes (parts differ in size, and with one per worker a big part at
    // the front left the other worker idle: the node used 1.4 of its 2 cores). Written in shard
    // order; at most kInFlight parts are held here.
    constexpr size_t kInFlight = 4;
    struct flight {
      uint32_t shard;
      std::future<result<client::owned<wire::DatasetPart>>> p;
    };
    auto send = [&](uint32_t s) {
      return flight{s, client_for(map.owner_rpc[s]).dataset_shard_async(a.label, s, from, to)};
    };
    std::deque<flight> window;
    uint32_t next = 0;
    for (uint32_t done = 0; done < map.shard_count;) {
      while (next < map.shard_count && window.size() < kInFlight) window.push_back(send(next++));
      flight f = std::move(window.front());
      window.pop_front();
      auto resp = f.p.get();
      for (int attempt = 1; !resp; ++attempt) {
        // A shard moving between nodes, or an owner that changed: re-read the map and retry.
        if (!is_retryable(resp.error_code())) {
          print_error(map.owner_rpc[f.shard], resp.failure(), tty ? "\n" : "");
          std::filesystem::remove(tmp);
          return 2;
        }
        if (attempt >= 20) {
          std::fprintf(stderr, "%serror: shard %u: %s (gave up after %d tries)\n", tty ? "\n" : "",
                       f.shard, resp.error_message().c_str(), attempt);
          std::filesystem::remove(tmp);
          return 2;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        if (auto m = read_map(*first, a.rpc)) map = std::move(m.value());
        f = send(f.shard);
        resp = f.p.get();
      }
      auto part = resp->get();
      if (columns.empty()) {
        for (auto c : part.getColumns()) columns.emplace_back(c.cStr());
        std::string header;
        for (auto& c : columns) header += (header.empty() ? "" : ",") + c;
        header += '\n';
        write(header.data(), header.size());
      }
      auto csv = part.getCsv();
      write(reinterpret_cast<const char*>(csv.begin()), csv.size());
      rows += part.getRows();
      examples += part.getExamples();
      outside += part.getOutsideRetention();
      unlabelled += part.getUnlabelled();
      non_finite += part.getNonFinite();
      draw(++done, false);
    }
    out.close();
    draw(map.shard_count, true);
    const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
    if (rows == 0) {
      std::filesystem::remove(tmp);
      if (examples == 0)
        std::fprintf(
            stderr,
            "error: empty dataset: no example of label %s has a prediction time in [%s, %s)\n",
            a.label.c_str(), a.from.empty() ? "the beginning" : a.from.c_str(),
            a.to.empty() ? "the end" : a.to.c_str());
      else
        std::fprintf(stderr,
                     "error: empty dataset: of %s examples, %s have a prediction time outside the "
                     "offline retention (a feature "
                     "window reaches before the oldest logged event) and %s no label\n",
                     human(examples).c_str(), human(outside).c_str(), human(unlabelled).c_str());
      return 2;
    }
    std::filesystem::rename(tmp, a.out);
    char hex[20];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
    nlohmann::json m{
        {"format", 1},
        {"label", a.label},
        {"file", std::filesystem::path(a.out).filename().string()},
        {"columns", columns},
        {"rows", rows},
        {"examples", examples},
        {"dropped_outside_retention", outside},
        {"dropped_unlabelled", unlabelled},
        {"non_finite_values", non_finite},
        {"from", a.from.empty() ? nlohmann::json(nullptr) : nlohmann::json(format_timestamp(from))},
        {"to", a.to.empty() ? nlohmann::json(nullptr) : nlohmann::json(format_timestamp(to))},
        {"bytes", bytes},
        {"fnv1a64", hex},
        {"shards", map.shard_count},
        {"created", format_timestamp(now_micros())},
        {"build_seconds", secs}};
    std::ofstream(a.out + ".manifest.json") << m.dump(2) << "\n";
    std::fprintf(stderr,
                 "dataset %s: %s rows (%s examples; dropped %s outside retention, %s unlabelled; "
                 "%s non-finite values) in %.1f s, %s rows/s\n",
                 a.out.c_str(), human(rows).c_str(), human(examples).c_str(),
                 human(outside).c_str(), human(unlabelled).c_str(), human(non_finite).c_str(), secs,
                 human(static_cast<uint64_t>(rows / std::max(secs, 1e-3))).c_str());
    std::fprintf(stderr, "manifest %s.manifest.json (fnv1a64 %s)\n", a.out.c_str(), hex);
    return 0;
  }
}

}  // namespace tessera::cli
