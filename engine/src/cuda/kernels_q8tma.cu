// SPDX-License-Identifier: Apache-2.0
// The one-row int8 × bf16 decode GEMV streamed by the Tensor Memory Accelerator (issue 6; PERF_NOTES v17 3.):
// launch_q8tma, the twin of kernels_quant.cu's scalar int8 kernel with its arithmetic (q8_math.cuh: lane l takes
// 16-byte chunks l, l + 32, ... of its row in order, one fp32 FMA chain, warp_sum, the row's scale): the same bits.
// Opt-in (PIXTRAL_CUDA_Q8TMA=1 | 3 | 4, qtma_common.cuh): slower than the scalar kernel in every mode (PERF_NOTES v18
// 7.). A tile = 8 items, one a consumer warp (whole rows: no cross-warp sums); a stage = 1 KB of each of the tile's
// rows (64 chunks: two a lane), one 2-D TMA box of 8 rows (two for a split R = 2 tile) or 16 rows (the interleaved rope
// pairs). The row scales come from global memory at the tile's start (one float a row). The block shape, the ring and
// the launch checks are kernels_q4tma.cu's (qtma_common.cuh).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cuda/env_switch.h"
#include "cuda/kernels_quant.cuh"
#include "cuda/q8_math.cuh"
#include "cuda/qtma_common.cuh"
#include "cuda/timeline.cuh"

