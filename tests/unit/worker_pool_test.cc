// worker_pool: every accepted job runs (drain) or is destroyed unrun (drop), nothing is accepted
// after stop began, and jobs run on the pool's threads. Waits are on conditions, never sleeps.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "worker_pool.h"

namespace tessera {
namespace {

using at_stop = worker_pool::at_stop;

// Submits counting jobs until the pool refuses one, which shows that stop() has begun; returns
// how many it accepted before that.
int submit_until_refused(worker_pool& pool, std::atomic<int>& ran) {
  int accepted = 0;
  while (pool.submit([&ran] { ++ran; })) {
    ++accepted;
    std::this_thread::yield();  // let the stopping thread in
  }
  return accepted;
}

TEST(WorkerPool, RunsEveryAcceptedJob) {
  std::atomic<int> ran{0};
  worker_pool pool({2, at_stop::drain});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(pool.submit([&] { ++ran; }));
  pool.stop();
  EXPECT_EQ(ran.load(), 1000);
}

TEST(WorkerPool, StopDrainsTheQueueAndRefusesLaterJobs) {
  std::atomic<int> ran{0};
  worker_pool pool({1, at_stop::drain});
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  ASSERT_TRUE(pool.submit([&ran, open] {
    open.wait();
    ++ran;
  }));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(pool.submit([&] { ++ran; }));
  // A queued job that submits while the pool drains: refused.
  std::promise<bool> resubmitted;
  ASSERT_TRUE(pool.submit([&] { resubmitted.set_value(pool.submit([&] { ++ran; })); }));

  std::thread stopper([&] { pool.stop(); });
  const int late = submit_until_refused(pool, ran);  // accepted before stop() began
  gate.set_value();
  stopper.join();

  EXPECT_EQ(ran.load(), 1 + 10 + late);  // every accepted job ran, the refused ones did not
  EXPECT_FALSE(resubmitted.get_future().get());
}

TEST(WorkerPool, StopDropsTheQueueUnderAtStopDrop) {
  std::atomic<int> ran{0};
  worker_pool pool({1, at_stop::drop});
  std::promise<void> started, gate;
  std::shared_future<void> open = gate.get_future().share();
  ASSERT_TRUE(pool.submit([&ran, &started, open] {
    started.set_value();
    open.wait();
    ++ran;
  }));
  started.get_future().wait();  // the first job runs; the next ones stay queued behind it
  auto token = std::make_shared<int>(0);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(pool.submit([&ran, token] { ++ran; }));
  EXPECT_EQ(token.use_count(), 11);

  std::thread stopper([&] { pool.stop(); });
  submit_until_refused(pool, ran);
  gate.set_value();
  stopper.join();

  EXPECT_EQ(ran.load(), 1);         // the running job finished; none of the queued ones ran
  EXPECT_EQ(token.use_count(), 1);  // and they were destroyed
}

TEST(WorkerPool, ASubmitAfterStopIsRefusedAndTheJobDestroyed) {
  for (at_stop mode : {at_stop::drain, at_stop::drop}) {
    worker_pool pool({2, mode});
    pool.stop();
    auto token = std::make_shared<int>(0);
    bool ran = false;
    EXPECT_FALSE(pool.submit([&ran, token] { ran = true; }));
    EXPECT_EQ(token.use_count(), 1);
    EXPECT_FALSE(ran);
    pool.stop();  // a second stop returns at once
  }
}

TEST(WorkerPool, JobsRunConcurrentlyOnThePoolsOwnThreads) {
  constexpr int kThreads = 3;
  worker_pool pool({kThreads, at_stop::drain});
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  std::atomic<int> met{0}, on_caller{0};
  const auto caller = std::this_thread::get_id();
  // Each job waits for all three to arrive: with fewer threads than jobs they would not meet.
  for (int i = 0; i < kThreads; ++i)
    ASSERT_TRUE(pool.submit([&] {
      if (std::this_thread::get_id() == caller) ++on_caller;
      std::unique_lock<std::mutex> l(mu);
      ++arrived;
      cv.notify_all();
      if (cv.wait_for(l, std::chrono::seconds(30), [&] { return arrived == kThreads; })) ++met;
    }));
  pool.stop();
  EXPECT_EQ(met.load(), kThreads) << "only " << arrived << " jobs ran at once";
  EXPECT_EQ(on_caller.load(), 0);
}

TEST(WorkerPool, TheDestructorDrainsLikeStop) {
  std::atomic<int> ran{0};
  {
    worker_pool pool({1, at_stop::drain});
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.submit([&] { ++ran; }));
  }
  EXPECT_EQ(ran.load(), 50);
}

}  // namespace
}  // namespace tessera
