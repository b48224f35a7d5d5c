#include "snapshots.h"

#include <nats/nats.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include "objects.h"
#include "retry.h"
#include "time_util.h"

namespace tessera {
namespace {

constexpr const char* kStream = "TSR_SNAP";

std::string chunk_subject(uint32_t shard) {
  return "tsr.snap." + std::to_string(shard);
}
std::string manifest_key(uint32_t shard) {
  return "shard-" + std::to_string(shard);
}

uint32_t crc_of(const char* p, size_t n) {
  return crc32_of(p, n);
}

}  // namespace

std::string snapshot_manifest::to_json() const {
  nlohmann::json j{{"format", format},
                   {"shard", shard},
                   {"node", node},
                   {"epoch", epoch},
                   {"created", format_timestamp(created_us)},
                   {"created_us", created_us},
                   {"bytes", bytes},
                   {"crc32", crc32},
                   {"applied", applied}};
  j["chunks"] = nlohmann::json::array();
  for (auto& c : chunks)
    j["chunks"].push_back({{"seq", c.seq}, {"len", c.len}, {"crc32", c.crc32}});
  return j.dump();
}

result<snapshot_manifest> snapshot_manifest::from_json(const std::string& text) {
  try {
    auto j = nlohmann::json::parse(text);
    snapshot_manifest m;
    m.format = j.at("format").get<int>();
    if (m.format != kFormat)
      return make_error("snapshot manifest has format " + std::to_string(m.format) +
                        "; this node reads format " + std::to_string(kFormat));
    m.shard = j.at("shard").get<uint32_t>();
    m.node = j.at("node").get<std::string>();
    m.epoch = j.at("epoch").get<uint64_t>();
    m.created_us = j.at("created_us").get<int64_t>();
    m.bytes = j.at("bytes").get<uint64_t>();
    m.crc32 = j.at("crc32").get<uint32_t>();
    m.applied = j.at("applied").get<std::map<std::string, uint64_t>>();
    for (auto& c : j.at("chunks"))
      m.chunks.push_back({c.at("seq").get<uint64_t>(), c.at("len").get<uint32_t>(),
                          c.at("crc32").get<uint32_t>()});
    return m;
  } catch (const std::exception& e) {
    return make_error(std::string("malformed snapshot manifest: ") + e.what());
  }
}

result<std::unique_ptr<snapshot_store>> snapshot_store::open(__jsCtx* js, const options& o) {
  std::unique_ptr<snapshot_store> s(new snapshot_store());
  s->js_ = js;
  s->opts_ = o;
  auto objects = object_store::open(js, {kStream, "tsr.snap.>", o.replicas, o.chunk_bytes});
  if (!objects) return make_error(objects.error_message());
  s->objects_ = std::move(objects.value());
  auto kv = kv_bucket::open(js, {"TSR_SNAPSHOTS", 0, o.replicas, 1});
  if (!kv) return make_error(kv.error_message());
  s->manifests_ = std::move(kv.value());
  return s;
}

snapshot_store::~snapshot_store() = default;

result<bool> snapshot_store::save(snapshot_manifest m, const std::string& blob) {
  m.format = snapshot_manifest::kFormat;
  m.bytes = blob.size();
  m.crc32 = crc_of(blob.data(), blob.size());
  m.chunks.clear();
  auto ref = objects_->put(chunk_subject(m.shard), blob);
  if (!ref)
    return make_error("cannot store a snapshot chunk of shard " + std::to_string(m.shard) + ": " +
                      ref.error_message());
  for (auto& c : ref->chunks) m.chunks.push_back({c.seq, c.len, c.crc32});
  // Install the manifest unless the stored one holds more; on a concurrent change (the swap
  // lost), read it again and retry at once. Every other error is re-made without its code, so
  // only a lost swap is retried; the last loss is returned without a code as before.
  auto installed = retry(retry_policy{5}, [&]() -> result<bool> {
    auto cur = manifests_->get(manifest_key(m.shard));
    if (!cur) return make_error(cur.error_message());
    kv_write w;
    std::optional<snapshot_manifest> old;
    if (!cur->has_value()) {
      w = manifests_->create(manifest_key(m.shard), m.to_json());
    } else {
      auto parsed = snapshot_manifest::from_json((*cur)->value);
      if (parsed && parsed->total_applied() > m.total_applied()) {
        objects_->remove(*ref);  // ours are not needed
        return false;
      }
      if (parsed) old = std::move(parsed.value());
      w = manifests_->update(manifest_key(m.shard), m.to_json(), (*cur)->revision);
    }
    if (w.ok) {
      // The previous snapshot's chunks are no longer referenced: delete exactly those (a purge
      // by subject and sequence is not relied upon: nats-server 2.9 purged newer chunks too).
      if (old) {
        object_ref stale;
        for (auto& c : old->chunks) stale.chunks.push_back({c.seq, c.len, c.crc32});
        objects_->remove(stale);
      }
      return true;
    }
    if (!w.conflict)
      return make_error("cannot install the snapshot manifest of shard " + std::to_string(m.shard) +
                        ": " + w.error);
    return make_error("snapshot manifest of shard " + std::to_string(m.shard) +
                          " kept changing under concurrent writers",
                      errc::retryable);
  });
  if (!installed) return make_error(installed.error_message());
  return installed;
}

result<std::optional<snapshot_manifest>> snapshot_store::latest(uint32_t shard) const {
  auto cur = manifests_->get(manifest_key(shard));
  if (!cur) return make_error(cur.error_message());
  if (!cur->has_value()) return std::optional<snapshot_manifest>();
  auto m = snapshot_manifest::from_json((*cur)->value);
  if (!m) return make_error("shard " + std::to_string(shard) + ": " + m.error_message());
  if (m->shard != shard)
    return make_error("snapshot manifest under shard-" + std::to_string(shard) + " names shard " +
                      std::to_string(m->shard));
  m->revision = (*cur)->revision;
  return std::optional<snapshot_manifest>(std::move(m.value()));
}

result<std::string> snapshot_store::fetch(const snapshot_manifest& m) const {
  object_ref ref;
  ref.subject = chunk_subject(m.shard);
  ref.bytes = m.bytes;
  ref.crc32 = m.crc32;
  for (auto& c : m.chunks) ref.chunks.push_back({c.seq, c.len, c.crc32});
  return objects_->get(ref, "snapshot of shard " + std::to_string(m.shard));
}

kv_write snapshot_store::TEST_put_manifest(uint32_t shard, const std::string& json) {
  return manifests_->put(manifest_key(shard), json);
}

}  // namespace tessera