namespace pixtral::cuda {
namespace {

using namespace qtma;

constexpr int kQ8Items = kWarps;   // items a tile
constexpr int kQ8RowStage = 1024;  // bytes of a row a stage
constexpr int kQ8MaxStages = 12;

struct Q8tArgs {
  int N, n_items, K, n_tiles, stages, xs, stage_bytes;
};

// Stages that fit `budget` bytes of shared memory beside x; *total: the launch's shared memory.
int q8t_stages(int R, int K, int budget, int* total) {
  const int stage = R * kQ8Items * kQ8RowStage;
  const int stages = std::min(kQ8MaxStages, (budget - kBarBytes - K * 2 - 128) / stage);
  *total = kBarBytes + stages * stage + K * 2;
  return stages;
}

// The int8 W [rows][K bytes] as uint32, boxes of 1 KB × 8 rows (or 16: rope's interleaved pairs).
MapSpec q8_map(const void* base, std::int64_t rows, int K, int box_rows) {
  return make_map(base, CU_TENSOR_MAP_DATA_TYPE_UINT32, {cuuint64_t(K) / 4, cuuint64_t(rows)}, {cuuint64_t(K)},
                  {kQ8RowStage / 4, cuuint32_t(box_rows)});
}

template <class TO, GemvMode M>
__global__ void __launch_bounds__(kThreads, 2)
    q8tma_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const float* __restrict__ scales,
                 const bf16* __restrict__ bias, const Q8tArgs a, const RopeAppendArgs ra,
                 const __grid_constant__ CUtensorMap mw, const __grid_constant__ CUtensorMap mw2) {
  // mw: 2-D map of 8-row boxes; mw2: 16-row boxes (rope's interleaved pairs).
  constexpr int R = gemv_rows_per_item(M);
  extern __shared__ __align__(1024) unsigned char smem[];
  PIXTRAL_TIMELINE(kTlQ8tma + unsigned(M));
  allow_dependents_to_launch();
  std::uint64_t* bars = reinterpret_cast<std::uint64_t*>(smem);
  StageRing ring{bars, bars + kQ8MaxStages, a.stages};
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_chunks = a.K / 16, n_st = (a.K + kQ8RowStage - 1) / kQ8RowStage;
  if (threadIdx.x == 0) {
    ring.init();
    mbar_init_fence();
  }
  __syncthreads();
  if (warp == kWarps) {  // the producer: lane 0 alone
    if (lane != 0) return;
    prefetch_map(&mw);
    if constexpr (M == GemvMode::rope) prefetch_map(&mw2);
    for (int j = 0;; ++j) {
      const int tile = int(blockIdx.x) + j * int(gridDim.x);
      if (tile >= a.n_tiles) break;
      const TilePlan p = tile_plan<M>(tile * kQ8Items, a.N, ra);
      for (int s = 0; s < n_st; ++s) {
        ring.wait_empty();
        const std::uint32_t bar = ring.full_bar(), dst = smem_addr(smem + kBarBytes + ring.slot * a.stage_bytes);
        mbar_expect_tx(bar, std::uint32_t(a.stage_bytes));
        if (p.inter) {
          tma_load_2d(dst, &mw2, bar, s * (kQ8RowStage / 4), p.row_a);
        } else {
          tma_load_2d(dst, &mw, bar, s * (kQ8RowStage / 4), p.row_a);
          if constexpr (R == 2)
            tma_load_2d(dst + kQ8Items * kQ8RowStage, &mw, bar, s * (kQ8RowStage / 4), p.row_b);
        }
        ring.next();
      }
    }
    return;
  }
  wait_for_previous_grid();  // x and out belong to the previous kernels
  const int tid = threadIdx.x;
  bf16* xs = reinterpret_cast<bf16*>(smem + a.xs);
  stage_x(xs, x, a.K, tid);
  named_sync(1, kWarps * 32);
  for (int j = 0;; ++j) {
    const int tile = int(blockIdx.x) + j * int(gridDim.x);
    if (tile >= a.n_tiles) break;
    const int n = tile * kQ8Items + warp;  // this warp's item
    const TilePlan p = tile_plan<M>(tile * kQ8Items, a.N, ra);
    // Row r of the item: its place in the stage and its weight row (for the scale).
    int roff[R];
    float srow[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int in_box = p.inter ? 2 * warp + r : warp;
      roff[r] = ((p.inter || r == 0) ? 0 : kQ8Items * kQ8RowStage) + in_box * kQ8RowStage;
      const int row = p.inter ? p.row_a + 2 * warp + r : (r == 0 ? p.row_a : p.row_b) + warp;
      srow[r] = n < a.n_items ? __ldg(scales + row) : 0.f;
    }
    GemvItemPre<TO> pre;
    if (lane == 0 && n < a.n_items) {
      gemv_item_pre_early<M>(pre, n, ra);
      gemv_item_pre_late<M>(pre, out, 0, n, a.N);
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;
    for (int s = 0; s < n_st; ++s) {
      ring.wait_full();
      const unsigned char* st = smem + kBarBytes + ring.slot * a.stage_bytes;
      uint4 wv[R][2];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int i = 0; i < 2; ++i) wv[r][i] = *reinterpret_cast<const uint4*>(st + roff[r] + (32 * i + lane) * 16);
      __syncwarp();
      ring.release(lane);
      ring.next();
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int c = 64 * s + 32 * i + lane;  // the scalar kernel's chunk order: lane, lane + 32, ...
        if (c < n_chunks) {
          const uint4 xw[2] = {reinterpret_cast<const uint4*>(xs)[2 * c],
                               reinterpret_cast<const uint4*>(xs)[2 * c + 1]};
#pragma unroll
          for (int r = 0; r < R; ++r) accumulate_int8_x(wv[r][i], xw, acc[r]);
        }
      }
    }
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) v[r] = warp_sum(acc[r]) * srow[r];
    if (lane == 0 && n < a.n_items) gemv_item_store<M>(out, 0, n, a.N, v, bias, ra, pre);
  }
}

