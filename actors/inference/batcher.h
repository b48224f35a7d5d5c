// Micro-batched forward passes of one model version: requests queue their rows, one worker
// thread runs them together as one forward pass (up to max_batch rows).
//
// When to run: at once when nothing else is on its way ("no wait when idle"): the worker takes
// whatever is queued. When callers have announced rows that are still reading their features
// (expect()), it waits up to max_wait for them to arrive, so that concurrent requests share one
// forward pass instead of queueing one pass each.
// Bounded: past max_queued_rows queued, submit() refuses with errc::overloaded (and a
// retry-after in the message); memory never grows without bound. A submission whose deadline
// has passed when its turn comes fails with errc::deadline and is not computed. A submission
// with `alone` runs row by row (one forward pass per row: comparisons with batching off).
// Lifecycle and threads: owned by its serving_model; the constructor starts the worker, the
// destructor fails what is still queued (errc::unavailable) and joins it. submit() and expect()
// are thread-safe; callbacks run on the worker thread and must not block.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "tessera/result.h"

namespace tessera {

class torchscript_model;

class batcher {
 public:
  struct options {
    size_t max_batch = 64;                    // rows per forward pass
    std::chrono::microseconds max_wait{300};  // for announced rows only
    size_t max_queued_rows = 16384;
  };
  using clock = std::chrono::steady_clock;
  // scores[0, rows) of the submission, or the error; on the worker thread.
  using done_fn = std::function<void(status, const float* scores)>;

  batcher(const torchscript_model& model, options o);
  ~batcher();

  status submit(std::vector<float> x, size_t rows, bool alone, clock::time_point deadline,
                done_fn done);
  // +n: a caller will submit soon (its features are being read); -n once it did or gave up.
  void expect(int n) { expected_.fetch_add(n, std::memory_order_relaxed); }

  // Whether the caller is this batcher's worker (which must not destroy it: see serving_model).
  bool on_worker_thread() const { return std::this_thread::get_id() == worker_.get_id(); }

  uint64_t forwards() const { return forwards_.load(std::memory_order_relaxed); }
  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }

 private:
  struct job {
    std::vector<float> x;
    size_t rows;
    bool alone;
    clock::time_point deadline;
    done_fn done;
  };
  void run();
  void compute(std::vector<job>& batch);

  const torchscript_model& model_;
  const options opts_;
  std::mutex mu_;  // protects queue_, queued_rows_, stopping_
  std::condition_variable cv_;
  std::deque<job> queue_;
  size_t queued_rows_ = 0;
  bool stopping_ = false;
  std::atomic<int> expected_{0};
  std::atomic<uint64_t> forwards_{0}, rows_{0};
  std::vector<float> x_, out_;  // worker only
  std::thread worker_;
};

}  // namespace tessera
