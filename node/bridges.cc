#include "bridges.h"

namespace tessera {

// Until the reader reads many points at once: one read per (view, read time), gathered.
void reader_feature_source::read(std::vector<lookup> lookups, int64_t timeout_ms,
                                 done_fn done) const {
  (void)timeout_ms;
  struct gather {
    std::mutex mu;
    std::vector<result<feature_vector>> out;
    size_t left = 0;
    done_fn done;
  };
  auto g = std::make_shared<gather>();
  g->out.resize(lookups.size(), make_error("not read"));
  g->done = std::move(done);
  std::map<std::pair<const view_def*, int64_t>, std::vector<size_t>> groups;
  for (size_t i = 0; i < lookups.size(); ++i)
    groups[{lookups[i].view, lookups[i].as_of}].push_back(i);
  g->left = groups.size();
  if (groups.empty()) return g->done({});
  for (auto& [k, idx] : groups) {
    std::vector<std::string> keys;
    for (size_t i : idx) keys.push_back(lookups[i].key);
    r_.read(k.first, std::move(keys), k.second, /*forward=*/true,
            [g, idx = idx](result<std::vector<feature_vector>> r) {
              bool last;
              {
                std::lock_guard<std::mutex> l(g->mu);
                for (size_t j = 0; j < idx.size(); ++j)
                  g->out[idx[j]] = r ? result<feature_vector>((*r)[j]) : r.failure();
                last = --g->left == 0;
              }
              if (last) g->done(std::move(g->out));
            });
  }
}

}  // namespace tessera
