// Window aggregation: the feature code shared by online serving and (later) offline backfill,
// so both compute the same values. Pure functions over an entity's retained records.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "definitions.h"
#include "value.h"

namespace tessera {

// One event as an entity keeps it: its event time, its position in the stream (for a total
// order and idempotence), and the kind plan's stored fields.
struct record {
  int64_t time = 0;
  uint64_t seq = 0;  // JetStream stream sequence of the message that carried it
  uint32_t idx = 0;  // position inside that message's batch
  std::vector<value> fields;
  bool operator<(const record& o) const {
    if (time != o.time) return time < o.time;
    if (seq != o.seq) return seq < o.seq;
    return idx < o.idx;
  }
};

enum class vector_status : uint8_t { missing = 0, fresh = 1, stale = 2 };

// A vector's status at t from its latest event time in the longest window (0: none): missing,
// stale when older than the view's ttl, else fresh. One rule for online and offline vectors.
inline vector_status status_at(int64_t event_time, int64_t t, int64_t ttl_us) {
  if (event_time == 0) return vector_status::missing;
  return t - event_time > ttl_us ? vector_status::stale : vector_status::fresh;
}

struct feature_value {
  std::string name;
  value v;
  int64_t event_time = 0;
};

struct feature_vector {
  std::string view;
  uint32_t version = 0;
  std::string entity;
  int64_t as_of = 0;
  int64_t event_time = 0;
  vector_status status = vector_status::missing;
  std::vector<feature_value> values;
  // Not sent anywhere: the same records give this very vector (but for as_of) at every read
  // time in [as_of, valid_until): no record enters or leaves a window, no status changes.
  int64_t valid_until = 0;
};

// The vector computed at `v.as_of` re-read at t, if still valid (see valid_until).
inline bool still_valid(const feature_vector& v, int64_t t) {
  return t >= v.as_of && t < v.valid_until;
}

// Computes `view` at time t over records sorted by (time, seq, idx). Windows cover (t - W, t].
feature_vector compute_vector(const view_def& view, const std::deque<record>& records, int64_t t,
                              const std::string& entity);
feature_vector compute_vector(const view_def& view, const std::vector<record>& records, int64_t t,
                              const std::string& entity);

// Inserts r keeping the order; returns false (and does nothing) if an equal record exists.
bool insert_record(std::deque<record>& records, record r);

}  // namespace tessera
