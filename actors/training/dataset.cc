// The dataset service's facade: its worker pools and the entry point for the gateway's parts.
// Parts are built in dataset_part.cc, logs read and cached in dataset_logs.cc, other nodes
// reached in dataset_remote.cc.
#include "dataset.h"

#include "dataset_impl.h"

namespace tessera {

dataset_service::dataset_service(std::shared_ptr<const features_context> ctx, int threads)
    : impl_(std::make_shared<impl>(threads)) {
  impl_->ctx = std::move(ctx);
}

dataset_service::~dataset_service() {
  impl_->parts.stop();
  impl_->reads.stop();
}

void dataset_service::shard_part(const label_def& label, uint32_t shard, int64_t from, int64_t to,
                                 part_fn done) {
  auto im = impl_;
  const label_def* l = &label;
  auto shared_done = std::make_shared<part_fn>(std::move(done));
  if (!im->parts.submit([im, l, shard, from, to, shared_done] {
        bool retryable = false;
        auto r = im->build_part(*l, shard, from, to, retryable);
        (*shared_done)(std::move(r), retryable);
      }))
    (*shared_done)(make_error("the node is stopping"), true);
}

result<std::vector<feature_vector>> dataset_service::point_in_time(
    const view_def& v, const std::vector<std::pair<std::string, int64_t>>& lookups) const {
  const uint32_t nshards = impl_->ctx->opts.shard_count;
  std::map<uint32_t, std::vector<dataset_detail::item>> by_shard;
  for (size_t i = 0; i < lookups.size(); ++i)
    by_shard[shard_of(lookups[i].first, nshards)].push_back(
        {lookups[i].first, lookups[i].second, i});
  std::vector<feature_vector> out(lookups.size());
  for (auto& [shard, items] : by_shard) {
    const route r =
        impl_->ctx->cluster ? impl_->ctx->cluster->route_of(shard) : route{route::local, {}, {}};
    auto got = r.kind == route::remote ? impl_->remote_pit(v, shard, r.owner, items)
                                       : impl_->local_pit(v, shard, items, /*shared=*/false);
    if (!got)
      return make_error("shard " + std::to_string(shard) + ": " + got.error_message(),
                        errc::retryable);
    for (size_t k = 0; k < items.size() && k < got->size(); ++k)
      out[items[k].row] = std::move((*got)[k]);
  }
  return out;
}

}  // namespace tessera
