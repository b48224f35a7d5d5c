#include "bridges.h"

namespace tessera {

void reader_feature_source::read(std::vector<lookup> lookups, int64_t timeout_ms,
                                 done_fn done) const {
  std::vector<point_lookup> points;
  points.reserve(lookups.size());
  for (auto& l : lookups) points.push_back({l.view, std::move(l.key), l.as_of, l.settled});
  r_.read_points(std::move(points), timeout_ms, std::move(done));
}

std::vector<quality_service::deps::served_counters> served_counters(const inference_service& inf) {
  std::vector<quality_service::deps::served_counters> out;
  for (auto& e : inf.serving()) {
    if (!e.model || e.stage == "shadow") continue;
    quality_service::deps::served_counters c;
    c.model = e.name;
    c.source = std::to_string(e.model->version) + ":" + e.stage;
    c.requests = e.model->requests.load();
    c.errors = e.model->errors.load();
    c.fallbacks = e.model->fallbacks.load();
    c.at_least = [m = e.model](double us) { return m->latency.count_at_least_us(us); };
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace tessera
