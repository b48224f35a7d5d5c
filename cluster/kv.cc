#include "kv.h"

#include <nats/nats.h>

#include "nats_text.h"

namespace tessera {
namespace {

kv_write write_result(natsStatus s, uint64_t rev, jsErrCode jerr_hint = static_cast<jsErrCode>(0)) {
  kv_write w;
  if (s == NATS_OK) {
    w.ok = true;
    w.revision = rev;
    return w;
  }
  // A revision mismatch comes back as a JetStream API error (wrong last sequence, 10071).
  const char* last = nats_GetLastError(nullptr);
  std::string text = last ? last : "";
  if (s == NATS_ERR &&
      (text.find("wrong last sequence") != std::string::npos ||
       text.find("10071") != std::string::npos || text.find("key exists") != std::string::npos ||
       jerr_hint == JSStreamWrongLastSequenceErr)) {
    w.conflict = true;
    return w;
  }
  w.error = nats_text(s);
  return w;
}

}  // namespace

result<std::unique_ptr<kv_bucket>> kv_bucket::open(__jsCtx* js, const options& o) {
  std::unique_ptr<kv_bucket> b(new kv_bucket());
  b->name_ = o.name;
  natsStatus s = js_KeyValue(&b->kv_, js, o.name.c_str());
  if (s == NATS_OK) return b;
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = o.name.c_str();
  cfg.History = static_cast<uint8_t>(o.history);
  cfg.TTL = o.ttl_ms * 1000000LL;
  cfg.Replicas = o.replicas;
  cfg.StorageType = js_FileStorage;
  s = js_CreateKeyValue(&b->kv_, js, &cfg);
  if (s != NATS_OK) {
    // Another node may have created it at the same moment.
    if (js_KeyValue(&b->kv_, js, o.name.c_str()) == NATS_OK) return b;
    return make_error("cannot open key-value bucket " + o.name + ": " + nats_text(s));
  }
  return b;
}

kv_bucket::~kv_bucket() {
  if (kv_) kvStore_Destroy(kv_);
}

result<std::optional<kv_entry>> kv_bucket::get(const std::string& key) const {
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv_, key.c_str());
  if (s == NATS_NOT_FOUND) return std::optional<kv_entry>();
  if (s != NATS_OK) return make_error("cannot read " + name_ + "/" + key + ": " + nats_text(s));
  kv_entry out;
  out.value.assign(static_cast<const char*>(kvEntry_Value(e)),
                   static_cast<size_t>(kvEntry_ValueLen(e)));
  out.revision = kvEntry_Revision(e);
  out.created_ns = kvEntry_Created(e);
  kvEntry_Destroy(e);
  return std::optional<kv_entry>(std::move(out));
}

result<std::vector<std::string>> kv_bucket::keys() const {
  kvKeysList list;
  natsStatus s = kvStore_Keys(&list, kv_, nullptr);
  std::vector<std::string> out;
  if (s == NATS_NOT_FOUND) return out;  // empty bucket
  if (s != NATS_OK) return make_error("cannot list " + name_ + ": " + nats_text(s));
  for (int i = 0; i < list.Count; ++i) out.emplace_back(list.Keys[i]);
  kvKeysList_Destroy(&list);
  return out;
}

kv_write kv_bucket::put(const std::string& key, const std::string& value) {
  uint64_t rev = 0;
  natsStatus s = kvStore_Put(&rev, kv_, key.c_str(), value.data(), static_cast<int>(value.size()));
  return write_result(s, rev);
}

kv_write kv_bucket::create(const std::string& key, const std::string& value) {
  uint64_t rev = 0;
  natsStatus s =
      kvStore_Create(&rev, kv_, key.c_str(), value.data(), static_cast<int>(value.size()));
  return write_result(s, rev);
}

kv_write kv_bucket::update(const std::string& key, const std::string& value,
                           uint64_t expected_revision) {
  uint64_t rev = 0;
  natsStatus s = kvStore_Update(&rev, kv_, key.c_str(), value.data(),
                                static_cast<int>(value.size()), expected_revision);
  return write_result(s, rev);
}

status kv_bucket::erase(const std::string& key) {
  natsStatus s = kvStore_Delete(kv_, key.c_str());
  if (s != NATS_OK && s != NATS_NOT_FOUND)
    return make_error("cannot delete " + name_ + "/" + key + ": " + nats_text(s));
  return ok_status();
}

result<std::unique_ptr<kv_bucket::watcher>> kv_bucket::watch_all() {
  std::unique_ptr<watcher> w(new watcher());
  natsStatus s = kvStore_WatchAll(&w->w_, kv_, nullptr);
  if (s != NATS_OK) return make_error("cannot watch " + name_ + ": " + nats_text(s));
  return w;
}

kv_bucket::watcher::~watcher() {
  if (w_) {
    kvWatcher_Stop(w_);
    kvWatcher_Destroy(w_);
  }
}

result<std::optional<kv_bucket::watcher::update>> kv_bucket::watcher::next(int64_t timeout_ms) {
  kvEntry* e = nullptr;
  natsStatus s = kvWatcher_Next(&e, w_, timeout_ms);
  if (s == NATS_TIMEOUT || (s == NATS_OK && !e)) return std::optional<update>();
  if (s != NATS_OK) return make_error(std::string("watch failed: ") + nats_text(s));
  update u;
  u.key = kvEntry_Key(e);
  u.entry.value.assign(static_cast<const char*>(kvEntry_Value(e)),
                       static_cast<size_t>(kvEntry_ValueLen(e)));
  u.entry.revision = kvEntry_Revision(e);
  u.entry.created_ns = kvEntry_Created(e);
  u.deleted = kvEntry_Operation(e) != kvOp_Put;
  kvEntry_Destroy(e);
  return std::optional<update>(std::move(u));
}

}  // namespace tessera
