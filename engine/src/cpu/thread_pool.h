// SPDX-License-Identifier: Apache-2.0
// ThreadPool: the CPU backend's private workers (never visible to the app) and a static parallel_for.
// Determinism contract: parallel_for only decides WHICH worker runs an index range; callers make every output
// element's arithmetic independent of that choice (fixed reduction order per element, fixed tile boundaries),
// so 1 and N threads give bit-identical results.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pixtral::cpu {

class ThreadPool {
 public:
  /// fn(begin, end, worker): process indices [begin, end) on worker `worker` (0 = the calling thread).
  using RangeFn = std::function<void(std::int64_t begin, std::int64_t end, int worker)>;

  /// n_threads >= 1 workers in total, including the calling thread (n_threads - 1 are started).
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  /// Split [0, n) into at most size() contiguous chunks of at least `grain` indices and run them in parallel;
  /// returns when all are done. Calls from several threads are serialised.
  void parallel_for(std::int64_t n, std::int64_t grain, const RangeFn& fn);

 private:
  void worker_loop(int worker);
  void run_chunk(int worker);

  int n_threads_ = 1;
  std::vector<std::thread> threads_;
  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  std::uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  // the job being run
  const RangeFn* fn_ = nullptr;
  std::int64_t n_ = 0;
  int n_chunks_ = 0;
};

}  // namespace pixtral::cpu
