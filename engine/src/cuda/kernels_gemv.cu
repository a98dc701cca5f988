// SPDX-License-Identifier: Apache-2.0
// Batch-1 (up to kGemvMaxRows rows) matrix-vector product for decode: out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias).
// Decode is bound by streaming the weights once, so each warp owns one output feature and walks its W row with
// 16-byte streaming loads (8 bf16, evict-first: the weights are not reused within a step), eight loads in flight
// per lane before any math (four with more rows of x or W), x (T rows of K, ≤ 40 KiB) hot in L1/L2. Optional
// (PIXTRAL_CUDA_PREFETCH=1): the next 4 KB of the row prefetched into L2. Launched with programmatic dependent
// launch. v4: the decode FFN's [w1; w3] runs as one GEMV whose warps walk row f of w1 and of w3 and write
// silu(g)·u (launch_gemv_silu: one kernel less per layer, same bits). fp32 accumulation, one fixed shuffle tree
// per row: deterministic. Falls back to cuBLAS when K % 8 != 0 or pointers are not 16-byte aligned.
// ref: llama.cpp ggml-cuda/mmv.cu (one warp per row), calm src/infer.cu (matmul_warppar).
#include <cstdlib>
#include <type_traits>

#include "cuda/env_switch.h"
#include "cuda/gemv_modes.cuh"
#include "cuda/kernels.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kBatchBytes = 32 * 4 * 16;  // the L2 prefetch's step: 2 KB = 16 lines (4 loads per lane)
constexpr int kPrefetchBatches = 2;


// One warp per work item (gemv_modes.cuh: one output row, or the two rows of a SiLU·mul feature or a RoPE pair).
// x is not __restrict__: with it the compiler may read x through ld.global.nc, which load_x8 avoids (common.cuh).
template <int T, class TX, class TO, GemvMode M = GemvMode::plain>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
gemv_kernel(TO* __restrict__ out, const TX* x, const bf16* __restrict__ w, const bf16* __restrict__ bias, int N,
            int n_items, int K, bool l2_prefetch, RopeAppendArgs ra) {
  constexpr int R = gemv_rows_per_item(M);  // W rows per warp
  constexpr bool kTwoRows = R == 2;  // the optional L2 prefetch follows one row only
  // 16-byte loads in flight per lane and row: 8 for one row of one x (a 4096-wide row is then 2 batches instead
  // of 4; measured 70 % of copy bandwidth for wo at 4), 4 where the registers hold more rows or more x.
  constexpr int kUnroll = R * T == 1 ? 8 : 4;
  PIXTRAL_TIMELINE(kTlGemv + unsigned(M));
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (n >= n_items) return;
  int rows[2];
  gemv_item_rows<M>(n, N, ra, rows);
  const uint4* wrow[R];
#pragma unroll
  for (int r = 0; r < R; ++r) wrow[r] = reinterpret_cast<const uint4*>(w + std::int64_t(rows[r]) * K);
  const int n_chunks = K / 8;
  float acc[R][T];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.f;

  // L2 prefetch kPrefetchBatches batches (2 KB each) ahead of the loads: batches 0..2 now (W does not depend on
  // the previous kernel, so this runs before the PDL wait), then batch b + 3 while loading batch b (lanes 0..15).
  const char* wbytes = reinterpret_cast<const char*>(wrow[0]);
  const std::int64_t row_bytes = l2_prefetch && !kTwoRows ? std::int64_t(K) * 2 : 0;
  if (128 * lane < row_bytes) prefetch_l2(wbytes + 128 * lane);
  if (lane < kBatchBytes / 128 && 2 * kBatchBytes + 128 * lane < row_bytes)
    prefetch_l2(wbytes + 2 * kBatchBytes + 128 * lane);
  std::int64_t pf = kBatchBytes * (1 + kPrefetchBatches) + 128 * lane;
  int c = lane;
  constexpr int kIterBytes = 32 * kUnroll * 16;  // one iteration's loads of a row
  uint4 wv[R][kUnroll];
  auto load_batch = [&] {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) wv[r][u] = load_stream(wrow[r] + c + 32 * u);
  };
  // One bf16 x row (decode): the batch's x is loaded with its W, not chunk by chunk once W has arrived (a dependent
  // L1/L2 round trip a batch); the same products in the same order.
  constexpr bool kPreX = T == 1 && std::is_same_v<TX, bf16>;
  uint4 xw[kPreX ? kUnroll : 1];
  const auto load_x_batch = [&] {
    if constexpr (kPreX) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) xw[u] = __ldca(reinterpret_cast<const uint4*>(x) + c + 32 * u);
    }
  };
  // The first batch of W is loaded before waiting on the previous kernel (W is immutable): with the early
  // trigger of the kernels before, this GEMV's blocks are resident while that kernel drains.
  bool full = c + 32 * (kUnroll - 1) < n_chunks;
  if (full) load_batch();
  GemvItemPre<TO> pre[T];  // the storing lane's epilogue inputs (gemv_modes.cuh): the rope mode's before the wait
