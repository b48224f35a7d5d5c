// The clock of every stream on this node (../shared/DESIGN.md, "One clock per stream"): the
// default read time of every entity of a stream, the same on every node within a heartbeat.
//   live streams read at the wall clock, so windows decay while nothing happens;
//   replay streams read at the stream's watermark: the latest event time applied on any shard
//   of the stream on any node (this node's shards report theirs as they commit; the cluster
//   agent adds the other members' from their heartbeats).
// The watermark only moves forward, and never by more than the stream's max_jump per event:
// events further ahead are refused (refusal_reason), so one bad timestamp cannot age out
// other entities' windows.
// Thread safety: every method may be called from any thread (atomics; the set of streams is
// fixed at construction). Owned by the node; outlives the actors, the gateway and the agent.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "definitions.h"

namespace tessera {

class stream_clocks {
 public:
  explicit stream_clocks(const definitions& defs);

  // The default read time of `stream`: now (live) or its watermark (replay; 0 before any
  // event). 0 for an unknown stream.
  int64_t read_time(std::string_view stream) const;
  // Latest event time applied on any shard of the stream that this node has heard of.
  int64_t watermark(std::string_view stream) const;
  clock_mode mode(std::string_view stream) const;

  // A shard of this node committed events of `stream` up to event time `wm`.
  void advance_local(std::string_view stream, int64_t wm);
  // Another node reported `wm` for `stream` (its heartbeat).
  void advance_remote(std::string_view stream, int64_t wm);
  // The gateway of this node accepted an event of `stream` at event time `t` (it may not be
  // applied yet: a replay's published events run ahead of its applied ones).
  void advance_accepted(std::string_view stream, int64_t t);
  // Another node's gateway reported `t` (its heartbeat).
  void advance_remote_accepted(std::string_view stream, int64_t t);
  // What max_jump is measured from: the latest event time applied or accepted anywhere.
  int64_t jump_reference(std::string_view stream) const;

  // This node's own figures per stream, for its heartbeat.
  struct local_figures {
    std::string stream;
    int64_t watermark = 0;  // applied by this node's shards
    int64_t accepted = 0;   // accepted by this node's gateway
  };
  std::vector<local_figures> local() const;

  // Counters per stream since the node started: events kept for training sets only (older
  // than the online windows at the stream's clock) and events refused as outliers.
  void count_late(std::string_view stream, uint64_t n);
  void count_refused(std::string_view stream, uint64_t n);
  uint64_t late(std::string_view stream) const;
  uint64_t refused(std::string_view stream) const;

 private:
  struct slot {
    clock_mode mode = clock_mode::live;
    std::atomic<int64_t> local{0}, remote{0};
    std::atomic<int64_t> accepted{0}, remote_accepted{0};
    std::atomic<uint64_t> late{0}, refused{0};
  };
  const slot* find(std::string_view stream) const;
  slot* find(std::string_view stream);

  std::vector<std::string> names_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::unordered_map<std::string_view, size_t> index_;  // views into names_
};

// Why an event at `time` must be refused given the stream's watermark `reference` (0: none yet,
// nothing to compare with), or "" to accept it. The wall-clock bound (max_future) is checked
// when the event is decoded (normalize_event).
std::string jump_refusal(const stream_def& s, int64_t time, int64_t reference);

// The time before which an event of a plan's kind is too old for its online windows when the
// stream's clock reads `clock` (nothing online can reach it: offline log only).
inline int64_t online_cutoff(int64_t clock, int64_t retention_us) {
  return clock - retention_us;
}

}  // namespace tessera
