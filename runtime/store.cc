#include "store.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include <capnp/serialize.h>

#include "codec.h"

namespace tessera {
namespace {

// Key layout (all keys start with a one-letter family):
//   m/<stream>/<kind>/<shard4>                       -> shard_meta
//   k/<stream>/<kind>/<shard4>/<key>                 -> "" (entity known to the shard)
//   v/<view@ver>/<shard4>/<key>                      -> FeatureVector (Cap'n Proto)
//   o/<stream>/<kind>/<shard4>/<key>\0<t><seq><idx>  -> offline log (big-endian, sign-flipped t),
//                                                       one entry: u64 known time (top bit:
//                                                       offline_only) + encoded record with
//                                                       every stream field; or a block
//                                                       (kLogBlockSpanUs; keyed by its latest
//                                                       entry): kBlockFormat, u32 count, then
//                                                       per entry u32 size + such an entry
//   l/<stream>/<kind>/<shard4>                       -> layout marker (kLayout)
// Written by Tessera before 2026-12 only (removed by ensure_layout):
//   e/<stream>/<kind>/<shard4>/<key>\0<t><seq><idx>  -> window record (the plan's fields)
constexpr char kLayout[] = "windows-from-log/1";
constexpr uint64_t kOfflineOnlyBit = 1ULL << 63;
// The first byte of a log block. A single entry starts with its known time, big-endian, whose
// first byte is 0x00 or 0x80 (offline_only) for any time before the year 4000.
constexpr char kBlockFormat = 0x01;
std::string shard_part(const shard_id& s) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04u", s.shard);
  return s.stream + "/" + s.kind + "/" + buf;
}
void put_be64(std::string& out, uint64_t x) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((x >> (i * 8)) & 0xff));
}
void put_be32(std::string& out, uint32_t x) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((x >> (i * 8)) & 0xff));
}
std::string encode_meta(const shard_meta& m) {
  std::string s(32, '\0');
  std::memcpy(&s[0], &m.applied_seq, 8);
  std::memcpy(&s[8], &m.watermark, 8);
  std::memcpy(&s[16], &m.dead_letters, 8);
  std::memcpy(&s[24], &m.events_applied, 8);
  return s;
}

std::string shard4(uint32_t shard) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04u", shard);
  return buf;
}

shard_meta decode_meta(const std::string& v) {
  shard_meta m;
  if (v.size() >= 32) {
    std::memcpy(&m.applied_seq, &v[0], 8);
    std::memcpy(&m.watermark, &v[8], 8);
    std::memcpy(&m.dead_letters, &v[16], 8);
    std::memcpy(&m.events_applied, &v[24], 8);
  }
  return m;
}

// The key ranges [begin, end) holding one slice of one shard.
std::vector<std::pair<std::string, std::string>> slice_ranges(uint32_t shard,
                                                              const store::slice& sl) {
  std::string part = sl.stream + "/" + sl.kind + "/" + shard4(shard);
  std::vector<std::string> prefixes{"k/" + part + "/", "e/" + part + "/", "o/" + part + "/"};
  for (auto& v : sl.views) prefixes.push_back("v/" + v + "/" + shard4(shard) + "/");
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("m/" + part, "m/" + part + std::string(1, '\0'));  // exactly the meta key
  out.emplace_back("l/" + part, "l/" + part + std::string(1, '\0'));  // exactly the layout key
  for (auto& p : prefixes) {
    std::string end = p;
    end.back() = static_cast<char>(end.back() + 1);  // '/' → '0': just past every key under p
    out.emplace_back(p, end);
  }
  return out;
}

constexpr char kSnapMagic[8] = {'T', 'S', 'R', 'S', 'N', 'A', 'P', '1'};

void put_u32(std::string& out, uint32_t x) {
  out.append(reinterpret_cast<const char*>(&x), 4);
}
bool get_u32(const std::string& in, size_t& pos, uint32_t& x) {
  if (in.size() - pos < 4) return false;
  std::memcpy(&x, in.data() + pos, 4);
  pos += 4;
  return true;
}