#pragma unroll
  for (int t = 0; t < T; ++t)
    if (lane == 0) gemv_item_pre_early<M>(pre[t], n, ra);
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  if (full) load_x_batch();
#pragma unroll
  for (int t = 0; t < T; ++t)
    if (lane == 0) gemv_item_pre_late<M>(pre[t], out, t, n, N);
  while (full) {
    if (lane < kIterBytes / 128 && pf < row_bytes) prefetch_l2(wbytes + pf);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int t = 0; t < T; ++t) {
        float xf[8];
        if constexpr (kPreX)
          bf16x8_to_f32(xw[u], xf);
        else
          load_x8(x + std::int64_t(t) * K, c + 32 * u, xf);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wf[8];
          bf16x8_to_f32(wv[r][u], wf);
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[r][t] = fmaf(wf[i], xf[i], acc[r][t]);
        }
      }
    }
    c += 32 * kUnroll;
    pf += kIterBytes;
    full = c + 32 * (kUnroll - 1) < n_chunks;
    if (full) {
      load_batch();
      load_x_batch();
    }
  }
  for (; c < n_chunks; c += 32) {
    uint4 wv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wv[r] = load_stream(wrow[r] + c);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      float xf[8];
      load_x8(x + std::int64_t(t) * K, c, xf);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float wf[8];
        bf16x8_to_f32(wv[r], wf);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][t] = fmaf(wf[i], xf[i], acc[r][t]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) v[r] = warp_sum(acc[r][t]);
    if (lane == 0) gemv_item_store<M>(out, t, n, N, v, bias, ra, pre[t]);
  }
}

template <int T, GemvMode M = GemvMode::plain>
Status launch_rows(void* out, DType out_t, const void* x, DType x_t, const bf16* w, const bf16* bias, int N, int K,
                   cudaStream_t s, const RopeAppendArgs& ra = {}) {
  return dispatch_act(out_t, [&](auto to) {
    return dispatch_act(x_t, [&](auto tx) {
      using TO = typename decltype(to)::type;
      using TX = typename decltype(tx)::type;
      const int items = gemv_items(M, N, ra);
      const int blocks = ceil_div(items, kWarpsPerBlock);
      TO* o = static_cast<TO*>(out);
      const TX* xx = static_cast<const TX*>(x);
      const bool pf = l2_prefetch_enabled();
      // A programmatic dependent of the previous kernel: gemv_kernel waits for it before reading x.
      launch_dependent(gemv_kernel<T, TX, TO, M>, dim3(unsigned(blocks)), dim3(kWarpsPerBlock * 32), s, o, xx, w, bias,
                       N, items, K, pf, ra);
      PIXTRAL_CUDA_LAUNCH_CHECK(gemv_kernel);
      return Status{};
    });
  });
}

}  // namespace

bool gemv_supported(std::int64_t T, std::int64_t K, const void* x, DType x_t, const void* w) {
  if (T < 1 || T > kGemvMaxRows || K % 8 != 0 || K > (std::int64_t(1) << 30)) return false;
  if (x_t != DType::f32 && x_t != DType::bf16) return false;
  return reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && reinterpret_cast<std::uintptr_t>(w) % 16 == 0;
}

Status launch_gemv(void* out, DType out_t, const void* x, DType x_t, const bf16* w, const bf16* bias,
                   std::int64_t T, std::int64_t N, std::int64_t K, cudaStream_t s) {
  if (!gemv_supported(T, K, x, x_t, w))
    return Status(ErrorCode::internal, "launch_gemv: unsupported shape/alignment (caller must check)");
  switch (T) {
    case 1: return launch_rows<1>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
    case 2: return launch_rows<2>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
    case 3: return launch_rows<3>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
    default: return launch_rows<4>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
  }
}

