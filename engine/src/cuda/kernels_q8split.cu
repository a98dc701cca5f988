// SPDX-License-Identifier: Apache-2.0
// The int8 one-row GEMV for long rows (K ≥ 8192: w2's 14336 in Pixtral), each row split between S warps of a block
// and, by default, two rows a warp sharing their x loads (PERF_NOTES v23 3.). Warp p of a row's S takes the row's
// p-th contiguous 1/S of K with the scalar kernel's arithmetic (kernels_quant.cu: lane l takes the piece's chunks
// l, l + 32, ... in order, one fp32 FMA chain, warp_sum), and the row's first warp adds the S sums in piece order
// through shared memory, scales and stores as the scalar kernel does.
// Why: the scalar kernel streams one w2 row a warp, 2 KB a warp in flight and two bytes of x read for each weight
// byte, and w2 ran at ~2.7 TB/s over its span where [w1; w3] (two rows a warp sharing x) runs at the copy rate. Two
// whole rows a warp made the units too coarse (320 blocks of 16 rows, 2.4 an SM: v21 4.d'); halving K keeps 640
// blocks of 8 rows. H200 int8 decode, same run, 5 rounds: 3.838 -> 3.786 ms/token (one row a warp, split in 2 or 4:
// slower, 3.758 -> 3.779 / 3.81).
// PIXTRAL_CUDA_Q8_SPLIT (read at every launch): unset = "2p"; "2" / "4" pieces a row, one row a warp; "2p" / "4p"
// two rows a warp; "1" (anything else) the scalar kernel. The bits of a split row differ from the scalar kernel's
// (S chains and their sum); they are the same in the plain and residual modes (matmul_add = matmul + add) and from
// run to run.
#include <cstdlib>
#include <cstring>

#include "cuda/gemv_modes.cuh"
#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"
#include "cuda/q8_math.cuh"
#include "cuda/timeline.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kBatch = 4;  // chunks a lane in flight, as the scalar kernel
constexpr int kMinK = 8192;  // rows shorter than this keep a warp each (only w2's 14336 is longer in Pixtral)

template <class TO, GemvMode M, int S, int P>
__global__ void __launch_bounds__(kWarps * 32, P == 1 ? 4 : 3)  // 64 registers (as the scalar kernel) / 80 for pairs
    q8split_kernel(TO* __restrict__ out, const bf16* x, const std::uint8_t* __restrict__ q,
                   const float* __restrict__ scales, const bf16* __restrict__ bias, int N, int K) {
  static_assert(M == GemvMode::plain || M == GemvMode::residual, "one-row modes");
  constexpr int kRows = kWarps / S * P;
  __shared__ float part[P][kWarps];
  PIXTRAL_TIMELINE(kTlQgemv8 + unsigned(M));
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n0 = blockIdx.x * kRows + warp / S * P, piece = warp % S;
  const int per = K / 16 / S;  // chunks of a piece (a multiple of 32)
  const uint4* wp[P];
#pragma unroll
  for (int r = 0; r < P; ++r)
    wp[r] = reinterpret_cast<const uint4*>(q + std::int64_t(n0 + r < N ? n0 + r : 0) * K) + piece * per;
  const uint4* xp = reinterpret_cast<const uint4*>(x) + 2 * piece * per;
  uint4 wv[P][kBatch], xw[kBatch][2];
  int c = lane;
  const bool active = n0 < N;  // an inactive warp still reaches the barrier
  bool full = active && c + 32 * (kBatch - 1) < per;
  const auto load_w = [&] {
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
#pragma unroll
      for (int r = 0; r < P; ++r) wv[r][u] = load_stream(wp[r] + c + 32 * u);
  };
  const auto load_x = [&] {
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h) xw[u][h] = __ldca(xp + 2 * (c + 32 * u) + h);
  };
  if (full) load_w();  // W is immutable: the first batch before waiting on the previous kernel
  // Lane r of a row set's first warp stores row n0 + r.
  GemvItemPre<TO> pre;
  const int n_st = n0 + lane;
  const bool stores = piece == 0 && lane < P && n_st < N;
  const float scale = stores ? scales[n_st] : 0.f;  // immutable too
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  if (full) load_x();
  if (stores) gemv_item_pre_late<M>(pre, out, 0, n_st, N);
  float acc[P];
#pragma unroll
  for (int r = 0; r < P; ++r) acc[r] = 0.f;
  while (full) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
