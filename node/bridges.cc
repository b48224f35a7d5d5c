#include "bridges.h"

namespace tessera {

void reader_feature_source::read(std::vector<lookup> lookups, int64_t timeout_ms,
                                 done_fn done) const {
  std::vector<point_lookup> points;
  points.reserve(lookups.size());
  for (auto& l : lookups) points.push_back({l.view, std::move(l.key), l.as_of});
  r_.read_points(std::move(points), timeout_ms, std::move(done));
}

}  // namespace tessera