// Calls fn(key, value) for every pair in a blob; false if it is malformed.
template <typename F>
bool for_each_pair(const std::string& blob, uint32_t shard, F&& fn) {
  if (blob.size() < 12 || std::memcmp(blob.data(), kSnapMagic, 8) != 0) return false;
  size_t pos = 8;
  uint32_t sh = 0;
  if (!get_u32(blob, pos, sh) || sh != shard) return false;
  while (pos < blob.size()) {
    uint32_t kl = 0, vl = 0;
    if (!get_u32(blob, pos, kl) || blob.size() - pos < kl) return false;
    std::string k = blob.substr(pos, kl);
    pos += kl;
    if (!get_u32(blob, pos, vl) || blob.size() - pos < vl) return false;
    fn(k, std::string_view(blob.data() + pos, vl));
    pos += vl;
  }
  return true;
}

}  // namespace

std::string shard_id::name() const {
  return shard_part(*this);
}

store::~store() = default;

result<std::unique_ptr<store>> store::open(const std::string& path, bool sync) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.IncreaseParallelism(2);
  opts.write_buffer_size = 64 << 20;
  opts.max_write_buffer_number = 4;
  rocksdb::BlockBasedTableOptions t;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Most of the store is the offline log, read whole entity by entity (dataset builds, replays,
  // snapshots). Blocks of 16 KiB, uncompressed, cut a first dataset build over the 3M flights
  // from 3.4-4.3 s to 2.9-3.0 s (node CPU 5.5-6.8 s -> 4.6-4.8 s; 4 KiB blocks uncompressed, 32
  // KiB with LZ4 and 64 KiB uncompressed measured beside them: per-block reads and snappy were
  // most of the log's read cost). The price: the files take 2.1 times the disk (686 MB instead
  // of 321 MB for those 3M flights, logged for two entity kinds).
  t.block_size = 16 << 10;
  opts.compression = rocksdb::kNoCompression;
  opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(opts, path, &raw);
  if (!st.ok()) return make_error("cannot open RocksDB at " + path + ": " + st.ToString());
  std::unique_ptr<store> s(new store());
  s->db_.reset(raw);
  s->sync_ = sync;
  return s;
}

shard_meta store::load_meta(const shard_id& s) const {
  shard_meta m;
  std::string v;
  if (db_->Get(rocksdb::ReadOptions(), "m/" + shard_part(s), &v).ok() && v.size() >= 32) {
    std::memcpy(&m.applied_seq, &v[0], 8);
    std::memcpy(&m.watermark, &v[8], 8);
    std::memcpy(&m.dead_letters, &v[16], 8);
    std::memcpy(&m.events_applied, &v[24], 8);
  }
  return m;
}

std::vector<std::string> store::known_entities(const shard_id& s) const {
  std::vector<std::string> out;
  std::string prefix = "k/" + shard_part(s) + "/";
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next())
    out.emplace_back(it->key().data() + prefix.size(), it->key().size() - prefix.size());
  return out;
}

result<std::vector<record>> store::load_window(const shard_id& s, const std::string& key,
                                               int64_t from, const std::vector<int>& slot_of,
                                               size_t slots) const {
  std::vector<record> out;
  auto st = for_each_entry(s, key, from, INT64_MAX - 1, &slot_of, slots, [&](log_entry& e) {
    if (!e.offline_only) out.push_back(std::move(e.r));
  });
  if (!st) return make_error(st.error_message());
  return out;
}

std::optional<feature_vector> store::load_vector(const std::string& view, uint32_t shard,
                                                 const std::string& key) const {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04u", shard);
  std::string v;
  if (!db_->Get(rocksdb::ReadOptions(), "v/" + view + "/" + buf + "/" + key, &v).ok())
    return std::nullopt;
  if (v.size() % 8 != 0) return std::nullopt;
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(v.data()),
                                        v.size() / 8);
  try {
    capnp::FlatArrayMessageReader reader(words);
    return read_vector(reader.getRoot<wire::FeatureVector>());
  } catch (const kj::Exception&) {
    return std::nullopt;
  }
}

