// SPDX-License-Identifier: Apache-2.0
// The int8 one-row residual GEMV in equal ranges (an A/B for PERF_NOTES v22 7.; opt-in, PIXTRAL_CUDA_Q8_RANGES=1):
// the scalar kernel's one wave of rows leaves w2's last rows to warps streaming alone (~7 dependent round trips for a
// 14 KB row), so here every warp streams the same number of 16-byte chunks of the flattened weight instead. Warp w
// takes chunks [w·U, (w + 1)·U) of the N · K/16 (U a multiple of 128 and at least a row, K a multiple of 2048: lane
// l keeps chunk column l mod 32 in every row it touches, a row ends between two batches of 4 chunks a lane, and a
// row is cut at most once). Each piece of a row is summed as the scalar
// kernel sums a row (lane l's chunks in order, one fp32 FMA chain, warp_sum) and written as one of two partials:
// p0 the piece that starts the row, p1 the rest (-0.0f when the row is whole: adding it is exact, so a whole row has
// the scalar kernel's bits). A second kernel adds them: h = round(h + round((p0 + p1) · scale)) — two terms, so the
// order cannot matter. Rows that a range boundary cuts differ from the scalar kernel in the last bits.
// One stream at a time: the partials live in a static device buffer (the next launch writes them only after its
// dependent-launch wait, i.e. after the add kernel before it has read them).
#include <algorithm>
#include <cstdlib>
#include <string>

#include "cuda/kernels_quant.cuh"
#include "cuda/q8_math.cuh"
#include "cuda/qtma_common.cuh"
#include "cuda/timeline.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kRangeWarps = 8;
constexpr int kRangeBlocksPerSm = 4;
constexpr int kRangeMaxRows = 1 << 16;
constexpr int kBatch = 4;  // chunks a lane in flight, as the scalar kernel

__device__ float g_q8_partials[2 * kRangeMaxRows];  // p0 [N], then p1 [N]

// Lane 0 writes a warp's sum v of a piece of `row`: p0 when the piece starts the row (and p1 = -0 when it is the
// whole row), else p1.
__device__ __forceinline__ void put_piece(float* p, int N, int row, bool starts_row, bool whole, float v) {
  if (starts_row) {
    p[row] = v;
    if (whole) p[N + row] = -0.0f;
  } else {
    p[N + row] = v;
  }
}

__global__ void __launch_bounds__(kRangeWarps * 32, kRangeBlocksPerSm)
    q8range_kernel(const bf16* x, const std::uint8_t* __restrict__ q, int N, int K, std::int64_t U) {
  PIXTRAL_TIMELINE(kTlQgemv8 + unsigned(GemvMode::residual));
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31;
  const std::int64_t n_chunks = K / 16, total = std::int64_t(N) * n_chunks;
  const std::int64_t w = std::int64_t(blockIdx.x) * kRangeWarps + (threadIdx.x >> 5);
  const std::int64_t g0 = w * U, g1 = std::min(g0 + U, total);
  if (g0 >= total) return;
  // Steps: step j = chunks g0 + 32j .. + 31 (lane l's: + l), all in one row (32 | n_chunks). Ranges and rows are
  // whole batches of kBatch steps (128 | U and 128 | n_chunks), so a row ends only between batches.
  const int J = int((g1 - g0) / 32);
  const int nc = int(n_chunks), c0 = int(g0 % n_chunks);  // step 0's first chunk in its row
  const uint4* wp = reinterpret_cast<const uint4*>(q) + g0 + lane;
  const uint4* xp = reinterpret_cast<const uint4*>(x) + 2 * lane;
  uint4 wv[kBatch], xw[kBatch][2];
  const auto load_w = [&](int j0) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) wv[u] = load_stream(wp + 32 * (j0 + u));
  };
  int cx = c0;  // the next batch's first chunk in its row (this lane's: + lane)
  const auto load_x = [&] {
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h) xw[u][h] = __ldca(xp + 2 * (cx + 32 * u) + h);
    cx += 32 * kBatch;
    if (cx == nc) cx = 0;
  };
  load_w(0);  // W is immutable: the first batch before waiting on the previous kernel
  wait_for_previous_grid();  // x (and the partials the add kernel before read) belong to the previous kernels
  int row = int(g0 / n_chunks);
  bool starts_row = c0 == 0;
  int next_row_step = (nc - c0) / 32;  // the first step of the next row
  float acc = 0.f;
  for (int j0 = 0; j0 < J; j0 += kBatch) {
    if (j0 == next_row_step) {  // warp-uniform: the piece of `row` ended with the previous batch
      const float v = warp_sum(acc);
      if (lane == 0) put_piece(g_q8_partials, N, row, starts_row, starts_row, v);
      acc = 0.f;
      ++row;
      starts_row = true;
      next_row_step += nc / 32;
    }
    load_x();
#pragma unroll
    for (int u = 0; u < kBatch; ++u) accumulate_int8_x(wv[u], xw[u], acc);
    if (j0 + kBatch < J) load_w(j0 + kBatch);
  }
  const float v = warp_sum(acc);
  if (lane == 0) put_piece(g_q8_partials, N, row, starts_row, starts_row && J == next_row_step, v);
}

