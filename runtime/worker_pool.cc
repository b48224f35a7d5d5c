#include "worker_pool.h"

namespace tessera {

worker_pool::worker_pool(options o) : opts_(o) {
  for (int i = 0; i < opts_.threads; ++i) threads_.emplace_back([this] { run(); });
}

worker_pool::~worker_pool() {
  stop();
}

bool worker_pool::submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!stopping_) {
      jobs_.push_back(std::move(job));
      cv_.notify_one();
      return true;
    }
  }
  return false;  // `job` is destroyed here, outside the lock (it may own anything)
}

void worker_pool::stop() {
  std::deque<std::function<void()>> dropped;
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
    if (opts_.queued == at_stop::drop) dropped.swap(jobs_);
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

void worker_pool::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !jobs_.empty(); });
      // Stopping with nothing queued (under at_stop::drop, stop() emptied the queue under the
      // lock that set stopping_).
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace tessera
