// A fixed set of threads running queued jobs, for blocking work that must not run on actor, kj
// or libnats threads (JetStream API calls, RocksDB scans, registry calls).
//
// Contract:
// - Threads: options::threads, started by the constructor, joined by stop(). Jobs start in
//   submission order; with more than one thread they run concurrently and finish in any order.
// - Unbounded: submit() never blocks and never refuses for lack of room (callers bound what
//   they queue, e.g. one job per request in flight).
// - After stop() began, submit() refuses: it returns false and destroys the job unrun.
// - stop() waits for running jobs. Jobs still queued then are run first (at_stop::drain: a
//   caller is waiting for each) or destroyed unrun (at_stop::drop: their callers are gone).
//   Jobs that drain may submit more; those are refused.
//
// Lifecycle: owned by one service, which calls stop() before destroying what its jobs use; the
// destructor stops too. stop() must not be called from one of the pool's own jobs.
// Threads: submit() and stop() are thread-safe; a later stop() returns at once.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera {

class worker_pool {
 public:
  enum class at_stop { drain, drop };
  struct options {
    int threads = 1;
    at_stop queued = at_stop::drain;  // what stop() does with jobs not started yet
  };
  explicit worker_pool(options o);
  ~worker_pool();
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  // Queues `job` for a worker thread; false (and `job` destroyed unrun) once stop() began.
  [[nodiscard]] bool submit(std::function<void()> job);
  // Refuses later submits, runs or drops what is queued (options::queued), waits for running
  // jobs and joins the threads.
  void stop();

 private:
  void run();

  const options opts_;
  std::mutex mu_;  // protects the fields below
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // started in the constructor, joined by stop()
};

}  // namespace tessera