store::batch::batch(const shard_id& s)
    : shard_(s), prefix_(shard_part(s)), wb_(new rocksdb::WriteBatch()) {}
store::batch::~batch() = default;

std::string store::batch::log_key(const std::string& key, int64_t time, uint64_t seq,
                                  uint32_t idx) const {
  std::string k = "o/" + prefix_ + "/" + key;
  k.push_back('\0');
  put_be64(k, static_cast<uint64_t>(time) ^ (1ULL << 63));
  put_be64(k, seq);
  put_be32(k, idx);
  return k;
}
void store::batch::put_known(const std::string& key) {
  wb_->Put("k/" + prefix_ + "/" + key, "");
}
void store::batch::put_vector(const std::string& view, const std::string& key,
                              const std::string& bytes) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04u", shard_.shard);
  wb_->Put("v/" + view + "/" + buf + "/" + key, bytes);
}
void store::batch::put_meta(const shard_meta& m) {
  wb_->Put("m/" + prefix_, encode_meta(m));
}
namespace {
void append_log_entry(std::string& v, int64_t known, bool offline_only, const record& r) {
  put_be64(v, static_cast<uint64_t>(known) | (offline_only ? kOfflineOnlyBit : 0));
  append_record(v, r);
}
}  // namespace

void log_buffer::add(int64_t time, uint64_t seq, uint32_t idx, int64_t known, bool offline_only,
                     const std::vector<value>& fields) {
  const size_t at = bytes_.size();
  put_be64(bytes_, static_cast<uint64_t>(known) | (offline_only ? kOfflineOnlyBit : 0));
  append_record(bytes_, time, seq, idx, fields);
  refs_.push_back(
      {time, seq, idx, static_cast<uint32_t>(at), static_cast<uint32_t>(bytes_.size() - at)});
}

void store::batch::put_log(const std::string& key, const log_entry& e) {
  value_.clear();
  append_log_entry(value_, e.known, e.offline_only, e.r);
  wb_->Put(log_key(key, e.r.time, e.r.seq, e.r.idx), value_);
}
void store::batch::put_log_entries(const std::string& key, log_buffer& entries) {
  auto& refs = entries.refs_;
  if (!std::is_sorted(refs.begin(), refs.end())) std::sort(refs.begin(), refs.end());
  const std::string& bytes = entries.bytes_;
  for (size_t i = 0, j; i < refs.size(); i = j) {
    j = i + 1;
    while (j < refs.size() && refs[j].time - refs[i].time <= kLogBlockSpanUs) ++j;
    value_.clear();
    if (j == i + 1) {  // one entry: as stores before blocks wrote every entry
      value_.append(bytes, refs[i].offset, refs[i].size);
    } else {
      value_.push_back(kBlockFormat);
      put_u32(value_, static_cast<uint32_t>(j - i));
      for (size_t k = i; k < j; ++k) {
        put_u32(value_, refs[k].size);
        value_.append(bytes, refs[k].offset, refs[k].size);
      }
    }
    const auto& last = refs[j - 1];
    wb_->Put(log_key(key, last.time, last.seq, last.idx), value_);
  }
}
void store::batch::put_log_entries(const std::string& key, const std::vector<log_entry>& entries) {
  log_buffer b;
  for (auto& e : entries) b.add(e);
  put_log_entries(key, b);
}
void store::batch::prune_log(const std::string& key, int64_t cutoff) {
  std::string begin = "o/" + prefix_ + "/" + key;
  begin.push_back('\0');
  std::string end = begin;
  put_be64(end, static_cast<uint64_t>(cutoff + 1) ^ (1ULL << 63));  // every time <= cutoff
  wb_->DeleteRange(begin, end);
}

