// SPDX-License-Identifier: Apache-2.0
// What the labs (kernel_lab, gemm_lab, sync_lab, q4stream_lab: developer tools, not tests) share: the check of a CUDA
// runtime call or a Status (on error: file:line, the call and the error, then exit) and a median timer.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>

#define LAB_CHECK(expr)                                                                             \
  do {                                                                                              \
    cudaError_t e_ = (expr);                                                                        \
    if (e_ != cudaSuccess) {                                                                        \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_));  \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

// The same for a pixtral::Status (labs that call the engine's launchers; Status must be in scope where it is used).
#define LAB_STATUS(expr)                                                                        \
  do {                                                                                          \
    Status s_ = (expr);                                                                         \
    if (!s_.ok()) {                                                                             \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, s_.message().c_str());             \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

/// Median over `reps` runs of f on stream s, in ms (cudaEvents around each run, after `warmup` untimed runs); f
/// takes the run's index (0.. for the warm-up runs, then 0..reps-1) or nothing.
template <class F>
float median_ms(cudaStream_t s, int reps, F&& f, int warmup = 3) {
  const auto call = [&](int i) {
    if constexpr (std::is_invocable_v<F&, int>)
      f(i);
    else
      f();
  };
  for (int i = 0; i < warmup; ++i) call(i);
  cudaEvent_t a, b;
  LAB_CHECK(cudaEventCreate(&a));
  LAB_CHECK(cudaEventCreate(&b));
  std::vector<float> t(std::size_t(std::max(1, reps)));
  for (std::size_t i = 0; i < t.size(); ++i) {
    LAB_CHECK(cudaEventRecord(a, s));
    call(int(i));
    LAB_CHECK(cudaEventRecord(b, s));
    LAB_CHECK(cudaEventSynchronize(b));
    LAB_CHECK(cudaEventElapsedTime(&t[i], a, b));
  }
  LAB_CHECK(cudaEventDestroy(a));
  LAB_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
