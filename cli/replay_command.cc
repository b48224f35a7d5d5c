// `tessera replay`: a period of a file replayed live, at a speed-up, into one or more streams in
// event-time order (each row becomes one event per stream, with the fields that stream
// declares, at that stream's event time: the flights example's departures at `date`, arrivals at
// the derived `arrival`). Every few seconds it prints what a model's serving did meanwhile.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <future>
#include <map>
#include <thread>

#include "cli_util.h"
#include "codec.h"
#include "commands.h"
#include "definitions.h"
#include "input_reader.h"
#include "tessera/client.h"
#include "time_util.h"

namespace tessera::cli {

namespace {

using steady = std::chrono::steady_clock;

struct timed_event {
  int64_t time;
  uint32_t stream;
  client::event ev;
};

// What the node's status said of `model` at one moment, summed over its versions.
struct serving_snapshot {
  std::map<std::string, uint64_t> by_stage;  // "production v1" -> examples
  uint64_t fallbacks = 0, rule_failures = 0, errors = 0;
  double p99_ms = 0;  // the production version's, since it loaded
  uint64_t predicted = 0, dead = 0;
  double lag_p99_ms = 0;
  bool ok = false;
};

serving_snapshot snapshot(client::connection& c, const std::string& model) {
  serving_snapshot s;
  auto st = c.status();
  if (!st) return s;
  s.ok = true;
  for (auto m : (*st)->getModels()) {
    if (m.getModel() != model) continue;
    const std::string stage = m.getStage().cStr();
    s.by_stage[stage + " v" + std::to_string(m.getVersion())] += m.getRequests();
    s.fallbacks += m.getFallbacks();
    s.rule_failures += m.getRuleFailures();
    s.errors += m.getErrors();
    if (stage == "production") s.p99_ms = std::max(s.p99_ms, m.getP99Micros() / 1e3);
  }
  for (auto f : (*st)->getFollows()) {
    if (f.getModel() != model) continue;
    s.predicted += f.getPredicted();
    s.dead += f.getDeadLettered();
    s.lag_p99_ms = std::max(s.lag_p99_ms, f.getLagP99Ms());
  }
  return s;
}

std::string percent(uint64_t part, uint64_t whole) {
  return whole ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / whole) : "-";
}

}  // namespace