Status launch_gemv_add(void* h, DType h_t, const void* x, DType x_t, const bf16* w, std::int64_t T, std::int64_t N,
                       std::int64_t K, cudaStream_t s) {
  if (!gemv_supported(T, K, x, x_t, w))
    return Status(ErrorCode::internal, "launch_gemv_add: unsupported shape/alignment (caller must check)");
  constexpr GemvMode A = GemvMode::residual;
  switch (T) {
    case 1: return launch_rows<1, A>(h, h_t, x, x_t, w, nullptr, int(N), int(K), s);
    case 2: return launch_rows<2, A>(h, h_t, x, x_t, w, nullptr, int(N), int(K), s);
    case 3: return launch_rows<3, A>(h, h_t, x, x_t, w, nullptr, int(N), int(K), s);
    default: return launch_rows<4, A>(h, h_t, x, x_t, w, nullptr, int(N), int(K), s);
  }
}

Status launch_gemv_silu(void* out, DType out_t, const void* x, DType x_t, const bf16* w13, std::int64_t T,
                        std::int64_t F, std::int64_t K, cudaStream_t s) {
  if (!gemv_supported(T, K, x, x_t, w13))
    return Status(ErrorCode::internal, "launch_gemv_silu: unsupported shape/alignment (caller must check)");
  switch (T) {
    case 1: return launch_rows<1, GemvMode::silu>(out, out_t, x, x_t, w13, nullptr, int(F), int(K), s);
    case 2: return launch_rows<2, GemvMode::silu>(out, out_t, x, x_t, w13, nullptr, int(F), int(K), s);
    case 3: return launch_rows<3, GemvMode::silu>(out, out_t, x, x_t, w13, nullptr, int(F), int(K), s);
    default: return launch_rows<4, GemvMode::silu>(out, out_t, x, x_t, w13, nullptr, int(F), int(K), s);
  }
}

Status launch_gemv_rope(void* qkv, DType t, const void* x, DType x_t, const bf16* wqkv, std::int64_t K, void* k_cache,
                        void* v_cache, DType cache_t, const int* pos, int nh, int nkv, int head_dim,
                        const float* freq, bool halves, cudaStream_t s) {
  if (!gemv_supported(1, K, x, x_t, wqkv) || cache_t != t || head_dim % 2)
    return Status(ErrorCode::internal, "launch_gemv_rope: unsupported shape/alignment (caller must check)");
  const RopeAppendArgs ra{k_cache, v_cache, pos, freq, nh, nkv, head_dim, halves};
  return launch_rows<1, GemvMode::rope>(qkv, t, x, x_t, wqkv, nullptr, (nh + 2 * nkv) * head_dim, int(K), s, ra);
}

// PIXTRAL_CUDA_PREFETCH=1 turns the L2 prefetch on, PIXTRAL_CUDA_PDL=0 the programmatic dependent launch (A/B in
// the kernel lab); read once.
bool l2_prefetch_enabled() {
  // Opt-in (PIXTRAL_CUDA_PREFETCH=1): measured on an H200 (2026-11-27, page-QA decode) it cost 0.94 ms/token
  // (8.21 vs 7.27 ms), the extra L2 traffic outweighing the deeper queue.
  static const bool on = env_one("PIXTRAL_CUDA_PREFETCH");
  return on;
}
// Compiled like every kernel of the library: its PTX version says whether griddepcontrol made it into the code.
__global__ void pdl_probe_kernel() {}

bool pdl_enabled() {
  // Programmatic dependent launch needs the kernels to wait (griddepcontrol.wait, sm_90+ code). A library built
  // for older architectures only and JIT-compiled for a Hopper GPU from their PTX has no wait in its kernels:
  // launching those as dependents would let them run before the previous kernel's results exist.
  static const bool on = [] {
    if (env_zero("PIXTRAL_CUDA_PDL")) return false;
    cudaFuncAttributes a{};
    if (cudaFuncGetAttributes(&a, pdl_probe_kernel) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return a.ptxVersion >= 90;
  }();
  return on;
}

}  // namespace pixtral::cuda
