// The node's RocksDB instance: each shard's offline log (which is also where an entity's window
// records are loaded from), online feature vectors and each shard's applied sequence. A shard's
// changes for one applied batch go in one WriteBatch, so state and sequence are always
// consistent after a crash.
// Thread safety: all methods may be called from any thread (RocksDB is thread-safe); each
// shard is written by its own shard actor only.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "aggregate.h"
#include "tessera/result.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace tessera {

// A shard of one (stream, entity kind): the unit of ownership and recovery.
struct shard_id {
  std::string stream;
  std::string kind;
  uint32_t shard = 0;
  std::string name() const;  // "flights/origin/0007"
};

struct shard_meta {
  uint64_t applied_seq = 0;  // last JetStream stream sequence applied
  int64_t watermark = 0;     // max event time applied
  uint64_t dead_letters = 0;
  uint64_t events_applied = 0;
};

// One event in a shard's offline log: every field of its stream (derived ones included), its
// event time and position, and when the system knew it (see runtime/point_in_time.h).
struct log_entry {
  record r;           // r.fields: the stream's fields in stream_def order
  int64_t known = 0;  // microseconds since the epoch
  // Late: already older than the online windows when applied, so it is history for training
  // sets only and never part of an entity's window (load_window skips it).
  bool offline_only = false;
};

// The offline log holds an entity's entries of one applied batch in blocks, one RocksDB key
// each, keyed by the block's latest (time, seq, idx) and spanning at most this much event
// time (a block keyed at time t holds events in [t - span, t]). One key per event made the
// memtable insert the largest single cost of applying (issue 18, bench/RESULTS.md). Readers
// put entries back in order: a block's entries are released once no later key can hold an
// earlier one. The bound keeps that buffer, and what a read up to a time reads past it, small.
// A store written before blocks (one entry per key) reads the same: a block of one.
constexpr int64_t kLogBlockSpanUs = 6LL * 3600 * 1000000;

// One entity's offline-log entries of one batch, encoded as they are added: no allocation per
// entry (issue 18). store::batch::put_log_entries writes them.
class log_buffer {
 public:
  // An entry: `fields` are every field of the stream, in stream_def order.
  void add(int64_t time, uint64_t seq, uint32_t idx, int64_t known, bool offline_only,
           const std::vector<value>& fields);
  void add(const log_entry& e) {
    add(e.r.time, e.r.seq, e.r.idx, e.known, e.offline_only, e.r.fields);
  }
  size_t size() const { return refs_.size(); }

 private:
  friend class store;
  struct ref {
    int64_t time;
    uint64_t seq;
    uint32_t idx;
    uint32_t offset, size;  // in bytes_: u64 known time + encoded record
    bool operator<(const ref& o) const {
      return time != o.time ? time < o.time : seq != o.seq ? seq < o.seq : idx < o.idx;
    }
  };
  std::string bytes_;
  std::vector<ref> refs_;
};

class store {
 public:
  // Opens (creating if needed) the database at `path`. `sync` fsyncs each write (survives power
  // loss); without it a process crash loses nothing but an OS crash may lose the last writes.
  static result<std::unique_ptr<store>> open(const std::string& path, bool sync);
  ~store();

  shard_meta load_meta(const shard_id& s) const;
  std::vector<std::string> known_entities(const shard_id& s) const;
  // The window records of one entity: its offline-log entries with event time > `from` that
  // were applied online (offline_only ones skipped), in (time, seq, idx) order, with the plan's
  // stored fields (field i of the stream into slot slot_of[i], `slots` of them: see
  // decode_record). Error if an entry is corrupt.
  result<std::vector<record>> load_window(const shard_id& s, const std::string& key, int64_t from,
                                          const std::vector<int>& slot_of, size_t slots) const;
  std::optional<feature_vector> load_vector(const std::string& qualified_view, uint32_t shard,
                                            const std::string& key) const;

  // Brings a slice written by an older Tessera to the current layout. Up to 2026-12 each event
  // was stored twice: as a window record (family e/, deleted once out of the windows) and in
  // the offline log. Windows now load from the log alone (issue 18: one RocksDB write per event
  // instead of three), so the upgrade flags the log entries within `retention_us` of the
  // shard's watermark that have no window record (late events) as offline_only, then deletes
  // the e/ records, in one WriteBatch. Returns the e/ records dropped, or nullopt when the slice
  // was already current (new definitions need nothing here: windows are read from the log in
  // the plan's layout). Error, with nothing changed, if RocksDB fails or an entry is corrupt.
  result<std::optional<size_t>> ensure_layout(const shard_id& s, const kind_plan& p);

