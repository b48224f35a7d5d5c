#include "snapshots.h"

#include <nats/nats.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "time_util.h"

namespace tessera {
namespace {

constexpr const char* kStream = "TSR_SNAP";

std::string chunk_subject(uint32_t shard) { return "tsr.snap." + std::to_string(shard); }
std::string manifest_key(uint32_t shard) { return "shard-" + std::to_string(shard); }

uint32_t crc_of(const char* p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt step = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = crc32(c, reinterpret_cast<const Bytef*>(p), step);
    p += step;
    n -= step;
  }
  return static_cast<uint32_t>(c);
}

std::string nats_text(natsStatus s) {
  std::string m = natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last && *last) m += std::string(" (") + last + ")";
  return m;
}

}  // namespace

std::string snapshot_manifest::to_json() const {
  nlohmann::json j{{"format", format}, {"shard", shard},   {"node", node},   {"epoch", epoch},
                   {"created", format_timestamp(created_us)}, {"created_us", created_us},
                   {"bytes", bytes},   {"crc32", crc32},   {"applied", applied}};
  j["chunks"] = nlohmann::json::array();
  for (auto& c : chunks) j["chunks"].push_back({{"seq", c.seq}, {"len", c.len}, {"crc32", c.crc32}});
  return j.dump();
}

result<snapshot_manifest> snapshot_manifest::from_json(const std::string& text) {
  try {
    auto j = nlohmann::json::parse(text);
    snapshot_manifest m;
    m.format = j.at("format").get<int>();
    if (m.format != kFormat)
      return make_error("snapshot manifest has format " + std::to_string(m.format) + "; this node reads format " +
                        std::to_string(kFormat));
    m.shard = j.at("shard").get<uint32_t>();
    m.node = j.at("node").get<std::string>();
    m.epoch = j.at("epoch").get<uint64_t>();
    m.created_us = j.at("created_us").get<int64_t>();
    m.bytes = j.at("bytes").get<uint64_t>();
    m.crc32 = j.at("crc32").get<uint32_t>();
    m.applied = j.at("applied").get<std::map<std::string, uint64_t>>();
    for (auto& c : j.at("chunks")) m.chunks.push_back({c.at("seq").get<uint64_t>(), c.at("len").get<uint32_t>(), c.at("crc32").get<uint32_t>()});
    return m;
  } catch (const std::exception& e) {
    return make_error(std::string("malformed snapshot manifest: ") + e.what());
  }
}

