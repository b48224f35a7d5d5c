// Point-in-time feature values from the offline log: the vector of a view for an entity as it
// was knowable at time t. Uses only log entries with event time <= t AND known time <= t, and
// computes with the same code as online serving (compute_vector), so an offline vector equals
// the online one bit for bit whenever everything up to t was known by t.
// Boundary: an entry with event time == t or known time == t counts (windows are (t - W, t]).
// Pure functions; thread-safe.
#pragma once
#include <deque>
#include <string>
#include <vector>

#include "aggregate.h"
#include "definitions.h"
#include "store.h"

namespace tessera {

// One entity's log projected onto a kind plan's stored fields (the online records' layout),
// for many reads at different times without copying.
struct projected_log {
  std::vector<record> records;  // (time, seq, idx) order
  std::vector<int64_t> known;
  void assign(const kind_plan& plan, const std::vector<log_entry>& entries) {
    assign(plan, entries.data(), entries.size());
  }
  void assign(const kind_plan& plan, const log_entry* entries, size_t n);
};
feature_vector vector_at(const view_def& view, const projected_log& log, int64_t t,
                         const std::string& entity, std::deque<record>& scratch);

// A feature value as a window index computes it: missing, an integer (counts) or a double;
// or, for the caller's tables, a value kept elsewhere (`i` its index there). 16 bytes where a
// value takes 40: dataset builds keep tables of millions of them.
struct number_cell {
  enum kind_t : uint8_t { missing, integer, real, boxed } kind = missing;
  union {
    int64_t i = 0;
    double d;
  };
  static number_cell of_int(int64_t x) {
    number_cell c;
    c.kind = integer, c.i = x;
    return c;
  }
  static number_cell of_double(double x) {
    number_cell c;
    c.kind = real, c.d = x;
    return c;
  }
  value to_value() const;  // a boxed cell gives monostate: its value is the caller's
};

// One view's features precomputed over one projected log, for many reads at different times
// without walking the windows: per feature, the records that count (filter passed, value
// present) in order, prefix counts, prefix sums when they are exact, and extremes of blocks of
// 32 values in sparse tables; per block of records, the latest known time. A read costs
// O(log n + block) instead of O(records in the window x features), and gives the same bits as
// compute_vector:
// - count, min, max, latest time: exact by construction (extremes keep the first of equal
//   values, as the sequential fold does);
// - sum and mean: prefix differences only when every counted value is an integer of magnitude
//   <= 2^32 and there are < 2^20 of them (every partial sum is then exact, so any order of
//   addition gives the sequential sum's bits); otherwise summed in order like compute_vector.
// Views with stddev, last or last_n_distinct features are not indexed (supported() is false).
// Built from a log, it keeps what it reads (times, known times, tracks): the log may be dropped
// afterwards as long as reads that at() or cells() refuse are served from a log read again.
class window_index {
 public:
  window_index(const view_def& view, const projected_log& log);
  // Built record by record instead, in (time, seq, idx) order, without a projected_log:
  // window_index(view), add() each record (`fields` in the kind plan's stored layout; only read
  // during the call), then finish() before any read. reserve() is optional.
  explicit window_index(const view_def& view);
  void reserve(size_t records);
  void add(int64_t time, int64_t known, const std::vector<value>& fields);
  // The same for a log entry with every stream field: projected onto `plan` in `scratch`.
  void add(const kind_plan& plan, const log_entry& e, std::vector<value>& scratch);
  void finish();
  bool supported() const { return supported_; }
  // The vector at t, or false when something in the window was not yet known at t (the caller
  // then filters, see vector_at).
  bool at(int64_t t, const std::string& entity, feature_vector& out) const;
  // Where the last read's windows started and ended: reads at nearby times (a dataset reads
  // one entity at times in nearly increasing order) search from there, in O(log distance).
  struct cursor {
    size_t pos[9] = {};  // end, then each distinct window's start
  };
  // The same values only, into out[0 .. features): no vector, no names (dataset builds). `times`
  // (optional): each feature's latest counted event time, 0 when none. `cur` (optional): kept
  // by the caller between reads of this index; any value is correct, a near one is fast.
  bool cells(int64_t t, number_cell* out, int64_t* times = nullptr, cursor* cur = nullptr) const;
  bool cells(int64_t t, value* out, int64_t* times = nullptr,
             cursor* cur = nullptr) const;  // the same, as values
  size_t bytes() const;

 private:
  static constexpr size_t kBlock = 32;
  struct track {  // shared by the features with the same field and filter
    int slot = -1;
    std::string filter_src;
    const expr* filter = nullptr;  // the features' filter (owned by the view), or none
    bool sums = false, extremes = false, integers = true;
    // Dense: every record counts (no filter, the field always present), so before[i] == i
    // and pos[j] == j, and neither is kept (most tracks: a third of the index's memory).
    bool dense = true;
    std::vector<uint32_t> before;  // before[i]: counted records among records[0, i)
    std::vector<uint32_t> pos;     // the counted records' positions, in order
    size_t before_at(size_t i) const { return dense ? i : before[i]; }
    size_t pos_at(size_t j) const { return dense ? j : pos[j]; }
    std::vector<double>
        x;  // their values, when needed (extremes, inexact sums; all while building)
    std::vector<double> prefix;  // prefix[i] = x[0] + ... + x[i-1] when exact_sum
    // Sparse tables of block extremes: [k][i] = extreme of blocks [i, i + 2^k).
    std::vector<std::vector<double>> sparse_min, sparse_max;
    bool exact_sum = false;
  };
  const view_def& view_;
  bool supported_ = true;
  std::vector<track> tracks_;
  std::vector<size_t> track_of_;  // per feature
  std::vector<int64_t> times_;    // the records' event times (searched without touching records)
  std::vector<int64_t>
      known_;  // and known times (see late_): the index needs the log only to be built
  std::vector<int64_t> windows_;  // the distinct windows, and each feature's
  std::vector<size_t> window_of_;
  size_t after(int64_t x) const;                // records with time <= x end here
  size_t after(int64_t x, size_t& hint) const;  // the same, searched outwards from hint (updated)
  // Known times, only once a record was known after its event time (late_): until then every
  // record in any window (time <= t) was known by t, and a replayed history never needs them.
  // Kept as max(known, time), which gives all_known the same answers.
  bool late_ = false;
  std::vector<int64_t> block_known_;  // max known time per kBlock records
  std::vector<int64_t> known_upto_;   // known_upto_[i]: max known time of records [0, i)
  void note_known(size_t i, int64_t known);
  double sum(const track& tr, size_t b, size_t e) const;
  bool all_known(size_t b, size_t e, int64_t t) const;
};
// The same as vector_at(view, log, ...) with `index` built over (view, log).
feature_vector vector_at(const view_def& view, const projected_log& log, const window_index& index,
                         int64_t t, const std::string& entity, std::deque<record>& scratch);

// `entries`: one entity's log in (time, seq, idx) order, with every stream field. `scratch` is
// reused between calls to avoid allocations.
feature_vector vector_at(const view_def& view, const kind_plan& plan,
                         const std::vector<log_entry>& entries, int64_t t,
                         const std::string& entity, std::deque<record>& scratch);

// The time features are read at for an example predicted at `prediction_time`: itself, or the
// start of its snapshot period (UTC) when the label freezes features like a daily batch job.
int64_t feature_time(const label_def& label, int64_t prediction_time);

}  // namespace tessera
