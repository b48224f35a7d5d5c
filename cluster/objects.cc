#include "objects.h"

#include <nats/nats.h>

#include <zlib.h>
#include <nlohmann/json.hpp>
#include "nats_text.h"

namespace tessera {
uint32_t crc32_of(const char* p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt step = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = crc32(c, reinterpret_cast<const Bytef*>(p), step);
    p += step;
    n -= step;
  }
  return static_cast<uint32_t>(c);
}

nlohmann::json object_ref::to_json() const {
  nlohmann::json j{{"subject", subject}, {"bytes", bytes}, {"crc32", crc32}};
  j["chunks"] = nlohmann::json::array();
  for (auto& c : chunks)
    j["chunks"].push_back({{"seq", c.seq}, {"len", c.len}, {"crc32", c.crc32}});
  return j;
}

result<object_ref> object_ref::from_json(const nlohmann::json& j) {
  try {
    object_ref r;
    r.subject = j.at("subject").get<std::string>();
    r.bytes = j.at("bytes").get<uint64_t>();
    r.crc32 = j.at("crc32").get<uint32_t>();
    for (auto& c : j.at("chunks"))
      r.chunks.push_back({c.at("seq").get<uint64_t>(), c.at("len").get<uint32_t>(),
                          c.at("crc32").get<uint32_t>()});
    return r;
  } catch (const std::exception& e) {
    return make_error(std::string("malformed object reference: ") + e.what());
  }
}

result<std::unique_ptr<object_store>> object_store::open(__jsCtx* js, const options& o) {
  std::unique_ptr<object_store> s(new object_store());
  s->js_ = js;
  s->opts_ = o;
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {o.subjects.c_str()};
  cfg.Name = o.stream.c_str();
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
  if (st != NATS_OK)
    return make_error("cannot create the object stream " + o.stream + ": " + nats_text(st));
  return s;
}

result<object_ref> object_store::put(const std::string& subject, const std::string& blob) {
  object_ref r;
  r.subject = subject;
  r.bytes = blob.size();
  r.crc32 = crc32_of(blob.data(), blob.size());
  for (size_t off = 0; off < blob.size() || (off == 0 && blob.empty()); off += opts_.chunk_bytes) {
    size_t len = std::min(opts_.chunk_bytes, blob.size() - off);
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus st = js_Publish(&pa, js_, subject.c_str(), blob.data() + off, static_cast<int>(len),
                               nullptr, &jerr);
    if (st != NATS_OK || !pa) {
      if (pa) jsPubAck_Destroy(pa);
      remove(r);
      return make_error("cannot store a chunk on " + subject + ": " + nats_text(st));
    }
    r.chunks.push_back(
        {pa->Sequence, static_cast<uint32_t>(len), crc32_of(blob.data() + off, len)});
    jsPubAck_Destroy(pa);
    if (blob.empty()) break;
  }
  return r;
}

result<std::string> object_store::get(const object_ref& ref, const std::string& what) const {
  std::string blob;
  blob.reserve(ref.bytes);
  for (size_t i = 0; i < ref.chunks.size(); ++i) {
    auto& c = ref.chunks[i];
    natsMsg* msg = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus st = js_GetMsg(&msg, js_, opts_.stream.c_str(), c.seq, nullptr, &jerr);
    if (st != NATS_OK || !msg)
      return make_error(what + ": chunk " + std::to_string(i) + " (seq " + std::to_string(c.seq) +
                        ") is missing: " + nats_text(st));
    std::string got_subj = natsMsg_GetSubject(msg);
    std::string data(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
    if (got_subj != ref.subject)
      return make_error(what + ": chunk " + std::to_string(i) + " is from " + got_subj);
    if (data.size() != c.len || crc32_of(data.data(), data.size()) != c.crc32)
      return make_error(what + ": chunk " + std::to_string(i) + " fails its checksum");
    blob += data;
  }
  if (blob.size() != ref.bytes || crc32_of(blob.data(), blob.size()) != ref.crc32)
    return make_error(what + " fails its checksum (" + std::to_string(blob.size()) + " bytes)");
  return blob;
}

void object_store::remove(const object_ref& ref) {
  for (auto& c : ref.chunks) js_DeleteMsg(js_, opts_.stream.c_str(), c.seq, nullptr, nullptr);
}

}  // namespace tessera
