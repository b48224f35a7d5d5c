#include "bench_common.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <zlib.h>

#include <cmath>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "codec.h"
#include "hash.h"
#include "time_util.h"

namespace tessera::bench {

result<std::string> flights_path() {
  std::string shared = TSR_SOURCE_DIR "/../shared/data/flights-3m.csv.gz";
  if (std::filesystem::exists(shared)) return shared;
  std::string local = TSR_SOURCE_DIR "/data/flights-3m.csv.gz";
  if (!std::filesystem::exists(local)) {
    std::filesystem::create_directories(TSR_SOURCE_DIR "/data");
    std::string cmd = "bash " TSR_SOURCE_DIR "/examples/flights/fetch-data.sh " + local;
    if (std::system(cmd.c_str()) != 0)
      return make_error("cannot obtain the flights data (" + cmd + " failed)");
  }
  return local;
}

result<std::vector<flight>> load_flights(size_t max_rows) {
  auto path = flights_path();
  if (!path) return path.failure();
  return load_flights_file(*path, max_rows);
}

result<std::vector<flight>> load_flights_file(const std::string& path, size_t max_rows) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return make_error("cannot open " + path);
  std::vector<flight> out;
  out.reserve(max_rows);
  gzbuffer(f, 1 << 20);
  char buf[512];
  gzgets(f, buf, sizeof buf);  // header
  while (out.size() < max_rows && gzgets(f, buf, sizeof buf)) {
    char date[40], origin[8], dest[8];
    double delay, distance;
    if (std::sscanf(buf, "%39[^,],%lf,%lf,%7[^,],%7[^,\r\n]", date, &delay, &distance, origin,
                    dest) != 5)
      continue;
    out.push_back({*parse_timestamp(date), delay, distance, origin, dest});
  }
  gzclose(f);
  return result<std::vector<flight>>(std::move(out));
}

std::shared_ptr<pending_acks> publish_flights_nowait(bus& b, const definitions& defs,
                                                     const std::vector<flight>& fs, size_t begin,
                                                     size_t end, size_t per_msg, uint32_t shards) {
  const stream_def* s = defs.find_stream("flights");
  auto plans = defs.plans_for_stream("flights");
  std::map<std::pair<size_t, uint32_t>, std::vector<size_t>> groups;
  for (size_t i = begin; i < end; ++i) {
    for (size_t p = 0; p < plans.size(); ++p) {
      std::string key =
          plans[p]->entity == "route" ? fs[i].origin + "-" + fs[i].destination : fs[i].origin;
      groups[{p, shard_of(key, shards)}].push_back(i);
    }
  }
  auto w = std::make_shared<pending_acks>();
  for (auto& [g, idx] : groups) {
    for (size_t off = 0; off < idx.size(); off += per_msg) {
      size_t n = std::min(per_msg, idx.size() - off);
      capnp::MallocMessageBuilder mb;
      auto batch = mb.initRoot<wire::EventBatch>();
      batch.setIngestTime(now_micros());
      // Values by position, as the gateway writes them (Event.values).
      auto names = batch.initFieldNames(4);
      names.set(0, "delay");
      names.set(1, "distance");
      names.set(2, "origin");
      names.set(3, "destination");
      auto evs = batch.initEvents(static_cast<unsigned>(n));
      for (size_t k = 0; k < n; ++k) {
        const flight& f = fs[idx[off + k]];
        auto e = evs[static_cast<unsigned>(k)];
        e.setStream("flights");
        e.setKey(plans[g.first]->entity == "route" ? f.origin + "-" + f.destination : f.origin);
        e.setEventTime(f.time);
        auto vl = e.initValues(4);
        vl[0].setFloat(f.delay);
        vl[1].setFloat(f.distance);
        vl[2].setText(f.origin);
        vl[3].setText(f.destination);
      }
      kj::Array<capnp::word> words = capnp::messageToFlatArray(mb);
      auto bytes = words.asBytes();
      {
        std::lock_guard<std::mutex> l(w->mu_);
        ++w->left_;
        w->keep_.push_back(std::move(words));
      }
      b.publish(event_subject("flights", plans[g.first]->entity, g.second), bytes.begin(),
                bytes.size(), "", [w](const std::string& err, bool) {
                  if (!err.empty()) std::fprintf(stderr, "publish error: %s\n", err.c_str());
                  std::lock_guard<std::mutex> l(w->mu_);
                  if (--w->left_ == 0) {
                    w->acked_at_ = std::chrono::steady_clock::now();
                    w->cv_.notify_all();
                  }
                });
      ++w->messages;
    }
  }
  (void)s;
  return w;
}

std::chrono::steady_clock::time_point pending_acks::wait() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return left_ == 0; });
  return acked_at_;
}

size_t publish_flights(bus& b, const definitions& defs, const std::vector<flight>& fs, size_t begin,
                       size_t end, size_t per_msg, uint32_t shards) {
  auto acks = publish_flights_nowait(b, defs, fs, begin, end, per_msg, shards);
  acks->wait();
  return acks->messages;
}

node_config flights_node_config(const std::string& data_dir, const std::string& nats_url,
                                uint32_t shards) {
  node_config cfg;
  cfg.data_dir = data_dir;
  cfg.rpc = "127.0.0.1:0";
  cfg.nats_url = nats_url;
  cfg.definitions = TSR_SOURCE_DIR "/examples/flights/flights.lua";
  cfg.shards = shards;
  return cfg;
}

stats summarize(std::vector<double> xs) {
  stats s{};
  s.n = xs.size();
  if (xs.empty()) return s;
  std::sort(xs.begin(), xs.end());
  auto at = [&](double q) {
    return xs[std::min(xs.size() - 1, static_cast<size_t>(q * xs.size()))];
  };
  s.p50 = at(0.5), s.p90 = at(0.9), s.p99 = at(0.99), s.p999 = at(0.999), s.max = xs.back();
  double sum = 0;
  for (double x : xs) sum += x;
  s.mean = sum / xs.size();
  return s;
}

void print_stats(const char* what, const stats& s, const char* unit) {
  std::printf("%-44s n=%-7zu p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f mean=%.3f %s\n", what,
              s.n, s.p50, s.p90, s.p99, s.p999, s.max, s.mean, unit);
}

}  // namespace tessera::bench
