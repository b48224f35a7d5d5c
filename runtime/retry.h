// One retry policy: how many tries, and the pauses between them (doubling, capped).
//
//   auto r = retry(retry_policy{50}, [&]() -> result<uint32_t> { ... });
//
// fn returns a result<T>. A failure is tried again only while it is retryable: by default when
// is_retryable(error_code()) (include/tessera/result.h: errc::retryable, errc::overloaded), or
// as a caller's predicate says. Any other failure, and the failure of the last try, is returned
// as it is (message and code), so the error of the last try is what the caller sees.
//
// Threads: retry() runs fn and pauses on the calling thread; a pause blocks it (callers on actor
// or kj threads use a policy without pauses or run it on a worker, see worker_pool.h).
#pragma once
#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "tessera/result.h"

namespace tessera {

struct retry_policy {
  int attempts = 1;                              // tries in all, the first included
  std::chrono::milliseconds initial_backoff{0};  // the pause before the second try
  std::chrono::milliseconds max_backoff{0};      // each pause doubles, up to this
};

// The pauses of a policy in order: initial_backoff, then doubled each time, capped at
// max_backoff (never below initial_backoff). For loops that pause without a fixed number of
// tries (a supervisor restarting a process): reset() after a success starts over.
class backoff {
 public:
  explicit backoff(const retry_policy& p)
      : initial_(p.initial_backoff),
        max_(std::max(p.initial_backoff, p.max_backoff)),
        next_(p.initial_backoff) {}
  // The pause to take now; the next call returns twice as much (capped).
  std::chrono::milliseconds next() {
    const auto now = next_;
    next_ = std::min(next_ * 2, max_);
    return now;
  }
  void reset() { next_ = initial_; }

 private:
  std::chrono::milliseconds initial_, max_, next_;
};

// Calls fn() up to p.attempts times (at least once). Between tries, calls pause(d) with the
// policy's pauses (see backoff); returns the first success, the first failure `should_retry`
// rejects, or the last try's failure. should_retry(const result<T>&) sees failures only.
template <typename Fn, typename ShouldRetry, typename Pause>
auto retry(const retry_policy& p, Fn&& fn, ShouldRetry&& should_retry, Pause&& pause)
    -> decltype(fn()) {
  backoff b(p);
  for (int attempt = 1;; ++attempt) {
    auto r = fn();
    if (r.ok() || attempt >= p.attempts || !should_retry(std::as_const(r))) return r;
    pause(b.next());
  }
}

// The same, pausing by sleeping (no sleep for a zero pause).
template <typename Fn, typename ShouldRetry>
auto retry(const retry_policy& p, Fn&& fn, ShouldRetry&& should_retry) -> decltype(fn()) {
  return retry(p, std::forward<Fn>(fn), std::forward<ShouldRetry>(should_retry),
               [](std::chrono::milliseconds d) {
                 if (d.count() > 0) std::this_thread::sleep_for(d);
               });
}

// The same, retrying the failures whose code is_retryable().
template <typename Fn>
auto retry(const retry_policy& p, Fn&& fn) -> decltype(fn()) {
  return retry(p, std::forward<Fn>(fn), [](const auto& r) { return is_retryable(r.error_code()); });
}

}  // namespace tessera
