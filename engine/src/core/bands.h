// SPDX-License-Identifier: Apache-2.0
// Contiguous bands of rows (or values) on a few host threads, for host-side work on the time-to-first-token path:
// the image preprocessing (vision/preprocess.cpp, vision/resize.cpp: a 1024×1024 page image is ~3 M values, ~5 ms on
// one core) and the CUDA backend's bf16 pixel conversion. Each band runs exactly the code a single thread would, so
// the output does not depend on the number of threads.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pixtral {

/// Threads worth using for `values` output values: 1 below ~256 K values (thread start-up would dominate), else
/// up to 8 (the work is memory-bound beyond that), never more than the machine has.
inline int band_threads(std::size_t values) {
  if (values < (std::size_t(1) << 18)) return 1;
  const unsigned hw = std::thread::hardware_concurrency();
  return int(std::clamp(hw == 0 ? 1u : hw, 1u, 8u));
}

namespace detail {

/// Band workers kept for the life of the process, so that a band call wakes threads instead of creating them
/// (thread creation on a busy or virtualised host is slow and uneven). One job at a time: a caller that finds the
/// workers busy — another thread's job, or a band call from inside a band — gets threads of its own instead.
class BandWorkers {
 public:
  static constexpr int kWorkers = 7;  // besides the calling thread (band_threads caps at 8)

  static BandWorkers& get() {
    static BandWorkers w;
    return w;
  }

  /// job(b) for b in [1, threads) on the workers, own() on the calling thread; returns when all ran. False (and
  /// nothing run) when the workers are busy.
  bool try_run(int threads, const std::function<void(int)>& job, const std::function<void()>& own) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &job;
      bands_ = threads;
      pending_ = threads - 1;
      ++generation_;
    }
    wake_.notify_all();
    own();
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
    return true;
  }

  ~BandWorkers() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  BandWorkers() {
    threads_.reserve(kWorkers);
    for (int b = 1; b <= kWorkers; ++b) threads_.emplace_back([this, b] { loop(b); });
  }

  // A job's generation starts only after every band of the previous one finished, so a worker needed by a job
  // cannot sleep through it.
  void loop(int band) {
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (band >= bands_) continue;  // not one of this job's bands
      const std::function<void(int)>* job = job_;
      lk.unlock();
      (*job)(band);
      lk.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex busy_, m_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int bands_ = 0, pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace detail

/// fn(r0, r1) over `threads` contiguous bands of [0, n) (the first on the calling thread); returns when all ran.
template <class Fn>
void for_bands(int n, int threads, Fn&& fn) {
  threads = std::clamp(threads, 1, std::min(std::max(1, n), detail::BandWorkers::kWorkers + 1));
  if (threads == 1) {
    fn(0, n);
    return;
  }
  auto band = [&fn, n, threads](int b) {
    fn(int(std::int64_t(n) * b / threads), int(std::int64_t(n) * (b + 1) / threads));
  };
  const std::function<void(int)> job = band;
  if (detail::BandWorkers::get().try_run(threads, job, [&] { band(0); })) return;
  std::vector<std::thread> pool;  // the workers are busy: threads of this call's own
  pool.reserve(std::size_t(threads - 1));
  for (int b = 1; b < threads; ++b) pool.emplace_back([&band, b] { band(b); });
  band(0);
  for (auto& t : pool) t.join();
}

}  // namespace pixtral