result<std::unique_ptr<snapshot_store>> snapshot_store::open(__jsCtx* js, const options& o) {
  std::unique_ptr<snapshot_store> s(new snapshot_store());
  s->js_ = js;
  s->opts_ = o;
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {"tsr.snap.>"};
  cfg.Name = kStream;
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = o.replicas;
  cfg.MaxMsgSize = static_cast<int32_t>(o.chunk_bytes + 4096);
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus st = js_AddStream(&si, js, &cfg, nullptr, &jerr);
  if (st != NATS_OK && jerr == JSStreamNameExistErr) st = NATS_OK;
  if (si) jsStreamInfo_Destroy(si);
  if (st != NATS_OK) return make_error("cannot create the snapshot stream " + std::string(kStream) + ": " + nats_text(st));
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
  const std::string subj = chunk_subject(m.shard);
  for (size_t off = 0; off < blob.size() || (off == 0 && blob.empty()); off += opts_.chunk_bytes) {
    size_t len = std::min(opts_.chunk_bytes, blob.size() - off);
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus st = js_Publish(&pa, js_, subj.c_str(), blob.data() + off, static_cast<int>(len), nullptr, &jerr);
    if (st != NATS_OK || !pa) {
      if (pa) jsPubAck_Destroy(pa);
      return make_error("cannot store a snapshot chunk of shard " + std::to_string(m.shard) + ": " + nats_text(st));
    }
    m.chunks.push_back({pa->Sequence, static_cast<uint32_t>(len), crc_of(blob.data() + off, len)});
    jsPubAck_Destroy(pa);
    if (blob.empty()) break;
  }
  // Install the manifest unless the stored one holds more; retry on a concurrent change.
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto cur = manifests_->get(manifest_key(m.shard));
    if (!cur) return make_error(cur.error_message());
    kv_write w;
    std::optional<snapshot_manifest> old;
    if (!cur->has_value()) {
      w = manifests_->create(manifest_key(m.shard), m.to_json());
    } else {
      auto parsed = snapshot_manifest::from_json((*cur)->value);
      if (parsed && parsed->total_applied() > m.total_applied()) {
        for (auto& c : m.chunks) js_DeleteMsg(js_, kStream, c.seq, nullptr, nullptr);  // ours are not needed
        return false;
      }
      if (parsed) old = std::move(parsed.value());
      w = manifests_->update(manifest_key(m.shard), m.to_json(), (*cur)->revision);
    }
    if (w.ok) {
      // The previous snapshot's chunks are no longer referenced: delete exactly those (a purge
      // by subject and sequence is not relied upon: nats-server 2.9 purged newer chunks too).
      if (old)
        for (auto& c : old->chunks) js_DeleteMsg(js_, kStream, c.seq, nullptr, nullptr);
      return true;
    }
    if (!w.conflict) return make_error("cannot install the snapshot manifest of shard " + std::to_string(m.shard) + ": " + w.error);
  }
  return make_error("snapshot manifest of shard " + std::to_string(m.shard) + " kept changing under concurrent writers");
}

result<std::optional<snapshot_manifest>> snapshot_store::latest(uint32_t shard) const {
  auto cur = manifests_->get(manifest_key(shard));
  if (!cur) return make_error(cur.error_message());
  if (!cur->has_value()) return std::optional<snapshot_manifest>();
  auto m = snapshot_manifest::from_json((*cur)->value);
  if (!m) return make_error("shard " + std::to_string(shard) + ": " + m.error_message());
  if (m->shard != shard) return make_error("snapshot manifest under shard-" + std::to_string(shard) + " names shard " + std::to_string(m->shard));
  m->revision = (*cur)->revision;
  return std::optional<snapshot_manifest>(std::move(m.value()));
}

result<std::string> snapshot_store::fetch(const snapshot_manifest& m) const {
  std::string blob;
  blob.reserve(m.bytes);
  const std::string subj = chunk_subject(m.shard);
  for (size_t i = 0; i < m.chunks.size(); ++i) {
    auto& c = m.chunks[i];
    natsMsg* msg = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus st = js_GetMsg(&msg, js_, kStream, c.seq, nullptr, &jerr);
    if (st != NATS_OK || !msg)
      return make_error("snapshot of shard " + std::to_string(m.shard) + ": chunk " + std::to_string(i) + " (seq " + std::to_string(c.seq) +
                        ") is missing: " + nats_text(st));
    std::string got_subj = natsMsg_GetSubject(msg);
    std::string data(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
    if (got_subj != subj) return make_error("snapshot of shard " + std::to_string(m.shard) + ": chunk " + std::to_string(i) + " is from " + got_subj);
    if (data.size() != c.len || crc_of(data.data(), data.size()) != c.crc32)
      return make_error("snapshot of shard " + std::to_string(m.shard) + ": chunk " + std::to_string(i) + " fails its checksum");
    blob += data;
  }
  if (blob.size() != m.bytes || crc_of(blob.data(), blob.size()) != m.crc32)
    return make_error("snapshot of shard " + std::to_string(m.shard) + " fails its checksum (" + std::to_string(blob.size()) + " bytes)");
  return blob;
}

kv_write snapshot_store::TEST_put_manifest(uint32_t shard, const std::string& json) { return manifests_->put(manifest_key(shard), json); }

}  // namespace tessera