// h[n] = round(h[n] + round((p0[n] + p1[n]) · scale[n])): the scalar residual kernel's store (gemv_item_store).
template <class TO>
__global__ void q8range_add_kernel(TO* __restrict__ h, const float* __restrict__ scales, int N) {
  allow_dependents_to_launch();
  wait_for_previous_grid();
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const float v = (g_q8_partials[n] + g_q8_partials[N + n]) * scales[n];
  const float b = 0.f;  // the scalar kernel's store adds its (absent) bias: v + 0 turns -0 into +0 there too
  h[n] = from_f32<TO>(to_f32(h[n]) + to_f32(from_f32<TO>(v + b)));
}

}  // namespace

Status launch_q8range_add(void* h, DType h_t, const bf16* x, const std::uint8_t* q, const float* scales, int N,
                          int K, cudaStream_t s, bool* launched) {
  *launched = false;
  const char* e = std::getenv("PIXTRAL_CUDA_Q8_RANGES");
  if (!(e && (e[0] == '1' || e[0] == 'r'))) return {};
  const bool require = e[0] == 'r';  // "require": a launch that cannot run here is an error (tests)
  const int n_sms = qtma::sm_count();
  const std::int64_t n_chunks = K / 16, total = std::int64_t(N) * n_chunks;
  const std::int64_t warps = std::int64_t(kRangeBlocksPerSm) * std::max(1, n_sms) * kRangeWarps;
  // Chunks a warp: an equal share, rounded up to whole batches (4 steps of 32), and at least a row (a row is cut at
  // most once).
  const std::int64_t share = (total + warps - 1) / warps;
  const std::int64_t U = std::max<std::int64_t>(n_chunks, (share + 127) / 128 * 128);
  const bool fits = n_sms > 0 && K % 2048 == 0 && K / 16 <= (1 << 26) && N <= kRangeMaxRows && N > 0 &&
                    U >= n_chunks && (h_t == DType::bf16 || h_t == DType::f32);
  if (!fits) {
    if (!require) return {};
    std::string why = "PIXTRAL_CUDA_Q8_RANGES=require: N = ";
    why += std::to_string(N);
    why += ", K = ";
    why += std::to_string(K);
    why += " does not run here";
    return Status(ErrorCode::unsupported, why);
  }
  const std::int64_t used = (total + U - 1) / U;
  const dim3 grid(unsigned((used + kRangeWarps - 1) / kRangeWarps)), block(kRangeWarps * 32);
  launch_dependent(q8range_kernel, grid, block, s, x, q, N, K, U);
  PIXTRAL_CUDA_LAUNCH_CHECK(q8range_kernel);
  const dim3 agrid(unsigned((N + 255) / 256)), ablock(256);
  if (h_t == DType::bf16)
    launch_dependent(q8range_add_kernel<bf16>, agrid, ablock, s, static_cast<bf16*>(h), scales, N);
  else
    launch_dependent(q8range_add_kernel<float>, agrid, ablock, s, static_cast<float*>(h), scales, N);
  PIXTRAL_CUDA_LAUNCH_CHECK(q8range_add_kernel);
  *launched = true;
  return {};
}

}  // namespace pixtral::cuda
