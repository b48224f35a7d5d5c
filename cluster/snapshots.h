// Shard snapshots as large objects on JetStream (libnats 3.4 has no object store): the
// serialised state of one shard number (store::export_slices) is published as checksummed
// chunks on `tsr.snap.<shard>` in the stream TSR_SNAP, and a manifest in the KV bucket
// TSR_SNAPSHOTS (key `shard-<n>`) names the chunks' stream sequences, their CRC-32s, the
// whole blob's CRC-32 and the applied sequence of every slice. A manifest is replaced only by
// compare-and-swap and never by a snapshot with fewer applied events (a node that was cut off
// cannot roll a shard back); older chunks are purged once a newer manifest is in place.
// A snapshot whose format, size or checksums do not match is refused, never loaded.
// Thread safety: all methods are blocking NATS calls and thread-safe; call them off the actors.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kv.h"
#include "store.h"
#include "tessera/result.h"

struct __jsCtx;

namespace tessera {
class object_store;
}

namespace tessera {

struct snapshot_manifest {
  static constexpr int kFormat = 1;
  int format = kFormat;
  uint32_t shard = 0;
  std::string node;    // who wrote it
  uint64_t epoch = 0;  // shard-map epoch it was written under
  int64_t created_us = 0;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;  // of the whole blob
  struct chunk {
    uint64_t seq = 0;  // stream sequence in TSR_SNAP
    uint32_t len = 0;
    uint32_t crc32 = 0;
  };
  std::vector<chunk> chunks;
  std::map<std::string, uint64_t> applied;  // "<stream>/<kind>" → applied sequence
  uint64_t revision = 0;                    // KV revision it was read at

  uint64_t total_applied() const {
    uint64_t t = 0;
    for (auto& [k, v] : applied) t += v;
    return t;
  }
  std::string to_json() const;
  static result<snapshot_manifest> from_json(const std::string& text);
};

class snapshot_store {
 public:
  struct options {
    int replicas = 1;
    size_t chunk_bytes = 512 * 1024;
  };
  static result<std::unique_ptr<snapshot_store>> open(__jsCtx* js, const options& o);
  ~snapshot_store();

  // Publishes `blob` and installs its manifest. Returns false (not an error) when the stored
  // manifest already holds more applied events, leaving it in place.
  result<bool> save(snapshot_manifest m, const std::string& blob);
  result<std::optional<snapshot_manifest>> latest(uint32_t shard) const;
  // Reads and verifies every chunk; error on any mismatch (format, subject, size, CRC).
  result<std::string> fetch(const snapshot_manifest& m) const;
  // Test hook: writes a manifest as given (e.g. with a wrong checksum or an old format).
  kv_write TEST_put_manifest(uint32_t shard, const std::string& json);

 private:
  snapshot_store() = default;
  __jsCtx* js_ = nullptr;
  options opts_;
  std::unique_ptr<kv_bucket> manifests_;
  std::unique_ptr<object_store> objects_;
};

}  // namespace tessera
