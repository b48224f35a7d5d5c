// `tessera alerts`: the cluster's alerts (schemas/monitoring.capnp), their log as it grows
// (--follow), and acknowledging or silencing one. `tessera validate report`: what ingest saw of a
// stream's expectations.
#include <cstdio>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "time_util.h"

namespace tessera::cli {

namespace {

std::string when(int64_t us) {
  return us > 0 ? format_timestamp(us / 1000000 * 1000000) : std::string("-");
}

void print_alert(const nlohmann::json& a, int64_t now) {
  std::string state = a.value("state", "");
  for (auto& c : state) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::printf("%-9s %-7s %s  since %s, fired %u time(s)", state.c_str(),
              a.value("severity", "").c_str(), a.value("key", "").c_str(),
              when(a.value("updated_us", int64_t{0})).c_str(), a.value("fired_count", 0u));
  if (!a.value("acked_by", "").empty())
    std::printf(", acknowledged by %s", a.value("acked_by", "").c_str());
  if (a.value("silenced_until_us", int64_t{0}) > now)
    std::printf(", silenced until %s by %s", when(a.value("silenced_until_us", int64_t{0})).c_str(),
                a.value("silenced_by", "").c_str());
  std::printf("\n          %s\n", a.value("summary", "").c_str());
}

void print_transition(const nlohmann::json& t, bool json) {
  if (json) {
    std::printf("%s\n", t.dump().c_str());
  } else {
    const bool firing = t.value("state", "") == "firing";
    std::printf(
        "%s %-8s %-7s %s: %s\n",
        when(firing ? t.value("fired_us", int64_t{0}) : t.value("resolved_us", int64_t{0})).c_str(),
        t.value("state", "").c_str(), t.value("severity", "").c_str(), t.value("key", "").c_str(),
        t.value("summary", "").c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int run_alerts(const alerts_args& a) {
  auto conn = client::connection::open(a.rpc);
  const std::string by = a.by.empty() ? (std::getenv("USER") ? std::getenv("USER") : "cli") : a.by;
  if (a.action == "ack") {
    auto st = conn->acknowledge_alert(a.key, by);
    if (!st) return fail(a.rpc, st);
    std::printf("acknowledged %s\n", a.key.c_str());
    return 0;
  }
  if (a.action == "silence") {
    auto d = parse_duration(a.duration);
    if (!d || *d < 0 || *d / kMicrosPerSecond > 366LL * 86400) {
      std::fprintf(stderr, "error: --for: a duration such as 2h or 1d (0 lifts the silence)\n");
      return 2;
    }
    auto st = conn->silence_alert(a.key, static_cast<uint32_t>(*d / kMicrosPerSecond), by);
    if (!st) return fail(a.rpc, st);
    if (*d == 0)
      std::printf("lifted the silence of %s\n", a.key.c_str());
    else
      std::printf("silenced %s for %s\n", a.key.c_str(), format_duration(*d).c_str());
    return 0;
  }
  if (!a.follow) {
    auto list = conn->alerts_json();
    if (!list) return fail(a.rpc, list);
    auto j = nlohmann::json::parse(*list, nullptr, false);
    if (!j.is_array()) {
      std::fprintf(stderr, "error: the node sent alerts that are not a JSON array\n");
      return 2;
    }
    if (a.json) {
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    if (j.empty()) std::printf("no alerts\n");
    const int64_t now = now_micros();
    for (auto& x : j) print_alert(x, now);
    return 0;
  }
  // --follow: the kept log from its start, then new transitions as they come.
  uint64_t last = 0;
  for (;;) {
    auto page = conn->alert_log(last, 1000);
    if (!page) return fail(a.rpc, page);
    auto j = nlohmann::json::parse(page->first, nullptr, false);
    if (j.is_array())
      for (auto& t : j) print_transition(t, a.json);
    const bool full = j.is_array() && j.size() >= 1000;
    last = std::max(last, page->second);
    if (!full) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

int run_validate_report(const validate_args& a) {
  auto conn = client::connection::open(a.rpc);
  auto r = conn->validation_report(a.stream);
  if (!r) return fail(a.rpc, r);
  auto j = nlohmann::json::parse(*r, nullptr, false);
  if (a.json || !j.is_object()) {
    std::cout << (j.is_discarded() ? *r : j.dump(2)) << "\n";
    return 0;
  }
  const auto& list = j["expectations"];
  if (!list.is_array() || list.empty()) {
    std::printf("stream %s declares no expectations (expect = { field = { ... } })\n",
                a.stream.c_str());
    return 0;
  }
  std::printf(
      "stream %s, as ingested through node %s%s\n", a.stream.c_str(), j.value("node", "").c_str(),
      j.value("slice_field", "").empty() ? "" : (", by " + j.value("slice_field", "")).c_str());
  for (auto& e : list) {
    std::printf("  %-16s %-8s %s: %llu checked, %llu failed", e.value("field", "").c_str(),
                e.value("on_fail", "").c_str(), e.value("checks", "").c_str(),
                static_cast<unsigned long long>(e.value("checked", uint64_t{0})),
                static_cast<unsigned long long>(e.value("failed", uint64_t{0})));
    if (e.value("null_windows_failed", uint64_t{0}))
      std::printf(", %llu null-share windows over the limit",
                  static_cast<unsigned long long>(e.value("null_windows_failed", uint64_t{0})));
    std::printf("\n");
    for (auto& sl : e["slices"]) {
      std::printf("      %-12s %llu of %llu failed", sl.value("slice", "").c_str(),
                  static_cast<unsigned long long>(sl.value("failed", uint64_t{0})),
                  static_cast<unsigned long long>(sl.value("checked", uint64_t{0})));
      if (sl.value("null_windows_failed", uint64_t{0}))
        std::printf(", last null share %.3f", sl.value("last_null_share", 0.0));
      std::printf("\n");
      for (auto& l : sl["last"])
        std::printf("        %s: %s\n", l.value("reason", "").c_str(), l["event"].dump().c_str());
    }
  }
  return 0;
}

}  // namespace tessera::cli