template <class TO, GemvMode M>
Status launch_q8_typed(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                       int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  constexpr int R = gemv_rows_per_item(M);
  int total = 0;
  int stages = q8t_stages(R, K, kMaxSmem, &total);
  if (stages < 2 || total > kMaxSmem) return not_here(kQ8Env, "K too large for the shared memory");
  if (!tma_ready(q8tma_kernel<TO, M>) || sm_count() == 0) return not_here(kQ8Env, "no sm_90 code for this GPU");
  const int n_tiles = ceil_div(items, kQ8Items);
  int per_sm = 2;
  const long eq = env_long(kQ8Env, 0);  // 3 or 4: that many blocks an SM (A/B)
  const int want = eq == 3 || eq == 4 ? int(eq) : 2;
  if (want > 2) {
    int total_w = 0;
    const int stages_w = q8t_stages(R, K, 228 * 1024 / want - 2048, &total_w);
    if (stages_w >= 2 && blocks_fit(q8tma_kernel<TO, M>, total_w, want)) {
      stages = stages_w;
      total = total_w;
      per_sm = want;
    }
  }
  const std::int64_t rows = weight_rows<M>(N, ra);
  CUtensorMap mw{}, mw2{};
  if (!encode_map(&mw, q8_map(q, rows, K, 8)) || (M == GemvMode::rope && !encode_map(&mw2, q8_map(q, rows, K, 16))))
    return not_here(kQ8Env, "no tensor-map encoder, or the driver refused a map");
  Q8tArgs a;
  a.N = N;
  a.n_items = items;
  a.K = K;
  a.n_tiles = n_tiles;
  a.stages = stages;
  a.stage_bytes = R * kQ8Items * kQ8RowStage;
  a.xs = kBarBytes + stages * a.stage_bytes;
  const int grid = std::min(n_tiles, per_sm * sm_count());
  launch_dependent_smem(q8tma_kernel<TO, M>, dim3(unsigned(grid)), dim3(kThreads), std::size_t(total), s, out, x,
                        scales, bias, a, ra, mw, mw2);
  PIXTRAL_CUDA_LAUNCH_CHECK(q8tma_kernel);
  *launched = true;
  return {};
}

}  // namespace

Status launch_q8tma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched) {
  *launched = false;
  // PIXTRAL_CUDA_Q8TMA_MODES=residual,silu,...: this kernel for the modes listed only, without PIXTRAL_CUDA_Q8TMA
  // (A/B of one mode at a time).
  const char* em = std::getenv("PIXTRAL_CUDA_Q8TMA_MODES");
  const char* name = mode == GemvMode::plain ? "plain" : mode == GemvMode::silu ? "silu"
                     : mode == GemvMode::rope ? "rope" : "residual";
  if (T != 1 || (em ? std::strstr(em, name) == nullptr : tma_switch(kQ8Env) == TmaSwitch::off)) return {};
  // Where it runs: rows of at least one stage (1 KB) and whole 16-byte chunks; 16-byte aligned W (TMA); rope with
  // halves pairs only when a tile of 8 stays inside a head.
  if (K % 16 != 0 || K < kQ8RowStage) return not_here(kQ8Env, "K must be a multiple of 16 and at least 1024");
  if (items < 1 || reinterpret_cast<std::uintptr_t>(q) % 16 != 0)
    return not_here(kQ8Env, "no items, or W not 16-byte aligned");
  if (mode == GemvMode::rope && (ra.hd % 2 != 0 || (ra.halves && (ra.hd / 2) % kQ8Items != 0)))
    return not_here(kQ8Env, "rope with halves pairs needs head_dim / 2 a multiple of 8");
  if (out_t != DType::f32 && out_t != DType::bf16) return not_here(kQ8Env, "output neither f32 nor bf16");
  return dispatch_mode(mode, [&](auto m) {
    constexpr GemvMode M = decltype(m)::value;
    if (out_t == DType::f32)
      return launch_q8_typed<float, M>(static_cast<float*>(out), x, q, scales, bias, N, items, K, ra, s, launched);
    return launch_q8_typed<bf16, M>(static_cast<bf16*>(out), x, q, scales, bias, N, items, K, ra, s, launched);
  });
}

}  // namespace pixtral::cuda