namespace {
std::string log_time_key(const std::string& entity_prefix, int64_t t) {
  std::string k = entity_prefix;
  put_be64(k, static_cast<uint64_t>(t) ^ (1ULL << 63));
  return k;
}
// An offline-log value: u64 known time, then the record; every field, or those of `slot_of`
// (see decode_record) when `slot_of` is given.
bool decode_log(rocksdb::Slice v, log_entry& e, const std::vector<int>* slot_of = nullptr,
                size_t slots = 0) {
  if (v.size() < 8) return false;
  uint64_t known = 0;
  for (int i = 0; i < 8; ++i) known = (known << 8) | static_cast<uint8_t>(v.data()[i]);
  e.offline_only = (known & kOfflineOnlyBit) != 0;
  e.known = static_cast<int64_t>(known & ~kOfflineOnlyBit);
  const std::string_view rec(v.data() + 8, v.size() - 8);
  return slot_of ? decode_record(rec, *slot_of, slots, e.r) : decode_record(rec, e.r);
}
// Calls one(entry bytes) for each entry of an offline-log value (one entry, or a block of
// them); false if the value is malformed or one() returns false.
template <typename F>
bool for_each_in_value(rocksdb::Slice v, F&& one) {
  if (v.empty() || v[0] != kBlockFormat) return one(v);
  uint32_t n = 0, size = 0;
  if (v.size() < 5) return false;
  std::memcpy(&n, v.data() + 1, 4);
  size_t pos = 5;
  for (uint32_t i = 0; i < n; ++i) {
    if (v.size() - pos < 4) return false;
    std::memcpy(&size, v.data() + pos, 4);
    pos += 4;
    if (v.size() - pos < size || !one(rocksdb::Slice(v.data() + pos, size))) return false;
    pos += size;
  }
  return pos == v.size();
}
// The event time a log key is keyed by (a block's latest): <...>\0<t:8><seq:8><idx:4>.
int64_t log_key_time(rocksdb::Slice k) {
  uint64_t tb = 0;
  for (int i = 0; i < 8; ++i) tb = (tb << 8) | static_cast<uint8_t>(k.data()[k.size() - 20 + i]);
  return static_cast<int64_t>(tb ^ (1ULL << 63));
}
// Puts one entity's log entries, read value by value in key order, back in (time, seq, idx)
// order. A value keyed at t holds entries no earlier than t - kLogBlockSpanUs, and so do all
// after it: once it is reached, the entries held before that time are final. Entry objects are
// reused, so decoding allocates only when fn moved from one.
class log_merge {
 public:
  // The entry the next one is decoded into; keep() holds it, else it is reused.
  log_entry& slot() {
    if (n_ == buf_.size()) buf_.emplace_back();
    return buf_[n_];
  }
  void keep() {
    if (n_ > head_ && buf_[n_].r < buf_[n_ - 1].r) sorted_ = false;
    ++n_;
  }
  // A value keyed at `key_time` is next: passes on what it and later ones cannot precede.
  template <typename F>
  void before_value(int64_t key_time, F&& fn) {
    release(key_time < INT64_MIN + kLogBlockSpanUs ? INT64_MIN : key_time - kLogBlockSpanUs, fn);
  }
  template <typename F>
  void finish(F&& fn) {
    release(INT64_MAX, fn, true);
  }

 private:
  template <typename F>
  void release(int64_t before, F&& fn, bool all = false) {
    if (!sorted_) {
      std::sort(buf_.begin() + head_, buf_.begin() + n_,
                [](const log_entry& a, const log_entry& b) { return a.r < b.r; });
      sorted_ = true;
    }
    while (head_ < n_ && (all || buf_[head_].r.time < before)) fn(buf_[head_++]);
    if (head_ == n_) {
      head_ = n_ = 0;
    } else if (head_ >= 64 && 2 * head_ >= n_) {  // keep the held ones at the front
      std::rotate(buf_.begin(), buf_.begin() + head_, buf_.begin() + n_);
      n_ -= head_;
      head_ = 0;
    }
  }
  std::vector<log_entry> buf_;  // [head_, n_): held; the rest: objects to reuse
  size_t head_ = 0, n_ = 0;
  bool sorted_ = true;
};
// The keys of one entity's offline log start with this.
std::string entity_log_prefix(const shard_id& s, const std::string& key) {
  std::string prefix = "o/" + shard_part(s) + "/" + key;
  prefix.push_back('\0');
  return prefix;
}
}  // namespace

