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

}  // namespace tessera
