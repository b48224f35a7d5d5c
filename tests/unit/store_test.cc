// The store's offline log is also where an entity's window records load from
// (store::load_window): entries written for late events stay out of windows but remain in the
// log with their known time; only the plan's fields are decoded. A store written before 2026-12
// (window records under e/ beside the log, written here key by key as that version laid them
// out) is upgraded once: its late log entries flagged, its e/ records dropped.
#include "runtime/store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "runtime/codec.h"

namespace tessera {
namespace {

struct scratch_dir {
  std::string path;
  scratch_dir() {
    char tmpl[] = "/tmp/tessera-store-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~scratch_dir() { std::filesystem::remove_all(path); }
};

constexpr int64_t kHour = 3600LL * 1000000;
const shard_id kShard{"flights", "route", 7};

// A flights event: date, delay, distance, origin, destination (the stream's field order).
log_entry flight(int64_t t, uint64_t seq, double delay, bool offline_only = false) {
  log_entry e;
  e.r.time = t, e.r.seq = seq, e.r.idx = 0;
  e.r.fields = {value{timestamp_value{t}}, value{delay}, value{400.0}, value{std::string("LAX")},
                value{std::string("SFO")}};
  e.known = t + 5;
  e.offline_only = offline_only;
  return e;
}

// The plan of a view reading `delay` only: slot 0 holds stream field 1.
kind_plan delay_plan(int64_t retention) {
  kind_plan p;
  p.stream = "flights", p.entity = "route";
  p.stored_field_index = {1};
  p.stored_field_names = {"delay"};
  p.retention_us = retention;
  return p;
}

void put_be(std::string& out, uint64_t x, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((x >> (i * 8)) & 0xff));
}
// <family>/flights/route/0007/LAX-SFO\0<t><seq><idx>, as the store lays keys out.
std::string old_key(char family, int64_t t, uint64_t seq) {
  std::string k = std::string(1, family) + "/flights/route/0007/LAX-SFO";
  k.push_back('\0');
  put_be(k, static_cast<uint64_t>(t) ^ (1ULL << 63), 8);
  put_be(k, seq, 8);
  put_be(k, 0, 4);
  return k;
}

TEST(Store, WindowsLoadFromTheLogWithoutLateEntries) {
  scratch_dir dir;
  auto db = store::open(dir.path + "/db", false);
  ASSERT_TRUE(db) << db.error_message();
  const kind_plan plan = delay_plan(10 * kHour);
  ASSERT_FALSE(db.value()->ensure_layout(kShard, plan).value());  // a new store: nothing to do
  store::batch b(kShard);
  for (int i = 1; i <= 6; ++i) b.put_log("LAX-SFO", flight(i * kHour, i, i * 10.0, i == 4));
  ASSERT_TRUE(db.value()->write(b));

  auto w = db.value()->load_window(kShard, "LAX-SFO", 2 * kHour, {-1, 0}, 1);
  ASSERT_TRUE(w) << w.error_message();
  // Times 3, 5 and 6 h: after `from`, without the late entry at 4 h.
  ASSERT_EQ(w.value().size(), 3u);
  const int64_t want[] = {3, 5, 6};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(w.value()[i].time, want[i] * kHour);
    ASSERT_EQ(w.value()[i].fields.size(), 1u);
    EXPECT_EQ(std::get<double>(w.value()[i].fields[0]), want[i] * 10.0);
  }
  // The log itself keeps the late entry, flagged, with its known time intact.
  std::vector<log_entry> all;
  ASSERT_TRUE(db.value()->scan_log(kShard, "LAX-SFO", INT64_MIN, INT64_MAX - 1, all));
  ASSERT_EQ(all.size(), 6u);
  for (auto& e : all) {
    EXPECT_EQ(e.offline_only, e.r.time == 4 * kHour);
    EXPECT_EQ(e.known, e.r.time + 5);
    EXPECT_EQ(std::get<std::string>(e.r.fields[4]), "SFO");
  }
}

TEST(Store, AStoreWithWindowRecordsIsUpgradedOnce) {
  scratch_dir dir;
  const std::string path = dir.path + "/db";
  const kind_plan plan = delay_plan(10 * kHour);
  {  // The old layout: meta (watermark 20 h), a field-list layout key, log entries at 5..20 h,
     // window records for those the entity held (not 5 h: pruned; not 15 h: late).
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteBatch wb;
    std::string meta(32, '\0');
    const uint64_t seq = 20;
    const int64_t wm = 20 * kHour;
    std::memcpy(&meta[0], &seq, 8);
    std::memcpy(&meta[8], &wm, 8);
    wb.Put("m/flights/route/0007", meta);
    wb.Put("l/flights/route/0007", "delay;36000000000");
    wb.Put("k/flights/route/0007/LAX-SFO", "");
    for (int h : {5, 12, 15, 18, 20}) {
      log_entry e = flight(h * kHour, h, h * 1.0);
      std::string v;
      put_be(v, static_cast<uint64_t>(e.known), 8);
      v += encode_record(e.r);
      wb.Put(old_key('o', e.r.time, e.r.seq), v);
      if (h == 5 || h == 15) continue;
      record r;
      r.time = e.r.time, r.seq = e.r.seq, r.fields = {value{h * 1.0}};
      wb.Put(old_key('e', r.time, r.seq), encode_record(r));
    }
    ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &wb).ok());
  }
  {
    auto db = store::open(path, false);
    ASSERT_TRUE(db) << db.error_message();
    auto up = db.value()->ensure_layout(kShard, plan);
    ASSERT_TRUE(up) << up.error_message();
    ASSERT_TRUE(up.value().has_value());
    EXPECT_EQ(*up.value(), 3u);  // the window records at 12, 18 and 20 h
    auto again = db.value()->ensure_layout(kShard, plan);
    ASSERT_TRUE(again);
    EXPECT_FALSE(again.value().has_value());
    // The window after the watermark less the retention (10 h): 12, 18, 20 h; 15 h was late.
    auto w = db.value()->load_window(kShard, "LAX-SFO", 10 * kHour, {-1, 0}, 1);
    ASSERT_TRUE(w) << w.error_message();
    std::vector<int64_t> times;
    for (auto& r : w.value()) times.push_back(r.time / kHour);
    EXPECT_EQ(times, (std::vector<int64_t>{12, 18, 20}));
    // Every log entry is still there, with its known time.
    std::vector<log_entry> all;
    ASSERT_TRUE(db.value()->scan_log(kShard, "LAX-SFO", INT64_MIN, INT64_MAX - 1, all));
    ASSERT_EQ(all.size(), 5u);
    for (auto& e : all) EXPECT_EQ(e.known, e.r.time + 5);
  }
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), path, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  it->Seek("e/");
  EXPECT_FALSE(it->Valid() && it->key().starts_with("e/")) << "window records left behind";
}