  // The offline log of one entity with event time in (from, to], in (time, seq, idx) order,
  // appended to `out`. Error if an entry is corrupt.
  status scan_log(const shard_id& s, const std::string& key, int64_t from, int64_t to,
                  std::vector<log_entry>& out) const;
  // The same, entry by entry: fn(entry). Entry objects are reused (decoded into in place, a
  // block's worth kept while blocks are put back in order), so no allocation per entry; fn may
  // move from it. Reads past `to` by up to kLogBlockSpanUs of keys.
  status for_each_entry(const shard_id& s, const std::string& key, int64_t from, int64_t to,
                        const std::function<void(log_entry&)>& fn) const;
  // The same with only some fields decoded, into slots (see decode_record with slot_of).
  status for_each_entry(const shard_id& s, const std::string& key, int64_t from, int64_t to,
                        const std::vector<int>& slot_of, size_t slots,
                        const std::function<void(log_entry&)>& fn) const;
  // About how many bytes the entity's log takes in the store (from the files' indexes: no read).
  uint64_t approximate_log_bytes(const shard_id& s, const std::string& key) const;
  // Every entry of a shard's offline log with event time in (from, to], entity by entity (key
  // order), each entity's in time order: fn(key, entry). Reads at one RocksDB snapshot. Entry
  // objects are reused (see for_each_entry).
  status for_each_log(const shard_id& s, int64_t from, int64_t to,
                      const std::function<void(const std::string& key, log_entry&& e)>& fn) const;

  // Accumulates one shard's changes; write() applies them atomically.
  class batch {
   public:
    explicit batch(const shard_id& s);
    ~batch();
    void put_known(const std::string& key);
    void put_vector(const std::string& qualified_view, const std::string& key,
                    const std::string& bytes);
    void put_meta(const shard_meta& m);
    void put_log(const std::string& key, const log_entry& e);
    // Logs the entity's entries of one batch: sorted by (time, seq, idx), then written as
    // blocks of entries spanning at most kLogBlockSpanUs of event time, one RocksDB key each
    // (see kLogBlockSpanUs).
    void put_log_entries(const std::string& key, log_buffer& entries);
    void put_log_entries(const std::string& key, const std::vector<log_entry>& entries);
    // Deletes the entity's log entries with event time <= cutoff (offline retention), block by
    // block: a block that also holds later entries stays until its latest is past the cutoff.
    void prune_log(const std::string& key, int64_t cutoff);

   private:
    friend class store;
    std::string log_key(const std::string& key, int64_t time, uint64_t seq, uint32_t idx) const;
    shard_id shard_;
    std::string prefix_;
    std::string value_;  // reused while encoding log values
    std::unique_ptr<rocksdb::WriteBatch> wb_;
  };
  status write(batch& b);

  // One (stream, kind) slice of a shard number and the views it materialises: the part of a
  // shard's state that moves with it (cluster handoff and snapshots).
  struct slice {
    std::string stream;
    std::string kind;
    std::vector<std::string> views;  // qualified names (view@version)
  };
  // Every key of the slices, read at one RocksDB snapshot (consistent: each commit is one
  // WriteBatch), serialised; error past `max_bytes`.
  result<std::string> export_slices(uint32_t shard, const std::vector<slice>& slices,
                                    size_t max_bytes) const;
  // Replaces the slices' keys with those in `blob` (from export_slices) in one WriteBatch.
  // Slices absent from the blob end up empty. Error, with nothing changed, if it is malformed.
  status import_slices(uint32_t shard, const std::vector<slice>& slices, const std::string& blob);
  // The shard_meta of each slice inside a blob (zero meta for slices it does not hold).
  static result<std::vector<shard_meta>> metas_in(uint32_t shard, const std::vector<slice>& slices,
                                                  const std::string& blob);

 private:
  store() = default;
  status for_each_entry(
      const shard_id& s, const std::string& key, int64_t from, int64_t to,
      const std::vector<int>* slot_of, size_t slots,
      const std::function<void(log_entry&)>& fn) const;  // slot_of null: every field
  status upgrade_from_window_records(const shard_id& s, const kind_plan& p, rocksdb::WriteBatch& wb,
                                     size_t& dropped) const;

  std::unique_ptr<rocksdb::DB> db_;
  bool sync_ = false;
};

}  // namespace tessera
