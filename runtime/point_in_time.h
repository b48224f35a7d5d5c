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
  void assign(const kind_plan& plan, const std::vector<log_entry>& entries);
};
feature_vector vector_at(const view_def& view, const projected_log& log, int64_t t, const std::string& entity,
                         std::deque<record>& scratch);

// `entries`: one entity's log in (time, seq, idx) order, with every stream field. `scratch` is
// reused between calls to avoid allocations.
feature_vector vector_at(const view_def& view, const kind_plan& plan, const std::vector<log_entry>& entries, int64_t t,
                         const std::string& entity, std::deque<record>& scratch);

// The time features are read at for an example predicted at `prediction_time`: itself, or the
// start of its snapshot period (UTC) when the label freezes features like a daily batch job.
int64_t feature_time(const label_def& label, int64_t prediction_time);

}  // namespace tessera
