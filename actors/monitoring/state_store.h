// Where the monitor's saved states live (checkpoint.h): in JetStream, so that they outlive the
// node that wrote them — the node computing a model may die and another take the model over
// from its last state. A state is a blob of chunks on `tsr.monstate.<model>` in the stream
// TSR_MONSTATE (cluster/objects.h: checksummed chunks) with a manifest in the KV bucket
// TSR_MONITOR (the chunks' reference, who saved it, when); a new manifest replaces the old one
// by compare-and-swap and the old chunks are deleted then.
// Thread safety: blocking NATS calls, thread-safe; call them off the actor and kj threads.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "tessera/result.h"

struct __jsCtx;

namespace tessera {

class kv_bucket;
class object_store;

class monitor_state_store {
 public:
  static result<std::unique_ptr<monitor_state_store>> open(__jsCtx* js, int replicas);
  ~monitor_state_store();
  // Replaces `model`'s saved state with `bytes`.
  status save(const std::string& model, const std::string& bytes, const std::string& node);
  // The saved state of `model`, nullopt when none was saved; an error when it cannot be read
  // or its chunks do not match their checksums.
  result<std::optional<std::string>> load(const std::string& model) const;

 private:
  monitor_state_store() = default;
  std::unique_ptr<kv_bucket> manifests_;
  std::unique_ptr<object_store> objects_;
};

}  // namespace tessera
