// SPDX-License-Identifier: Apache-2.0
// Micro-benchmark (not a test): GFLOP/s of out[512, 5120] = x[512, 5120] · W[5120, 5120]ᵀ with bf16 W, the shape
// of a decoder projection during prefill, on the CPU backend with 1 and 2 threads; plus a T = 1 decode GEMV.
// Usage: bench_cpu_matmul [T] [K] [N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "ops/backend.h"

int main(int argc, char** argv) {
  using namespace pixtral;
  const std::int64_t T = argc > 1 ? std::atoll(argv[1]) : 512, K = argc > 2 ? std::atoll(argv[2]) : 5120,
                     N = argc > 3 ? std::atoll(argv[3]) : 5120;
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<std::uint16_t> w(std::size_t(N * K));  // [N, K] bf16
  for (auto& v : w) v = f32_to_bf16(d(gen) * 0.05f);
  std::vector<float> x(std::size_t(T * K));
  for (auto& v : x) v = d(gen);
  const WeightView view{"bench.w", w.data(), DType::bf16, {N, K}};
  for (int threads : {1, 2}) {
    auto be = ops::make_cpu_backend(threads);
    const ops::Weight wd = be->upload_weight(view).value();
    for (std::int64_t rows : {T, std::int64_t(1)}) {
      auto xt = be->alloc(rows, K, DType::f32, "x").value();
      auto out = be->alloc(rows, N, DType::f32, "out").value();
      if (!be->upload(xt, x.data()).ok()) return 1;
      if (!be->matmul(out, xt, wd).ok()) return 1;  // warm-up
      const int reps = rows == 1 ? 20 : 2;
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r)
        if (!be->matmul(out, xt, wd).ok()) return 1;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      std::printf("%s  T=%-4lld K=%lld N=%lld bf16: %8.2f ms  %7.1f GFLOP/s", be->device_name().c_str(),
                  (long long)rows, (long long)K, (long long)N, s * 1e3,
                  2.0 * double(rows) * double(K) * double(N) / s * 1e-9);
      if (rows == 1) std::printf("  (%.1f GB/s of bf16 weights)", double(N * K * 2) / s * 1e-9);  // decode: memory bound
      std::printf("\n");
      be->free(xt);
      be->free(out);
    }
  }
  return 0;
}