status store::scan_log(const shard_id& s, const std::string& key, int64_t from, int64_t to,
                       std::vector<log_entry>& out) const {
  return for_each_entry(s, key, from, to, [&](log_entry& e) { out.push_back(std::move(e)); });
}

status store::for_each_entry(const shard_id& s, const std::string& key, int64_t from, int64_t to,
                             const std::function<void(log_entry&)>& fn) const {
  return for_each_entry(s, key, from, to, nullptr, 0, fn);
}

status store::for_each_entry(const shard_id& s, const std::string& key, int64_t from, int64_t to,
                             const std::vector<int>& slot_of, size_t slots,
                             const std::function<void(log_entry&)>& fn) const {
  return for_each_entry(s, key, from, to, &slot_of, slots, fn);
}

status store::for_each_entry(const shard_id& s, const std::string& key, int64_t from, int64_t to,
                             const std::vector<int>* slot_of, size_t slots,
                             const std::function<void(log_entry&)>& fn) const {
  const std::string prefix = entity_log_prefix(s, key);
  // Values keyed up to kLogBlockSpanUs past `to` may hold entries up to `to`.
  const int64_t last = to >= INT64_MAX - 1 - kLogBlockSpanUs ? INT64_MAX - 1 : to + kLogBlockSpanUs;
  const std::string end = log_time_key(prefix, last + 1);
  const rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;  // no block past the entity's range is read
  ro.fill_cache = false;            // whole logs are read once and indexed by the caller
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  log_merge merge;
  for (it->Seek(log_time_key(prefix, from + 1)); it->Valid() && it->key().compare(end) < 0;
       it->Next()) {
    merge.before_value(log_key_time(it->key()), fn);
    const bool ok = for_each_in_value(it->value(), [&](rocksdb::Slice one) {
      log_entry& e = merge.slot();
      if (!decode_log(one, e, slot_of, slots)) return false;
      if (e.r.time > from && e.r.time <= to) merge.keep();
      return true;
    });
    if (!ok)
      return make_error("corrupt offline log entry of entity '" + key + "' in shard " + s.name());
  }
  if (!it->status().ok()) return make_error("RocksDB read failed: " + it->status().ToString());
  merge.finish(fn);
  return ok_status();
}

uint64_t store::approximate_log_bytes(const shard_id& s, const std::string& key) const {
  const std::string prefix = entity_log_prefix(s, key);
  const std::string end = log_time_key(prefix, INT64_MAX);
  rocksdb::Range r(prefix, end);
  uint64_t size = 0;
  rocksdb::SizeApproximationOptions o;
  o.include_memtables = true;
  o.include_files = true;
  if (!db_->GetApproximateSizes(o, db_->DefaultColumnFamily(), &r, 1, &size).ok()) return 0;
  return size;
}

result<std::optional<size_t>> store::ensure_layout(const shard_id& s, const kind_plan& p) {
  const std::string lkey = "l/" + shard_part(s);
  std::string cur;
  auto st = db_->Get(rocksdb::ReadOptions(), lkey, &cur);
  if (st.ok() && cur == kLayout) return std::optional<size_t>();
  if (!st.ok() && !st.IsNotFound()) return make_error("RocksDB read failed: " + st.ToString());
  rocksdb::WriteBatch wb;
  size_t dropped = 0;
  // Written before the marker existed (with or without a recorded field list): upgrade. A slice
  // with nothing stored has nothing to upgrade.
  if (auto up = upgrade_from_window_records(s, p, wb, dropped); !up)
    return make_error(up.error_message());
  wb.Put(lkey, kLayout);
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  st = db_->Write(wo, &wb);
  if (!st.ok()) return make_error("RocksDB write failed: " + st.ToString());
  return dropped ? std::optional<size_t>(dropped) : std::optional<size_t>();
}

