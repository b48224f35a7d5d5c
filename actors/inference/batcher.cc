#include "batcher.h"

#include <cstring>

#include "actors/training/trainer.h"

namespace tessera {

batcher::batcher(const torchscript_model& model, options o) : model_(model), opts_(o) {
  worker_ = std::thread([this] { run(); });
}

batcher::~batcher() {
  std::deque<job> left;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    left.swap(queue_);
  }
  cv_.notify_all();
  worker_.join();
  for (auto& j : left)
    j.done(make_error("the model version was unloaded before scoring; retry", errc::unavailable),
           nullptr);
}

status batcher::submit(std::vector<float> x, size_t rows, bool alone, clock::time_point deadline,
                       done_fn done) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_)
      return make_error("the model version is being unloaded; retry", errc::unavailable);
    if (queued_rows_ + rows > opts_.max_queued_rows && !queue_.empty())
      return make_error(
          "model queue full (" + std::to_string(queued_rows_) + " rows waiting); retry after 10 ms",
          errc::overloaded);
    queued_rows_ += rows;
    queue_.push_back({std::move(x), rows, alone, deadline, std::move(done)});
  }
  cv_.notify_one();
  return ok_status();
}

void batcher::run() {
  std::vector<job> batch;
  for (;;) {
    batch.clear();
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      // Rows announced but not queued yet: wait for them, up to max_wait, unless the batch is
      // already full.
      if (opts_.max_wait.count() > 0 && expected_.load(std::memory_order_relaxed) > 0 &&
          queued_rows_ < opts_.max_batch && !queue_.front().alone) {
        const auto until = clock::now() + opts_.max_wait;
        cv_.wait_until(l, until, [&] {
          return stopping_ || queued_rows_ >= opts_.max_batch ||
                 expected_.load(std::memory_order_relaxed) <= 0;
        });
        if (stopping_) return;
      }
      size_t rows = 0;
      while (!queue_.empty()) {
        job& j = queue_.front();
        if (!batch.empty() && (j.alone || rows + j.rows > opts_.max_batch)) break;
        rows += j.rows;
        queued_rows_ -= j.rows;
        const bool alone = j.alone;
        batch.push_back(std::move(j));
        queue_.pop_front();
        if (alone) break;
      }
    }
    compute(batch);
  }
}

void batcher::compute(std::vector<job>& batch) {
  const size_t d = model_.inputs();
  const auto now = clock::now();
  size_t rows = 0;
  for (auto& j : batch) {
    if (j.deadline < now) {
      j.done(make_error("deadline exceeded while queued for the model", errc::deadline), nullptr);
      j.rows = 0;  // skipped
      continue;
    }
    rows += j.rows;
  }
  if (rows == 0) return;
  out_.resize(rows);
  if (batch.size() == 1 && batch[0].alone) {
    job& j = batch[0];
    for (size_t r = 0; r < j.rows; ++r) {
      status st = model_.forward(j.x.data() + r * d, 1, out_.data() + r);
      forwards_.fetch_add(1, std::memory_order_relaxed);
      if (!st) {
        j.done(make_error("model forward failed: " + st.error_message(), errc::internal), nullptr);
        return;
      }
    }
    rows_.fetch_add(j.rows, std::memory_order_relaxed);
    j.done(ok_status(), out_.data());
    return;
  }
  const float* x = nullptr;
  if (batch.size() == 1) {
    x = batch[0].x.data();
  } else {
    x_.resize(rows * d);
    size_t at = 0;
    for (auto& j : batch) {
      if (j.rows == 0) continue;
      std::memcpy(x_.data() + at * d, j.x.data(), j.rows * d * sizeof(float));
      at += j.rows;
    }
    x = x_.data();
  }
  status st = model_.forward(x, rows, out_.data());
  forwards_.fetch_add(1, std::memory_order_relaxed);
  rows_.fetch_add(rows, std::memory_order_relaxed);
  size_t at = 0;
  for (auto& j : batch) {
    if (j.rows == 0) continue;
    if (!st)
      j.done(make_error("model forward failed: " + st.error_message(), errc::internal), nullptr);
    else
      j.done(ok_status(), out_.data() + at);
    at += j.rows;
  }
}

}  // namespace tessera