#pragma unroll
      for (int r = 0; r < P; ++r) accumulate_int8_x(wv[r][u], xw[u], acc[r]);
    c += 32 * kBatch;
    full = c + 32 * (kBatch - 1) < per;
    if (full) {
      load_w();
      load_x();
    }
  }
  if (active && c < per) {  // the last, partial batch: its loads at once, the chunks in order
#pragma unroll
    for (int u = 0; u < kBatch - 1; ++u)
      if (c + 32 * u < per) {
#pragma unroll
        for (int r = 0; r < P; ++r) wv[r][u] = load_stream(wp[r] + c + 32 * u);
#pragma unroll
        for (int h = 0; h < 2; ++h) xw[u][h] = __ldca(xp + 2 * (c + 32 * u) + h);
      }
#pragma unroll
    for (int u = 0; u < kBatch - 1; ++u)
      if (c + 32 * u < per)
#pragma unroll
        for (int r = 0; r < P; ++r) accumulate_int8_x(wv[r][u], xw[u], acc[r]);
  }
#pragma unroll
  for (int r = 0; r < P; ++r) {
    const float v = warp_sum(acc[r]);
    if (lane == 0) part[r][warp] = v;
  }
  __syncthreads();
  if (stores) {
    const int r = lane;
    float sum = part[r][warp];
#pragma unroll
    for (int p = 1; p < S; ++p) sum += part[r][warp + p];  // piece order
    const float vv[2] = {sum * scale, 0.f};
    gemv_item_store<M>(out, 0, n_st, N, vv, bias, RopeAppendArgs{}, pre);
  }
}

template <class TO, GemvMode M, int S, int P>
void launch_sp(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N, int K,
               cudaStream_t s) {
  constexpr int kRows = kWarps / S * P;
  launch_dependent(q8split_kernel<TO, M, S, P>, dim3(unsigned((N + kRows - 1) / kRows)), dim3(kWarps * 32), s, out,
                   x, q, scales, bias, N, K);
}

template <class TO, GemvMode M>
void launch_split(int S, int P, TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias,
                  int N, int K, cudaStream_t s) {
  if (P == 2) {
    if (S == 2)
      launch_sp<TO, M, 2, 2>(out, x, q, scales, bias, N, K, s);
    else
      launch_sp<TO, M, 4, 2>(out, x, q, scales, bias, N, K, s);
  } else {
    if (S == 2)
      launch_sp<TO, M, 2, 1>(out, x, q, scales, bias, N, K, s);
    else
      launch_sp<TO, M, 4, 1>(out, x, q, scales, bias, N, K, s);
  }
}

// The split for a row of K (the file comment gives the switch; tests change it between launches). Rows must split
// into pieces of whole 32-chunk columns (K a multiple of 512 · S) and be long enough to gain (K ≥ kMinK).
struct SplitChoice {
  int S = 1, P = 1;
};
SplitChoice split_choice(int K) {
  const char* e = std::getenv("PIXTRAL_CUDA_Q8_SPLIT");
  const char* v = e ? e : "2p";
  const int S = std::atoi(v);
  if ((S != 2 && S != 4) || K < kMinK || K % (512 * S) != 0) return {};
  return {S, std::strchr(v, 'p') ? 2 : 1};
}

}  // namespace

Status launch_q8split(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                      const bf16* bias, int N, int K, GemvMode mode, cudaStream_t s, bool* launched) {
  *launched = false;
  const auto [S, P] = split_choice(K);
  if (S == 1 || N <= 0 || (mode != GemvMode::plain && mode != GemvMode::residual) ||
      (out_t != DType::bf16 && out_t != DType::f32))
    return {};
  const bool res = mode == GemvMode::residual;
  if (out_t == DType::bf16) {
    if (res)
      launch_split<bf16, GemvMode::residual>(S, P, static_cast<bf16*>(out), x, q, scales, bias, N, K, s);
    else
      launch_split<bf16, GemvMode::plain>(S, P, static_cast<bf16*>(out), x, q, scales, bias, N, K, s);
  } else {
    if (res)
      launch_split<float, GemvMode::residual>(S, P, static_cast<float*>(out), x, q, scales, bias, N, K, s);
    else
      launch_split<float, GemvMode::plain>(S, P, static_cast<float*>(out), x, q, scales, bias, N, K, s);
  }
  PIXTRAL_CUDA_LAUNCH_CHECK(q8split_kernel);
  *launched = true;
  return {};
}

}  // namespace pixtral::cuda