status store::upgrade_from_window_records(const shard_id& s, const kind_plan& p,
                                          rocksdb::WriteBatch& wb, size_t& dropped) const {
  const std::string part = shard_part(s), eprefix = "e/" + part + "/", oprefix = "o/" + part + "/";
  rocksdb::ReadOptions ro;
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  ro.snapshot = snap;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  // Every window record's <key>\0<t><seq><idx>, the same suffix as its log entry's.
  std::unordered_set<std::string> in_windows;
  for (it->Seek(eprefix); it->Valid() && it->key().starts_with(eprefix); it->Next())
    in_windows.emplace(it->key().data() + eprefix.size(), it->key().size() - eprefix.size());
  // Log entries a window load can reach (event time past the watermark minus the retention)
  // without a window record were late: flag them.
  const int64_t cutoff = load_meta(s).watermark - p.retention_us;
  std::string err;
  for (it->Seek(oprefix); err.empty() && it->Valid() && it->key().starts_with(oprefix);
       it->Next()) {
    const rocksdb::Slice k = it->key(), v = it->value();
    if (k.size() < oprefix.size() + 21 || v.size() < 8) {
      err = "malformed offline log entry in shard " + s.name();
      break;
    }
    uint64_t tb = 0;
    for (int i = 0; i < 8; ++i) tb = (tb << 8) | static_cast<uint8_t>(k.data()[k.size() - 20 + i]);
    if (static_cast<int64_t>(tb ^ (1ULL << 63)) <= cutoff || (v.data()[0] & 0x80) ||
        v.data()[0] == kBlockFormat)
      continue;
    if (in_windows.count(std::string(k.data() + oprefix.size(), k.size() - oprefix.size())))
      continue;
    std::string flagged(v.data(), v.size());
    flagged[0] = static_cast<char>(flagged[0] | 0x80);
    wb.Put(k, flagged);
  }
  if (err.empty() && !it->status().ok()) err = "RocksDB read failed: " + it->status().ToString();
  it.reset();
  db_->ReleaseSnapshot(snap);
  if (!err.empty()) return make_error(err);
  std::string eend = eprefix;
  eend.back() = static_cast<char>(eend.back() + 1);
  if (!in_windows.empty()) wb.DeleteRange(eprefix, eend);
  dropped = in_windows.size();
  return ok_status();
}

status store::for_each_log(const shard_id& s, int64_t from, int64_t to,
                           const std::function<void(const std::string&, log_entry&&)>& fn) const {
  const std::string prefix = "o/" + shard_part(s) + "/";
  rocksdb::ReadOptions ro;
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  ro.snapshot = snap;
  ro.fill_cache = false;
  ro.readahead_size = 4 << 20;  // a long sequential scan: fewer, larger reads
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  std::string err;
  std::string key;
  log_merge merge;
  auto pass_on = [&](log_entry& e) { fn(key, std::move(e)); };
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    rocksdb::Slice k = it->key();
    // <prefix><key>\0<t:8><seq:8><idx:4>
    if (k.size() < prefix.size() + 21) {
      err = "malformed offline log key in shard " + s.name();
      break;
    }
    const rocksdb::Slice entity(k.data() + prefix.size(), k.size() - prefix.size() - 21);
    if (entity != rocksdb::Slice(key)) {
      merge.finish(pass_on);
      key.assign(entity.data(), entity.size());
    }
    // Every entry of a value keyed at t is in [t - kLogBlockSpanUs, t].
    const int64_t t = log_key_time(k);
    if (t <= from || (to < INT64_MAX - kLogBlockSpanUs && t > to + kLogBlockSpanUs)) continue;
    merge.before_value(t, pass_on);
    const bool ok = for_each_in_value(it->value(), [&](rocksdb::Slice one) {
      log_entry& e = merge.slot();
      if (!decode_log(one, e)) return false;
      if (e.r.time > from && e.r.time <= to) merge.keep();
      return true;
    });
    if (!ok) {
      err = "corrupt offline log entry of entity '" + key + "' in shard " + s.name();
      break;
    }
  }
  if (err.empty()) merge.finish(pass_on);
  if (err.empty() && !it->status().ok()) err = "RocksDB read failed: " + it->status().ToString();
  it.reset();
  db_->ReleaseSnapshot(snap);
  if (!err.empty()) return make_error(err);
  return ok_status();
}

