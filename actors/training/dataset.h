// Point-in-time training sets, built by scatter/gather over the shards' owners.
//
// A dataset is made shard by shard of the label's entity kind: the node that serves shard s
// scans its offline log for examples (log entries whose prediction time is in range), and
// joins each to the label's feature views as known at the feature time (runtime/point_in_time.h).
// A view's entity may live on another shard: values of shards this node serves come from its
// RocksDB; the others are asked of their owners over NATS (tsr.node.<id>.pit, PitRead), in
// chunks. The client (`tessera dataset build`) asks each shard's owner for its part and
// concatenates them, so the work spreads over the cluster.
//
// Lifecycle: owned by the node, created before the gateway and destroyed after it (its
// destructor joins the worker threads; a request that arrives later is refused). Work runs on
// its own worker threads, never on actor, kj or libnats threads.
//
// Files: dataset.cc the facade (worker pools, shard_part); dataset_part.cc builds a part;
// dataset_csv.h writes its CSV; dataset_logs.cc reads this node's logs (the cache of indexed
// logs, local point-in-time reads); dataset_remote.cc is the NATS side (asking other nodes,
// answering theirs); dataset_impl.h what they share.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/result.h"

namespace tessera {

struct features_context;
struct feature_vector;
struct label_def;
struct view_def;

struct dataset_part {
  std::vector<std::string> columns;  // prediction_time, entity, label, feature columns
  std::string csv;                   // rows without a header
  uint64_t rows = 0;
  uint64_t examples = 0;
  uint64_t outside_retention = 0;
  uint64_t unlabelled = 0;
  uint64_t non_finite = 0;
};

class dataset_service {
 public:
  explicit dataset_service(std::shared_ptr<const features_context> ctx, int threads = 2);
  ~dataset_service();

  // Answers point-in-time reads of other nodes (tsr.node.<this node>.pit).
  status serve();

  // The part of shard `shard` for examples with prediction time in [from, to). `done` runs once,
  // on a worker thread; `retryable` when the shard is moving or an owner did not answer.
  using part_fn = std::function<void(result<dataset_part>, bool retryable)>;
  void shard_part(const label_def& label, uint32_t shard, int64_t from, int64_t to, part_fn done);

  // The same from any node, blocking (a worker of the caller's): built here when this node
  // serves the shard, else fetched from its owner over NATS (tsr.node.<id>.part, in pages
  // under NATS' payload limit). For training jobs, which build their dataset on their node.
  result<dataset_part> fetch_part(const label_def& label, uint32_t shard, int64_t from, int64_t to,
                                  bool& retryable);

  // Point-in-time vectors of `v` from the offline log, one per (entity key, time), as a
  // training set built now would hold them (the same reads as a part's); shards of other nodes
  // are asked of their owners. A vector with as_of 0: the time is outside the offline
  // retention. Blocking; for skew measurement (actors/inference).
  result<std::vector<feature_vector>> point_in_time(
      const view_def& v, const std::vector<std::pair<std::string, int64_t>>& lookups) const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

std::string node_pit_subject(const std::string& node_id);
std::string node_part_subject(const std::string& node_id);

}  // namespace tessera
