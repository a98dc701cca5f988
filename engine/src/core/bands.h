// SPDX-License-Identifier: Apache-2.0
// Contiguous bands of rows (or values) on a few host threads, for host-side work on the time-to-first-token path:
// the image preprocessing (vision/preprocess.cpp, vision/resize.cpp: a 1024×1024 page image is ~3 M values, ~5 ms on
// one core) and the CUDA backend's bf16 pixel conversion. Each band runs exactly the code a single thread would, so
// the output does not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cstddef>
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

/// fn(r0, r1) over `threads` contiguous bands of [0, n) (the first on the calling thread); returns when all ran.
template <class Fn>
void for_bands(int n, int threads, Fn&& fn) {
  threads = std::clamp(threads, 1, std::max(1, n));
  if (threads == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(std::size_t(threads - 1));
  for (int b = 1; b < threads; ++b)
    pool.emplace_back([&fn, n, threads, b] { fn(int(std::int64_t(n) * b / threads), int(std::int64_t(n) * (b + 1) / threads)); });
  fn(0, int(std::int64_t(n) / threads));
  for (auto& t : pool) t.join();
}

}  // namespace pixtral