result<std::string> store::export_slices(uint32_t shard, const std::vector<slice>& slices,
                                         size_t max_bytes) const {
  std::string out(kSnapMagic, 8);
  put_u32(out, shard);
  rocksdb::ReadOptions ro;
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  ro.snapshot = snap;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  std::string err;
  for (auto& sl : slices) {
    for (auto& [begin, end] : slice_ranges(shard, sl)) {
      for (it->Seek(begin); it->Valid() && it->key().compare(end) < 0; it->Next()) {
        put_u32(out, static_cast<uint32_t>(it->key().size()));
        out.append(it->key().data(), it->key().size());
        put_u32(out, static_cast<uint32_t>(it->value().size()));
        out.append(it->value().data(), it->value().size());
        if (out.size() > max_bytes) {
          err = "shard " + std::to_string(shard) + " state exceeds the snapshot limit of " +
                std::to_string(max_bytes) + " bytes";
          break;
        }
      }
      if (!err.empty()) break;
      if (!it->status().ok()) {
        err = "RocksDB read failed: " + it->status().ToString();
        break;
      }
    }
    if (!err.empty()) break;
  }
  it.reset();
  db_->ReleaseSnapshot(snap);
  if (!err.empty()) return make_error(err);
  return out;
}

status store::import_slices(uint32_t shard, const std::vector<slice>& slices,
                            const std::string& blob) {
  std::vector<std::pair<std::string, std::string>> ranges;
  for (auto& sl : slices)
    for (auto& r : slice_ranges(shard, sl)) ranges.push_back(r);
  rocksdb::WriteBatch wb;
  for (auto& [begin, end] : ranges) wb.DeleteRange(begin, end);
  size_t outside = 0;
  bool ok = for_each_pair(blob, shard, [&](const std::string& k, std::string_view v) {
    for (auto& [begin, end] : ranges)
      if (k >= begin && k < end) {
        wb.Put(k, rocksdb::Slice(v.data(), v.size()));
        return;
      }
    ++outside;
  });
  if (!ok) return make_error("malformed shard snapshot for shard " + std::to_string(shard));
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  auto st = db_->Write(wo, &wb);
  if (!st.ok()) return make_error("RocksDB write failed: " + st.ToString());
  return ok_status();
}

result<std::vector<shard_meta>> store::metas_in(uint32_t shard, const std::vector<slice>& slices,
                                                const std::string& blob) {
  std::vector<shard_meta> out(slices.size());
  std::vector<std::string> keys;
  for (auto& sl : slices) keys.push_back("m/" + sl.stream + "/" + sl.kind + "/" + shard4(shard));
  bool ok = for_each_pair(blob, shard, [&](const std::string& k, std::string_view v) {
    for (size_t i = 0; i < keys.size(); ++i)
      if (k == keys[i]) out[i] = decode_meta(std::string(v));
  });
  if (!ok) return make_error("malformed shard snapshot for shard " + std::to_string(shard));
  return out;
}

status store::write(batch& b) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  auto st = db_->Write(wo, b.wb_.get());
  if (!st.ok()) return make_error("RocksDB write failed: " + st.ToString());
  return ok_status();
}

}  // namespace tessera
