// Large objects on JetStream (libnats 3.4 has no object store): a blob is published as chunks
// on one subject of a dedicated stream, each with its CRC-32, and described by an object_ref
// (chunk sequences, sizes, CRCs, and the whole blob's CRC) that the caller keeps in a KV
// manifest. Used for shard snapshots (TSR_SNAP) and model artifacts (TSR_OBJECTS).
// Thread safety: blocking NATS calls, thread-safe; call them off the actor and kj threads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tessera/result.h"

struct __jsCtx;

namespace tessera {

uint32_t crc32_of(const char* p, size_t n);

struct object_ref {
  std::string subject;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;  // of the whole blob
  struct chunk {
    uint64_t seq = 0;  // stream sequence
    uint32_t len = 0;
    uint32_t crc32 = 0;
  };
  std::vector<chunk> chunks;
  nlohmann::json to_json() const;
  static result<object_ref> from_json(const nlohmann::json& j);
};

class object_store {
 public:
  struct options {
    std::string stream;    // e.g. "TSR_OBJECTS"
    std::string subjects;  // e.g. "tsr.obj.>"
    int replicas = 1;
    size_t chunk_bytes = 512 * 1024;
  };
  // Opens the stream, creating it if missing.
  static result<std::unique_ptr<object_store>> open(__jsCtx* js, const options& o);

  // Publishes `blob` as chunks on `subject`. On an error the chunks already stored are deleted.
  result<object_ref> put(const std::string& subject, const std::string& blob);
  // Reads and verifies every chunk (subject, size, CRC-32 of each and of the whole); `what`
  // names the object in errors.
  result<std::string> get(const object_ref& ref, const std::string& what) const;
  // Deletes the chunks (best effort).
  void remove(const object_ref& ref);

 private:
  object_store() = default;
  __jsCtx* js_ = nullptr;
  options opts_;
};

}  // namespace tessera
