#include "feature_shards.h"

#include <spdlog/spdlog.h>

#include "messages.h"
#include "vector_cache.h"

namespace tessera {

std::vector<uint32_t> feature_shards::start_shards(const std::vector<uint32_t>& shards) {
  if (shards.empty()) return {};
  caf::scoped_actor self{sys_};
  std::vector<uint32_t> started;
  self->request(supervisor_, std::chrono::seconds(30), own_atom::value, shards)
      .receive([&](std::vector<uint32_t>& r) { started = std::move(r); },
               [&](caf::error& e) {
                 spdlog::warn("features: starting {} shard(s) failed: {}", shards.size(),
                              sys_.render(e));
               });
  return started;
}

void feature_shards::stop_shards(const std::vector<uint32_t>& shards) {
  caf::scoped_actor self{sys_};
  for (uint32_t s : shards) self->send(supervisor_, release_atom::value, s);
  for (size_t i = 0; i < shards.size(); ++i)
    self->receive([](bool) {},
                  caf::after(std::chrono::seconds(30)) >>
                      [&] { spdlog::warn("features: shard actors did not stop within 30 s"); });
  if (cache_)
    for (uint32_t s : shards) cache_->clear_shard(s);
}

}  // namespace tessera