// Entries are logged in blocks (kLogBlockSpanUs), whose time ranges overlap from batch to batch
// when events come late or out of order. Every read must still give exactly the entries in its
// time range, in (time, seq, idx) order: checked against a brute-force filter and sort of what
// was written, over random batches for three entities, with single entries of the layout
// before blocks mixed in, and again after pruning.
TEST(Store, LogBlocksReadBackInOrderOverAnyRange) {
  scratch_dir dir;
  auto db = store::open(dir.path + "/db", false);
  ASSERT_TRUE(db) << db.error_message();
  const std::vector<std::string> keys{"LAX-SFO", "LAX-SFO2", "SEA-BOS"};
  std::map<std::string, std::vector<log_entry>> written;
  uint64_t seq = 0;
  uint64_t rnd = 12345;
  auto next = [&](uint64_t n) {
    rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rnd >> 33) % n;
  };
  for (int batch = 0; batch < 60; ++batch) {
    store::batch b(kShard);
    ++seq;
    // A batch's events span up to 20 h, some 30 h back; all after 10 h (known times are > 0).
    const int64_t base = (batch + 40) * kHour;
    for (auto& key : keys) {
      std::vector<log_entry> es;
      const uint64_t n = next(12);
      for (uint32_t i = 0; i < n; ++i) {
        int64_t t = base + static_cast<int64_t>(next(20 * 60)) * 60000000LL;
        if (next(5) == 0) t -= 30 * kHour;
        if (next(4) == 0 && !es.empty()) t = es.back().r.time;  // equal times: seq, idx decide
        log_entry e = flight(t, seq, static_cast<double>(batch * 100 + i), next(7) == 0);
        e.r.idx = i;
        es.push_back(e);
        written[key].push_back(e);
      }
      if (batch % 10 == 3 && !es.empty()) {
        for (auto& e : es) b.put_log(key, e);  // one entry per key, as stores before blocks
      } else {
        b.put_log_entries(key, es);
      }
    }
    ASSERT_TRUE(db.value()->write(b));
  }
  auto expect = [&](const std::string& key, int64_t from, int64_t to) {
    std::vector<log_entry> want;
    for (auto& e : written[key])
      if (e.r.time > from && e.r.time <= to) want.push_back(e);
    std::sort(want.begin(), want.end(), [](auto& a, auto& b) { return a.r < b.r; });
    return want;
  };
  auto same = [](const std::vector<log_entry>& got, const std::vector<log_entry>& want) {
    if (got.size() != want.size())
      return ::testing::AssertionFailure()
             << got.size() << " entries, " << want.size() << " expected";
    for (size_t i = 0; i < got.size(); ++i) {
      const auto &g = got[i], &w = want[i];
      if (g.r.time != w.r.time || g.r.seq != w.r.seq || g.r.idx != w.r.idx || g.known != w.known ||
          g.offline_only != w.offline_only ||
          std::get<double>(g.r.fields.at(1)) != std::get<double>(w.r.fields.at(1)))
        return ::testing::AssertionFailure()
               << "entry " << i << " differs: (" << g.r.time << ", " << g.r.seq << ", " << g.r.idx
               << ", " << g.known << ", " << g.offline_only << ") read, (" << w.r.time << ", "
               << w.r.seq << ", " << w.r.idx << ", " << w.known << ", " << w.offline_only
               << ") expected";
    }
    return ::testing::AssertionSuccess();
  };
  auto check_all = [&](int64_t min_from) {
    for (int round = 0; round < 200; ++round) {
      const std::string& key = keys[next(keys.size())];
      int64_t from = static_cast<int64_t>(next(260)) * kHour / 2;
      int64_t to = from + static_cast<int64_t>(next(60 * 60)) * 60000000LL;
      if (round % 10 == 0) to = INT64_MAX - 1;
      if (round % 17 == 0) from = INT64_MIN;
      std::vector<log_entry> got;
      ASSERT_TRUE(db.value()->scan_log(kShard, key, std::max(from, min_from), to, got));
      ASSERT_TRUE(same(got, expect(key, std::max(from, min_from), to)))
          << key << " (" << from << ", " << to << "]";
    }
    // The whole shard, entity by entity.
    for (int64_t from : {INT64_MIN, 50 * kHour, 73 * kHour}) {
      for (int64_t to : {int64_t{INT64_MAX - 1}, 65 * kHour, 90 * kHour}) {
        if (to <= from) continue;
        std::map<std::string, std::vector<log_entry>> got;
        ASSERT_TRUE(db.value()->for_each_log(
            kShard, std::max(from, min_from), to,
            [&](const std::string& k, log_entry&& e) { got[k].push_back(std::move(e)); }));
        for (auto& key : keys)
          ASSERT_TRUE(same(got[key], expect(key, std::max(from, min_from), to)))
              << key << " (" << from << ", " << to << "] in for_each_log";
      }
    }
    // Windows: the online entries only, with the plan's field.
    auto w = db.value()->load_window(kShard, keys[0], std::max(min_from, 60 * kHour), {-1, 0}, 1);
    ASSERT_TRUE(w) << w.error_message();
    std::vector<log_entry> want = expect(keys[0], std::max(min_from, 60 * kHour), INT64_MAX - 1);
    want.erase(std::remove_if(want.begin(), want.end(), [](auto& e) { return e.offline_only; }),
               want.end());
    ASSERT_EQ(w.value().size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(w.value()[i].time, want[i].r.time);
      EXPECT_EQ(std::get<double>(w.value()[i].fields.at(0)), std::get<double>(want[i].r.fields[1]));
    }
  };
  check_all(INT64_MIN);
  // Pruning keeps every entry after the cutoff (blocks straddling it are kept whole).
  const int64_t cutoff = 70 * kHour;
  {
    store::batch b(kShard);
    for (auto& key : keys) b.prune_log(key, cutoff);
    ASSERT_TRUE(db.value()->write(b));
  }
  check_all(cutoff);
  std::vector<log_entry> all;
  ASSERT_TRUE(db.value()->scan_log(kShard, keys[0], INT64_MIN, INT64_MAX - 1, all));
  EXPECT_LT(all.size(), written[keys[0]].size()) << "nothing was pruned";
}

}  // namespace
}  // namespace tessera