int run_replay(const replay_args& a) {
  if (!(a.speedup > 0)) {
    std::fprintf(stderr, "error: --speedup must be positive\n");
    return 2;
  }
  auto defs = definitions::load_file(a.definitions);
  if (!defs) {
    std::fprintf(stderr, "error: %s\n", defs.error_message().c_str());
    return 2;
  }
  std::vector<const stream_def*> streams;
  for (auto& name : a.streams) {
    const stream_def* s = (*defs)->find_stream(name);
    if (!s) {
      std::fprintf(stderr, "error: %s declares no stream '%s'\n", a.definitions.c_str(),
                   name.c_str());
      return 2;
    }
    streams.push_back(s);
  }
  int64_t from = 0, to = INT64_MAX;
  for (auto [text, out] : {std::pair{&a.from, &from}, {&a.to, &to}}) {
    if (text->empty()) continue;
    auto t = parse_timestamp(*text);
    if (!t) {
      std::fprintf(stderr, "error: %s\n", t.error_message().c_str());
      return 2;
    }
    *out = *t;
  }
  auto reader = input_reader::open(a.file, a.format);
  if (!reader) {
    std::fprintf(stderr, "error: %s\n", reader.error_message().c_str());
    return 2;
  }

  // Every row of the period, as one event per stream, in event-time order.
  std::vector<timed_event> events;
  uint64_t rows = 0, skipped = 0;
  input_row row;
  while ((*reader)->next(row)) {
    ++rows;
    if (!row.error.empty()) {
      ++skipped;
      continue;
    }
    for (uint32_t si = 0; si < streams.size(); ++si) {
      const stream_def& s = *streams[si];
      std::vector<std::pair<std::string, value>> typed;
      client::event ev;
      for (auto& f : row.fields) {
        const int at = s.field_index(f.name);
        if (at < 0 || s.fields[static_cast<size_t>(at)].derive) continue;
        // Copies: the row goes to every stream.
        typed.emplace_back(f.name, field_value<value>(input_field(f)));
        ev.fields.emplace_back(f.name, field_value(input_field(f)));
      }
      auto fields = example_fields(s, typed);
      int64_t t = 0;
      if (fields) {
        const value& tv = (*fields)[static_cast<size_t>(s.field_index(s.time_field))];
        if (std::holds_alternative<timestamp_value>(tv)) t = std::get<timestamp_value>(tv).micros;
      }
      if (t <= 0) {
        ++skipped;
        continue;
      }
      if (t < from || t >= to) continue;
      ev.known_time = -1;  // history: known at its own event time, as it happened
      events.push_back({t, si, std::move(ev)});
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const timed_event& x, const timed_event& y) { return x.time < y.time; });
  if (events.empty()) {
    std::fprintf(stderr, "error: no event of %s falls in [%s, %s)\n", a.file.c_str(),
                 a.from.c_str(), a.to.c_str());
    return 2;
  }
  const int64_t t0 = events.front().time, t1 = events.back().time;
  std::printf("replaying %zu events (%llu rows, %llu skipped) from %s to %s at %gx: about %.0f s\n",
              events.size(), static_cast<unsigned long long>(rows),
              static_cast<unsigned long long>(skipped), format_timestamp(t0).c_str(),
              format_timestamp(t1).c_str(), a.speedup,
              static_cast<double>(t1 - t0) / a.speedup / 1e6);
  std::fflush(stdout);

  auto conn = ingest_connection(a.rpc);
  auto watch = client::connection::open(a.rpc);  // status, off the ingest connection

  std::deque<std::future<result<client::ingest_result>>> window;
  uint64_t sent = 0, rejected = 0, batch_no = 0;
  std::vector<uint64_t> per_stream(streams.size(), 0);
  auto settle = [&](size_t keep) -> bool {
    while (window.size() > keep) {
      auto r = window.front().get();
      window.pop_front();
      if (!r) {
        std::fprintf(stderr, "error: ingest failed:\n");
        print_error(a.rpc, r.failure(), "  ");
        return false;
      }
      rejected += r->rejected.size();
      for (auto& rj : r->rejected)
        if (rejected <= 5)
          std::fprintf(stderr, "rejected: %s %s\n", rj.field.c_str(), rj.reason.c_str());
    }
    return true;
  };

  const auto start = steady::now();
  auto last_print = start;
  serving_snapshot before = a.model.empty() ? serving_snapshot{} : snapshot(*watch, a.model);
  uint64_t sent_before = 0;
  size_t next = 0;
  auto print = [&](bool final) {
    const double secs = std::chrono::duration<double>(steady::now() - last_print).count();
    last_print = steady::now();
    const int64_t at = next < events.size() ? events[next].time : t1;
    std::string line = fmt::format("[{}] events {:.0f}/s", format_timestamp(at).substr(0, 16),
                                   static_cast<double>(sent - sent_before) / secs);
    sent_before = sent;
    if (!a.model.empty()) {
      serving_snapshot now = snapshot(*watch, a.model);
      if (now.ok) {
        uint64_t served = 0;
        std::map<std::string, uint64_t> delta;
        for (auto& [k, n] : now.by_stage) {
          const uint64_t d = n - std::min(n, before.by_stage[k]);
          delta[k] = d;
          if (k.rfind("shadow", 0) != 0) served += d;
        }
        const uint64_t fb = now.fallbacks - std::min(now.fallbacks, before.fallbacks);
        line += fmt::format(" | {} predictions {:.0f}/s p99 {:.1f} ms", a.model,
                            static_cast<double>(served) / secs, now.p99_ms);
        line += " | stages";
        for (auto& [k, d] : delta)
          line += k.rfind("shadow", 0) == 0 ? fmt::format(" {} {}", k, d)
                                            : fmt::format(" {} {}", k, percent(d, served));
        line += fmt::format(" | path model {} fallback {}",
                            percent(served - std::min(served, fb), served), percent(fb, served));
        line += fmt::format(" | followed {} lag p99 {:.0f} ms dead {}", now.predicted,
                            now.lag_p99_ms, now.dead);
        before = std::move(now);
      }
    }
    std::printf("%s%s\n", line.c_str(), final ? " (final)" : "");
    std::fflush(stdout);
  };

  while (next < events.size()) {
    const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
    const int64_t due = t0 + static_cast<int64_t>(elapsed * a.speedup * 1e6);
    std::vector<std::vector<client::event>> batch(streams.size());
    size_t in_batch = 0;
    while (next < events.size() && events[next].time <= due && in_batch < a.batch) {
      timed_event& e = events[next++];
      batch[e.stream].push_back(std::move(e.ev));
      ++per_stream[e.stream];
      ++in_batch;
    }
    for (size_t si = 0; si < streams.size(); ++si) {
      if (batch[si].empty()) continue;
      sent += batch[si].size();
      window.push_back(
          conn->ingest_async(streams[si]->name, std::move(batch[si]),
                             "replay-" + std::to_string(t0) + "-" + std::to_string(batch_no++)));
    }
    if (!settle(8)) return 2;
    if (std::chrono::duration<double>(steady::now() - last_print).count() >= a.every) print(false);
    if (in_batch < a.batch) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!settle(0)) return 2;
  // The last predictions follow the last events by the follower's lag: give them a moment.
  if (!a.model.empty()) {
    const auto until = steady::now() + std::chrono::seconds(30);
    uint64_t last = UINT64_MAX;
    while (steady::now() < until) {
      std::this_thread::sleep_for(std::chrono::seconds(2));
      auto s = snapshot(*watch, a.model);
      if (s.predicted == last) break;
      last = s.predicted;
    }
  }
  print(true);
  std::string per;
  for (size_t si = 0; si < streams.size(); ++si)
    per += fmt::format("{}{} {}", si ? ", " : "", streams[si]->name, per_stream[si]);
  std::printf("sent %llu events (%s), %llu rejected\n", static_cast<unsigned long long>(sent),
              per.c_str(), static_cast<unsigned long long>(rejected));
  return rejected ? 1 : 0;
}

}  // namespace tessera::cli
