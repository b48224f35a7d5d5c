// Which node owns which shard. The feature supervisor asks it which shards to run; the gateway
// asks it where to route. This issue has one node owning every shard through the same interface
// that the cluster issue implements over a JetStream KV bucket.
// Thread safety: implementations are safe to read from any thread.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

class shard_map {
 public:
  virtual ~shard_map() = default;
  virtual uint32_t shard_count() const = 0;
  virtual std::vector<uint32_t> owned_by(const std::string& node_id) const = 0;
  virtual std::string owner_of(uint32_t shard) const = 0;
};

// Every shard is owned by one node.
class single_node_shard_map final : public shard_map {
 public:
  single_node_shard_map(std::string node_id, uint32_t shard_count)
      : node_(std::move(node_id)), count_(shard_count) {}
  uint32_t shard_count() const override { return count_; }
  std::vector<uint32_t> owned_by(const std::string& node_id) const override {
    std::vector<uint32_t> out;
    if (node_id == node_) for (uint32_t i = 0; i < count_; ++i) out.push_back(i);
    return out;
  }
  std::string owner_of(uint32_t) const override { return node_; }

 private:
  std::string node_;
  uint32_t count_;
};

}  // namespace tessera
