// SPDX-License-Identifier: Apache-2.0
// ThreadPool: a generation counter + two condition variables; the caller runs chunk 0 itself.
#include "cpu/thread_pool.h"

#include <algorithm>
#include <system_error>

namespace pixtral::cpu {

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  threads_.reserve(std::size_t(n_threads_ - 1));
  try {
    for (int w = 1; w < n_threads_; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
  } catch (const std::system_error&) {
    n_threads_ = int(threads_.size()) + 1;  // run with the workers we could start
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::run_chunk(int worker) {
  const std::int64_t begin = n_ * worker / n_chunks_;
  const std::int64_t end = n_ * (worker + 1) / n_chunks_;
  if (begin < end) (*fn_)(begin, end, worker);
}

void ThreadPool::worker_loop(int worker) {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (worker >= n_chunks_) continue;  // not needed for this job
    }
    run_chunk(worker);
    {
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(std::int64_t n, std::int64_t grain, const RangeFn& fn) {
  if (n <= 0) return;
  const std::int64_t max_chunks = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, grain));
  const int chunks = int(std::min<std::int64_t>(n_threads_, max_chunks));
  if (chunks <= 1) {
    fn(0, n, 0);
    return;
  }
  std::lock_guard call_lock(call_mutex_);
  {
    std::lock_guard lock(mutex_);
    fn_ = &fn;
    n_ = n;
    n_chunks_ = chunks;
    pending_ = chunks - 1;
    ++generation_;
  }
  start_cv_.notify_all();
  run_chunk(0);
  std::unique_lock lock(mutex_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  fn_ = nullptr;
}

}  // namespace pixtral::cpu
