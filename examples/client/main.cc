// Sends three flights to a Tessera node running the flights definitions, waits until they are
// applied, reads the airports' features and prints them; shows how errors carry a code.
//   tessera_client_example HOST:PORT
#include <tessera/client.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <variant>

namespace tc = tessera::client;

static tc::event flight(const char* date, double delay, const char* origin, const char* dest) {
  tc::event e;
  e.fields = {{"date", std::string(date)},
              {"delay", delay},
              {"origin", std::string(origin)},
              {"destination", std::string(dest)}};
  return e;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 2;
  }
  auto conn = tc::connection::open(argv[1]);
  auto ingested = conn->ingest("flights",
                               {flight("2001-01-01T10:00:00Z", 12, "LAX", "SFO"),
                                flight("2001-01-01T10:20:00Z", 30, "LAX", "JFK"),
                                flight("2001-01-01T10:40:00Z", 3, "SFO", "LAX")},
                               "client-example-1");
  if (!ingested) {
    std::fprintf(stderr, "ingest failed (%s): %s\n", tessera::errc_name(ingested.error_code()),
                 ingested.error_message().c_str());
    return 1;
  }
  std::printf("accepted %u, rejected %zu\n", ingested->accepted, ingested->rejected.size());
  // Applied within milliseconds; wait until both airports have their events (at most 30 s).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto v = conn->features("airport_delay", {"LAX", "SFO"});
    if (!v) {
      std::fprintf(stderr, "read failed (%s): %s\n", tessera::errc_name(v.error_code()),
                   v.error_message().c_str());
      return 1;
    }
    const tc::value* lax = (*v)[0].find("count_1h");
    const tc::value* sfo = (*v)[1].find("count_1h");
    bool ready = lax && sfo && std::holds_alternative<int64_t>(*lax) &&
                 std::holds_alternative<int64_t>(*sfo) && std::get<int64_t>(*lax) == 2 &&
                 std::get<int64_t>(*sfo) == 1;
    if (ready) {
      for (auto& fv : *v) {
        std::printf("%s:", fv.entity.c_str());
        for (auto& f : fv.values) {
          if (auto* i = std::get_if<int64_t>(&f.v))
            std::printf(" %s=%lld", f.name.c_str(), static_cast<long long>(*i));
          if (auto* d = std::get_if<double>(&f.v)) std::printf(" %s=%g", f.name.c_str(), *d);
        }
        std::printf("\n");
      }
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "the events were not applied within 30 s\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // An error names its kind: the caller decides without reading the text.
  auto bad = conn->features("no_such_view", {"LAX"});
  std::printf("unknown view -> %s\n", tessera::errc_name(bad.error_code()));
  return bad.error_code() == tessera::errc::not_found ? 0 : 1;
}
