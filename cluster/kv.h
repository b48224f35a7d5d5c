// A JetStream key-value bucket (libnats kvStore): the cluster's shared, revisioned state —
// membership heartbeats, the leader lease and the shard map (see cluster/README.md).
// Every write that must not lose a race goes through create() or update(rev): compare-and-swap
// on the key's revision, reported as `conflict` when another writer got there first.
// Thread safety: libnats KV handles are thread-safe; so is this wrapper.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tessera/result.h"

struct __kvStore;
struct __kvWatcher;
struct __jsCtx;

namespace tessera {

struct kv_entry {
  std::string value;
  uint64_t revision = 0;
  int64_t created_ns = 0;  // server time of this revision
};

// The outcome of a compare-and-swap write.
struct kv_write {
  bool ok = false;
  bool conflict = false;  // the key's revision was not the expected one (or it already existed)
  uint64_t revision = 0;  // the new revision when ok
  std::string error;      // when neither ok nor conflict: the NATS error
};

class kv_bucket {
 public:
  struct options {
    std::string name;
    int64_t ttl_ms = 0;  // 0: entries never expire
    int replicas = 1;
    int history = 1;
  };
  // Opens the bucket, creating it if missing.
  static result<std::unique_ptr<kv_bucket>> open(__jsCtx* js, const options& o);
  ~kv_bucket();

  // nullopt when the key is absent or deleted; error on a NATS failure.
  result<std::optional<kv_entry>> get(const std::string& key) const;
  result<std::vector<std::string>> keys() const;
  kv_write put(const std::string& key, const std::string& value);
  kv_write create(const std::string& key, const std::string& value);
  kv_write update(const std::string& key, const std::string& value, uint64_t expected_revision);
  status erase(const std::string& key);
  const std::string& name() const { return name_; }

  // Every change of every key, starting with the current values (one long-lived ordered
  // consumer, not a listing per poll). Not thread-safe: one reader.
  class watcher {
   public:
    ~watcher();
    struct update {
      std::string key;
      kv_entry entry;
      bool deleted = false;
    };
    // The next change within `timeout_ms`; nullopt on timeout (or the end of the initial values).
    result<std::optional<update>> next(int64_t timeout_ms);

   private:
    friend class kv_bucket;
    __kvWatcher* w_ = nullptr;
  };
  result<std::unique_ptr<watcher>> watch_all();

 private:
  kv_bucket() = default;
  __kvStore* kv_ = nullptr;
  std::string name_;
};

}  // namespace tessera
