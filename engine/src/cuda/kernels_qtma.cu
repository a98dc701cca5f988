// SPDX-License-Identifier: Apache-2.0
// The quantized decode GEMVs for one x row, streamed by the Tensor Memory Accelerator (issue 6; PERF_NOTES v17):
// launch_q4tma (int4), called by kernels_quant.cu's GEMV dispatch before q4mma (kernels_q4mma.cu) for T = 1 in every
// mode (plain, silu, rope, residual), computing every row with q4mma's arithmetic (q4_math.cuh): the same bits;
// launch_q4tma_normed, the same with the decode RMSNorm folded in; and launch_q8tma, the int8 twin of the scalar
// kernel (opt-in: slower so far; see q8tma below).
//
// Why: q4mma's threads each stream their own 16-byte pieces through a cp.async ring, one 16-row tile a block, in
// grids of 192–896 blocks; a decoder layer's four int4 GEMVs ran at 1.9× their bytes at the copy rate (lab chain:
// 65.8 µs a layer against 34.4), each kernel ~6–11 µs over its bytes (v14). The same bytes copied as one bulk copy
// a stage stream at 1.05–1.2× (pixtral_q4stream_lab), and a 4-D tensor map reads them from the row-major layout
// as they are stored (no new weight format).
//
// Structure: a persistent grid of two blocks an SM (three where the tiles fit them), static tiles (tile = block +
// j · grid: the schedule, and so the bits, do not depend on timing). A block = 8 consumer warps + 1 producer warp
// (one lane). The producer, from
// before the programmatic-dependent-launch wait on (weights are immutable), fills a ring of mbarrier-guarded stages:
// stage s of a tile = group g_lo(w) + s of each consumer warp w's contiguous range of K's groups (q4mma's ranges,
// n_groups / 8 each) for the tile's 16 rows (R = 2 modes: both row sets), one TMA (two for a split R = 2 tile); and
// each tile's scales ([16 rows][n_groups] fp32, one box a row set) into one of two scale slots. The consumers stage
// x once (natural order, all loads at once), then for each stage: wait, read their 16 bytes of rows g and g + 8,
// release the slot, and multiply (q4_group_mma, with the group's correction from group_correction: q4mma's T = 1
// path). A tile's 8 partial sums meet in shared memory: warps 1..7 arrive on a named barrier, warp 0 waits on it,
// adds them in warp order (q4mma's order) and stores through gemv_modes.cuh's epilogue — the storing lanes read
// their epilogue inputs (the rope position and sin/cos, the residual's h) at the tile's start.
// launch_q4tma_normed folds the decode RMSNorm before the QKV and [w1; w3] GEMVs into the prologue: each block
// normalizes h itself with row_norm_kernel's bits while its ring fills (block 0 also writes xn), one kernel instead
// of two (H200 int4 decode, same run: 2.958 -> 2.941 ms/token).
// Shared-memory image of a stage: [warp][row][64 bytes] for a 16-row box (rows g and g + 1 of a warp's reads lie
// 64 bytes apart: no bank conflict), [warp][r][pair][64] for the interleaved rope pairs' 5-D box.
// ref: PTX ISA "cp.async.bulk.tensor", "mbarrier"; CUTLASS's warp-specialized producer/consumer pipelines
//      (the full/empty barrier ring).
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>

#include "core/quant.h"
#include "cuda/gemv_modes.cuh"
#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"
#include "cuda/q4_math.cuh"
#include "cuda/q8_math.cuh"
#include "cuda/timeline.cuh"
#include "cuda/tma.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarps = 8;                     // consumer warps (q4mma's kMmaWarps: the same group ranges)
constexpr int kThreads = (kWarps + 1) * 32;   // + the producer warp
constexpr int kMaxStages = 8;
constexpr int kRedBufs = 4;                   // tiles a warp may run ahead of warp 0's sums (≤ 2 scale slots + 1)
constexpr int kBoxBytes = 16 * kWarps * 64;   // one 16-row box of a stage: 8 KB
constexpr int kBarBytes = 1024;               // the barriers' corner at the start of shared memory
constexpr int kMaxSmem = 110 * 1024;          // two blocks an SM (228 KB, 1 KB reserved a block)
constexpr int kSmem3 = 74 * 1024;             // three blocks an SM

// The shared-memory plan of a launch (host and device agree through the kernel arguments).
struct Q4tLayout {
  int stages = 0;
  int stage_bytes = 0;  // R · 8 KB
  int scale_bytes = 0;  // R · 16 · n_groups · 4
  int ring = 0, scales = 0, xs = 0, red = 0, total = 0;  // byte offsets, size
};

Q4tLayout q4t_layout(int R, int K, int budget) {
  Q4tLayout l;
  const int n_groups = K / quant::kInt4Group;
  l.stage_bytes = R * kBoxBytes;
  l.scale_bytes = R * 16 * n_groups * 4;
  const int fixed = kBarBytes + 2 * l.scale_bytes + K * 2 + kRedBufs * kWarps * R * 16 * 4 + 3 * 128;
  l.stages = std::min(kMaxStages, (budget - fixed) / l.stage_bytes);
  l.ring = kBarBytes;
  l.scales = l.ring + l.stages * l.stage_bytes;
  l.xs = (l.scales + 2 * l.scale_bytes + 127) / 128 * 128;
  l.red = (l.xs + K * 2 + 127) / 128 * 128;
  l.total = l.red + kRedBufs * kWarps * R * 16 * 4;
  return l;
}

struct Q4tArgs {
  int N, n_items, K, n_tiles, stages, ring, scales, xs, red, stage_bytes, scale_bytes;
  // The RMSNorm folded in (launch_q4tma_normed): x = round(h · inv · w) computed by every block from h; block 0 also
  // writes it to xn. Null nh: x is the input.
  const bf16* nh = nullptr;
  const bf16* nw = nullptr;
  bf16* nxn = nullptr;
  float eps = 0.f;
};

// Where tile n0's rows lie: row_a (and row_b for a split R = 2 tile), or rows 2n, 2n + 1 of its 16 items in one
// 32-row (16-pair) box (inter). gemv_item_rows' mapping, per tile.
struct TilePlan {
  int row_a, row_b;
  bool inter;
};
template <GemvMode M>
__device__ __forceinline__ TilePlan tile_plan(int n0, int N, const RopeAppendArgs& ra) {  // (any tile ≤ half)
  if constexpr (M == GemvMode::plain || M == GemvMode::residual) {
    return {n0, 0, false};
  } else if constexpr (M == GemvMode::silu) {
    return {n0, N + n0, false};
  } else {
    const int half = ra.hd / 2, n_rot = (ra.nh + ra.nkv) * half;
    if (ra.halves && n0 < n_rot) {  // half a multiple of the tile (host): a tile stays inside one head
      const int hh = n0 / half, m = n0 % half;
      return {hh * ra.hd + m, hh * ra.hd + half + m, false};
    }
    return {2 * n0, 0, true};  // interleaved rotary pairs and every v pair: rows 2n, 2n + 1
  }
}

// The consumers' copy of x (K bf16) into shared memory, natural order: every load first (one round trip for K ≤
// 16384), then the stores. The caller syncs the consumers after it.
__device__ __forceinline__ void stage_x(bf16* xs, const bf16* x, int K, int tid) {
  constexpr int kBatch = 8;
  const int n_chunks = K / 8;
  for (int c0 = 0; c0 < n_chunks; c0 += kBatch * kWarps * 32) {
    uint4 v[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int c = c0 + b * kWarps * 32 + tid;
      if (c < n_chunks) v[b] = reinterpret_cast<const uint4*>(x)[c];
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int c = c0 + b * kWarps * 32 + tid;
      if (c < n_chunks) reinterpret_cast<uint4*>(xs)[c] = v[b];
    }
  }
}

template <class TO, GemvMode M>
__global__ void __launch_bounds__(kThreads, 2)
    q4tma_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const bf16* __restrict__ bias, const Q4tArgs a,
                 const RopeAppendArgs ra, const __grid_constant__ CUtensorMap mw,
                 const __grid_constant__ CUtensorMap mw2, const __grid_constant__ CUtensorMap ms,
                 const __grid_constant__ CUtensorMap ms2) {
  // mw: the 4-D map of 16-row boxes; mw2: the 5-D map of 16-pair boxes (rope only); ms / ms2: the scales' 16- and
  // 32-row boxes.
  constexpr int R = gemv_rows_per_item(M);
  extern __shared__ __align__(1024) unsigned char smem[];
  PIXTRAL_TIMELINE(kTlQ4tma + unsigned(M));
  allow_dependents_to_launch();
  std::uint64_t* full = reinterpret_cast<std::uint64_t*>(smem);
  std::uint64_t* empty = full + kMaxStages;
  std::uint64_t* sfull = empty + kMaxStages;
  std::uint64_t* sempty = sfull + 2;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_groups = a.K / quant::kInt4Group, gpw = n_groups / kWarps;  // groups a warp, = stages a tile
  const int S = a.stages;
  if (threadIdx.x == 0) {
    for (int i = 0; i < S; ++i) {
      mbar_init(smem_addr(full + i), 1);        // the producer's arrive.expect_tx; the bytes come from the TMA
      mbar_init(smem_addr(empty + i), kWarps);  // lane 0 of each consumer warp
    }
    for (int i = 0; i < 2; ++i) {
      mbar_init(smem_addr(sfull + i), 1);
      mbar_init(smem_addr(sempty + i), kWarps);
    }
    mbar_init_fence();
  }
  __syncthreads();  // the only block-wide barrier
  if (warp == kWarps) {  // the producer: lane 0 alone
    if (lane != 0) return;
    prefetch_map(&mw);
    prefetch_map(&ms);
    if constexpr (M == GemvMode::rope) {
      prefetch_map(&mw2);
      prefetch_map(&ms2);
    }
    int slot = 0, uses = 0;
    for (int j = 0;; ++j) {
      const int tile = int(blockIdx.x) + j * int(gridDim.x);
      if (tile >= a.n_tiles) break;
      const TilePlan p = tile_plan<M>(tile * 16, a.N, ra);
      const int ts = j & 1;
      if (j >= 2) mbar_wait(smem_addr(sempty + ts), ((j >> 1) - 1) & 1);
      const std::uint32_t sbar = smem_addr(sfull + ts), sdst = smem_addr(smem + a.scales + ts * a.scale_bytes);
      mbar_expect_tx(sbar, std::uint32_t(a.scale_bytes));
      if (p.inter) {
        tma_load_2d(sdst, &ms2, sbar, 0, p.row_a);
      } else {
        tma_load_2d(sdst, &ms, sbar, 0, p.row_a);
        if constexpr (R == 2) tma_load_2d(sdst + 16 * n_groups * 4, &ms, sbar, 0, p.row_b);
      }
      for (int s = 0; s < gpw; ++s) {
        if (uses >= S) mbar_wait(smem_addr(empty + slot), ((uses / S) - 1) & 1);
        const std::uint32_t bar = smem_addr(full + slot), dst = smem_addr(smem + a.ring + slot * a.stage_bytes);
        mbar_expect_tx(bar, std::uint32_t(a.stage_bytes));
        if (p.inter) {
          tma_load_5d(dst, &mw2, bar, 0, p.row_a / 2, 0, s, 0);
        } else {
          tma_load_4d(dst, &mw, bar, 0, p.row_a, s, 0);
          if constexpr (R == 2) tma_load_4d(dst + kBoxBytes, &mw, bar, 0, p.row_b, s, 0);
        }
        ++uses;
        slot = slot + 1 == S ? 0 : slot + 1;
      }
    }
    return;
  }
  // The consumers.
  wait_for_previous_grid();  // x and out belong to the previous kernels
  const int tid = threadIdx.x;
  bf16* xs = reinterpret_cast<bf16*>(smem + a.xs);
  float* red = reinterpret_cast<float*>(smem + a.red);  // [kRedBufs][kWarps][R][16]; first the norm's warp sums
  // Only the rope and silu modes take a norm; the other modes compile without it (their registers: 64 / 68).
  if (M != GemvMode::plain && M != GemvMode::residual && a.nh) {
    // The decode RMSNorm folded in, with row_norm_kernel's bits (kernels_elementwise.cu, one block of ceil32(K / 8)
    // threads, one piece of 8 each: K / 8 ≤ 1024): each piece's sum of squares in its order; that kernel's warp k
    // (pieces 32k .. 32k + 31) is this block's warp k % 8 in round k / 8, summed by the same shuffle tree; then its
    // block_sum's second stage (lane i takes warp sum i, zeros past them, the same tree); inv; x = (h · inv) · w.
    const int nv = a.K / 8, n_nw = (nv + 31) / 32;
    constexpr int kRounds = 4;  // 256 threads × 4 ≥ 1024 pieces
    uint4 hv[kRounds], gv[kRounds];
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      const int p = r * kWarps * 32 + tid;
      if (p < nv) {
        hv[r] = reinterpret_cast<const uint4*>(a.nh)[p];
        gv[r] = reinterpret_cast<const uint4*>(a.nw)[p];
      }
    }
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      if (r * kWarps + warp >= n_nw) break;  // warp-uniform
      const int p = r * kWarps * 32 + tid;
      float ss = 0.f;
      if (p < nv) {
        float f[8];
        bf16x8_to_f32(hv[r], f);
#pragma unroll
        for (int i = 0; i < 8; ++i) ss += f[i] * f[i];
      }
      ss = warp_sum(ss);
      if (lane == 0) red[r * kWarps + warp] = ss;
    }
    named_sync(1, kWarps * 32);
    const float tot = warp_sum(lane < n_nw ? red[lane] : 0.f);
    const float inv = 1.0f / sqrtf(tot / float(a.K) + a.eps);
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      const int p = r * kWarps * 32 + tid;
      if (p < nv) {
        float f[8], g[8];
        bf16x8_to_f32(hv[r], f);
        bf16x8_to_f32(gv[r], g);
        uint4 o;
        __nv_bfloat162* ob = reinterpret_cast<__nv_bfloat162*>(&o);
#pragma unroll
        for (int i = 0; i < 4; ++i)
          ob[i] = __floats2bfloat162_rn(f[2 * i] * inv * g[2 * i], f[2 * i + 1] * inv * g[2 * i + 1]);
        reinterpret_cast<uint4*>(xs)[p] = o;
        if (blockIdx.x == 0) reinterpret_cast<uint4*>(a.nxn)[p] = o;
      }
    }
  } else {
    stage_x(xs, x, a.K, tid);
  }
  named_sync(1, kWarps * 32);
  const int g = lane >> 2, t = lane & 3;
  int slot = 0, uses = 0;
  for (int j = 0;; ++j) {
    const int tile = int(blockIdx.x) + j * int(gridDim.x);
    if (tile >= a.n_tiles) break;
    const int n0 = tile * 16;
    const TilePlan p = tile_plan<M>(n0, a.N, ra);
    // Warp 0's lanes 0..15 store item n0 + lane: its epilogue inputs now, off the tile's end.
    const bool stores = warp == 0 && lane < 16 && n0 + lane < a.n_items;
    GemvItemPre<TO> pre;
    if (stores) {
      gemv_item_pre_early<M>(pre, n0 + lane, ra);
      gemv_item_pre_late<M>(pre, out, 0, n0 + lane, a.N);
    }
    const int ts = j & 1;
    mbar_wait(smem_addr(sfull + ts), (j >> 1) & 1);
    const float* sc = reinterpret_cast<const float*>(smem + a.scales + ts * a.scale_bytes);
    float acc[R][4];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][e] = 0.f;
    // This warp's bytes in a stage, row set r: [warp][row][64] boxes (r · 8 KB apart) or [warp][r][pair][64].
    int wbase[R], sbase[R], sstride;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      wbase[r] = p.inter ? warp * 2048 + r * 1024 : r * kBoxBytes + warp * 1024;
      sbase[r] = p.inter ? r * n_groups : r * 16 * n_groups;
    }
    sstride = p.inter ? 2 * n_groups : n_groups;  // between items' scale rows
    for (int s = 0; s < gpw; ++s) {
      mbar_wait(smem_addr(full + slot), (uses / S) & 1);
      const unsigned char* st = smem + a.ring + slot * a.stage_bytes;
      uint4 w0[R], w1[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        w0[r] = *reinterpret_cast<const uint4*>(st + wbase[r] + g * 64 + 16 * t);
        w1[r] = *reinterpret_cast<const uint4*>(st + wbase[r] + (g + 8) * 64 + 16 * t);
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(smem_addr(empty + slot));  // the slot's bytes are in registers
      ++uses;
      slot = slot + 1 == S ? 0 : slot + 1;
      const int G = warp * gpw + s;
      uint4 xv[4];
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) xv[ww] = reinterpret_cast<const uint4*>(xs + 128 * G + 32 * t)[ww];
      const float cr = group_correction(reinterpret_cast<const uint2*>(xs + 128 * G)[lane]);
      const float corr[2] = {cr, cr};  // D column 0 (x row 0) takes corr[0]; the others are never read
#pragma unroll
      for (int r = 0; r < R; ++r)
        q4_group_mma(w0[r], w1[r], xv, sc[sbase[r] + g * sstride + G], sc[sbase[r] + (g + 8) * sstride + G], corr,
                     acc[r]);
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(smem_addr(sempty + ts));  // this warp is done with the tile's scales
    const int b = j % kRedBufs;
    float* rb = red + b * kWarps * R * 16;
    if (t == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        rb[(warp * R + r) * 16 + g] = acc[r][0];  // D column 0: x row 0
        rb[(warp * R + r) * 16 + g + 8] = acc[r][2];
      }
    }
    if (warp != 0) {
      named_arrive(2 + b, kWarps * 32);
    } else {
      named_sync(2 + b, kWarps * 32);
      if (stores) {
        float v[2] = {0.f, 0.f};
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float sum = rb[r * 16 + lane];
#pragma unroll
          for (int w = 1; w < kWarps; ++w) sum += rb[(w * R + r) * 16 + lane];
          v[r] = sum;
        }
        gemv_item_store<M>(out, 0, n0 + lane, a.N, v, bias, ra, pre);
      }
    }
  }
}

// ---- the int8 twin: q8tma -------------------------------------------------------------------------------------
// The one-row int8 × bf16 GEMV with the scalar kernel's arithmetic (q8_math.cuh: lane l takes 16-byte chunks l,
// l + 32, ... of its row in order, one fp32 FMA chain, warp_sum, the row's scale): the same bits. A tile = 8 items,
// one a consumer warp (whole rows: no cross-warp sums); a stage = 1 KB of each of the tile's rows (64 chunks: two a
// lane), one 2-D TMA box of 8 rows (two for a split R = 2 tile) or 16 rows (the interleaved rope pairs). The row
// scales come from global memory at the tile's start (one float a row).
constexpr int kQ8Items = kWarps;     // items a tile
constexpr int kQ8RowStage = 1024;    // bytes of a row a stage
constexpr int kQ8MaxStages = 12;

struct Q8tArgs {
  int N, n_items, K, n_tiles, stages, xs, stage_bytes;
};

int q8t_stages(int R, int K, int budget, int* total) {
  const int stage = R * kQ8Items * kQ8RowStage, xs = kBarBytes + 0;
  const int fixed = xs + K * 2 + 128;
  const int stages = std::min(kQ8MaxStages, (budget - fixed) / stage);
  *total = kBarBytes + stages * stage + K * 2;
  return stages;
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
  std::uint64_t* full = reinterpret_cast<std::uint64_t*>(smem);
  std::uint64_t* empty = full + kQ8MaxStages;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_chunks = a.K / 16, n_st = (a.K + kQ8RowStage - 1) / kQ8RowStage;
  const int S = a.stages;
  if (threadIdx.x == 0) {
    for (int i = 0; i < S; ++i) {
      mbar_init(smem_addr(full + i), 1);
      mbar_init(smem_addr(empty + i), kWarps);
    }
    mbar_init_fence();
  }
  __syncthreads();
  if (warp == kWarps) {  // the producer: lane 0 alone
    if (lane != 0) return;
    prefetch_map(&mw);
    if constexpr (M == GemvMode::rope) prefetch_map(&mw2);
    int slot = 0, uses = 0;
    for (int j = 0;; ++j) {
      const int tile = int(blockIdx.x) + j * int(gridDim.x);
      if (tile >= a.n_tiles) break;
      const TilePlan p = tile_plan<M>(tile * kQ8Items, a.N, ra);
      for (int s = 0; s < n_st; ++s) {
        if (uses >= S) mbar_wait(smem_addr(empty + slot), ((uses / S) - 1) & 1);
        const std::uint32_t bar = smem_addr(full + slot), dst = smem_addr(smem + kBarBytes + slot * a.stage_bytes);
        mbar_expect_tx(bar, std::uint32_t(a.stage_bytes));
        if (p.inter) {
          tma_load_2d(dst, &mw2, bar, s * (kQ8RowStage / 4), p.row_a);
        } else {
          tma_load_2d(dst, &mw, bar, s * (kQ8RowStage / 4), p.row_a);
          if constexpr (R == 2)
            tma_load_2d(dst + kQ8Items * kQ8RowStage, &mw, bar, s * (kQ8RowStage / 4), p.row_b);
        }
        ++uses;
        slot = slot + 1 == S ? 0 : slot + 1;
      }
    }
    return;
  }
  wait_for_previous_grid();  // x and out belong to the previous kernels
  const int tid = threadIdx.x;
  bf16* xs = reinterpret_cast<bf16*>(smem + a.xs);
  stage_x(xs, x, a.K, tid);
  named_sync(1, kWarps * 32);
  int slot = 0, uses = 0;
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
      mbar_wait(smem_addr(full + slot), (uses / S) & 1);
      const unsigned char* st = smem + kBarBytes + slot * a.stage_bytes;
      uint4 wv[R][2];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int i = 0; i < 2; ++i) wv[r][i] = *reinterpret_cast<const uint4*>(st + roff[r] + (32 * i + lane) * 16);
      __syncwarp();
      if (lane == 0) mbar_arrive(smem_addr(empty + slot));
      ++uses;
      slot = slot + 1 == S ? 0 : slot + 1;
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

// PIXTRAL_CUDA_Q4TMA=0 sends the one-row int4 GEMVs to q4mma (A/B). The int8 kernel is opt-in: PIXTRAL_CUDA_Q8TMA=1,
// or 3 / 4 for that many blocks an SM instead of 2 (H200 int8 decode, same run: the scalar kernel 3.88 ms/token, this
// one 4.21 / 4.15 / 4.24 at 2 / 3 / 4 blocks an SM — not the occupancy, then; kept, tested, for the work on it).
// =require makes a one-row GEMV that cannot run here an error instead (tst_quant_cuda: the bits it compares with the
// other kernel's are this one's). Read at every launch (a decode graph launches nothing: the capture read it).
enum class TmaSwitch { off, on, require };
constexpr const char* kQ4Env = "PIXTRAL_CUDA_Q4TMA";
constexpr const char* kQ8Env = "PIXTRAL_CUDA_Q8TMA";
TmaSwitch tma_switch(const char* env) {
  const char* e = std::getenv(env);
  if (e && std::strcmp(e, "require") == 0) return TmaSwitch::require;
  if (std::strcmp(env, kQ8Env) == 0) return e && e[0] >= '1' && e[0] <= '9' ? TmaSwitch::on : TmaSwitch::off;
  return e && e[0] == '0' ? TmaSwitch::off : TmaSwitch::on;
}
// Not launched, for the reason given: the other kernel runs instead, or, under <env>=require, an error.
Status not_here(const char* env, const char* why) {
  if (tma_switch(env) != TmaSwitch::require) return {};
  return Status(ErrorCode::unsupported, std::string("one-row TMA GEMV (") + env + "=require): " + why);
}

// Tensor maps are pure functions of (address, shape, box): cached so that eager launches do not encode four maps
// each (a captured graph keeps the kernel's copies). A freed weight's address reused by another of the same shape
// maps identically, so entries never go stale.
struct MapKey {
  const void* base;
  int kind;  // int4: 0 W 4-D, 1 W 5-D, 2 scales 16 rows, 3 scales 32 rows; int8: 4 W 8 rows, 5 W 16 rows
  std::int64_t rows, K;
  bool operator<(const MapKey& o) const {
    return std::tie(base, kind, rows, K) < std::tie(o.base, o.kind, o.rows, o.K);
  }
};

bool encode(CUtensorMap* m, const MapKey& k) {
  static std::mutex mu;
  static std::map<MapKey, CUtensorMap> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(k); it != cache.end()) {
    *m = it->second;
    return true;
  }
  const EncodeTiledFn fn = encode_tiled();
  if (!fn) return false;
  const cuuint64_t n = cuuint64_t(k.K / quant::kInt4Group), K = cuuint64_t(k.K), rows = cuuint64_t(k.rows);
  CUresult r;
  if (k.kind == 0) {  // (16 uint32 of a group, row, group in a warp's range, warp): box 16 × 16 rows × 1 × 8
    const cuuint64_t dims[4] = {16, rows, n / kWarps, kWarps};
    const cuuint64_t strides[3] = {K / 2, 64, 64 * (n / kWarps)};
    const cuuint32_t box[4] = {16, 16, 1, kWarps}, es[4] = {1, 1, 1, 1};
    r = fn(m, CU_TENSOR_MAP_DATA_TYPE_UINT32, 4, const_cast<void*>(k.base), dims, strides, box, es,
           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  } else if (k.kind == 1) {  // (16 uint32, pair, row of the pair, group in range, warp): box 16 × 16 × 2 × 1 × 8
    const cuuint64_t dims[5] = {16, rows / 2, 2, n / kWarps, kWarps};
    const cuuint64_t strides[4] = {K, K / 2, 64, 64 * (n / kWarps)};
    const cuuint32_t box[5] = {16, 16, 2, 1, kWarps}, es[5] = {1, 1, 1, 1, 1};
    r = fn(m, CU_TENSOR_MAP_DATA_TYPE_UINT32, 5, const_cast<void*>(k.base), dims, strides, box, es,
           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  } else if (k.kind >= 4) {  // int8 [rows][K bytes] as uint32: box 1 KB × 8 or 16 rows
    const cuuint64_t dims[2] = {K / 4, rows};
    const cuuint64_t strides[1] = {K};
    const cuuint32_t box[2] = {kQ8RowStage / 4, k.kind == 4 ? 8u : 16u}, es[2] = {1, 1};
    r = fn(m, CU_TENSOR_MAP_DATA_TYPE_UINT32, 2, const_cast<void*>(k.base), dims, strides, box, es,
           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  } else {  // scales [rows][n] fp32: box n × 16 or 32 rows
    const cuuint64_t dims[2] = {n, rows};
    const cuuint64_t strides[1] = {n * 4};
    const cuuint32_t box[2] = {cuuint32_t(n), k.kind == 2 ? 16u : 32u}, es[2] = {1, 1};
    r = fn(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, const_cast<void*>(k.base), dims, strides, box, es,
           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  }
  if (r != CUDA_SUCCESS) return false;
  cache.emplace(k, *m);
  return true;
}

// Once per kernel and device: whether the kernel's image is sm_90+ code (TMA), and the shared-memory opt-in at
// kMaxSmem (one value a kernel: every launch's layout stays below it, and one block of it fits an sm_90 SM).
template <class Kernel>
bool tma_ready(Kernel kernel) {
  return per_device_once(reinterpret_cast<const void*>(kernel), long(kMaxSmem), [&] {
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess || fa.binaryVersion < 90 ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmem) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return true;
  });
}

// Whether `want` blocks of `smem` bytes fit an SM (registers allowing: the one-row-set modes' 64-68 for three).
template <class Kernel>
bool blocks_fit(Kernel kernel, int smem, int want) {
  return per_device_once(reinterpret_cast<const void*>(kernel), long(smem) * 8 + want, [&] {
    int blocks = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, std::size_t(smem)) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return blocks >= want;
  });
}

int sm_count() {
  static const int n = [] {
    int dev = 0, c = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev) !=
                                                  cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return c;
  }();
  return n;
}

// The norm folded into a launch (launch_q4tma_normed): h, the norm weight, xn, eps.
struct NormIn {
  const bf16* h;
  const bf16* w;
  bf16* xn;
  float eps;
};

template <class TO, GemvMode M>
Status launch_typed(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                    int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched,
                    const NormIn* norm = nullptr) {
  constexpr int R = gemv_rows_per_item(M);
  Q4tLayout l = q4t_layout(R, K, kMaxSmem);
  if (l.stages < 2 || l.total > kMaxSmem) return not_here(kQ4Env, "K too large for the shared memory");
  if (!tma_ready(q4tma_kernel<TO, M>) || sm_count() == 0) return not_here(kQ4Env, "no sm_90 code for this GPU");
  const int n_tiles = ceil_div(items, 16);
  int per_sm = 2;
  // More tiles than two blocks an SM but not than three: three smaller blocks an SM, one tile each, instead of a
  // second tile for some blocks (the last ones' tail). PIXTRAL_CUDA_Q4TMA_3=0: always two (A/B).
  const char* e3 = std::getenv("PIXTRAL_CUDA_Q4TMA_3");
  if (!(e3 && e3[0] == '0') && n_tiles > 2 * sm_count() && n_tiles <= 3 * sm_count()) {
    const Q4tLayout l3 = q4t_layout(R, K, kSmem3);
    if (l3.stages >= 2 && blocks_fit(q4tma_kernel<TO, M>, l3.total, 3)) {
      l = l3;
      per_sm = 3;
    }
  }
  std::int64_t rows = N;  // the weight's rows (the maps' extent: rows past it read as zeros)
  if (M == GemvMode::silu) rows = 2 * std::int64_t(N);
  if (M == GemvMode::rope) rows = std::int64_t(ra.nh + 2 * ra.nkv) * ra.hd;
  CUtensorMap mw{}, mw2{}, ms{}, ms2{};
  if (!encode(&mw, {q, 0, rows, K}) || !encode(&ms, {scales, 2, rows, K}) ||
      (M == GemvMode::rope && (!encode(&mw2, {q, 1, rows, K}) || !encode(&ms2, {scales, 3, rows, K}))))
    return not_here(kQ4Env, "no tensor-map encoder, or the driver refused a map");
  Q4tArgs a;
  a.N = N;
  a.n_items = items;
  a.K = K;
  a.n_tiles = n_tiles;
  a.stages = l.stages;
  a.ring = l.ring;
  a.scales = l.scales;
  a.xs = l.xs;
  a.red = l.red;
  a.stage_bytes = l.stage_bytes;
  a.scale_bytes = l.scale_bytes;
  if (norm) {
    a.nh = norm->h;
    a.nw = norm->w;
    a.nxn = norm->xn;
    a.eps = norm->eps;
  }
  const int grid = std::min(a.n_tiles, per_sm * sm_count());
  launch_dependent_smem(q4tma_kernel<TO, M>, dim3(unsigned(grid)), dim3(kThreads), std::size_t(l.total), s, out, x,
                        bias, a, ra, mw, mw2, ms, ms2);
  PIXTRAL_CUDA_LAUNCH_CHECK(q4tma_kernel);
  *launched = true;
  return {};
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
  const char* eq = std::getenv(kQ8Env);  // 3 or 4: that many blocks an SM (A/B)
  const int want = eq && eq[0] >= '3' && eq[0] <= '4' ? eq[0] - '0' : 2;
  if (want > 2) {
    int total_w = 0;
    const int stages_w = q8t_stages(R, K, 228 * 1024 / want - 2048, &total_w);
    if (stages_w >= 2 && blocks_fit(q8tma_kernel<TO, M>, total_w, want)) {
      stages = stages_w;
      total = total_w;
      per_sm = want;
    }
  }
  std::int64_t rows = N;
  if (M == GemvMode::silu) rows = 2 * std::int64_t(N);
  if (M == GemvMode::rope) rows = std::int64_t(ra.nh + 2 * ra.nkv) * ra.hd;
  CUtensorMap mw{}, mw2{};
  if (!encode(&mw, {q, 4, rows, K}) || (M == GemvMode::rope && !encode(&mw2, {q, 5, rows, K})))
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

template <class TO, bool Q8>
Status launch_mode(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                   int items, int K, GemvMode mode, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  const auto go = [&](auto m) {
    constexpr GemvMode M = decltype(m)::value;
    if constexpr (Q8)
      return launch_q8_typed<TO, M>(out, x, q, scales, bias, N, items, K, ra, s, launched);
    else
      return launch_typed<TO, M>(out, x, q, scales, bias, N, items, K, ra, s, launched);
  };
  switch (mode) {
    case GemvMode::plain: return go(std::integral_constant<GemvMode, GemvMode::plain>{});
    case GemvMode::silu: return go(std::integral_constant<GemvMode, GemvMode::silu>{});
    case GemvMode::residual: return go(std::integral_constant<GemvMode, GemvMode::residual>{});
    default: return go(std::integral_constant<GemvMode, GemvMode::rope>{});
  }
}

}  // namespace

Status launch_q4tma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched) {
  *launched = false;
  if (T != 1 || tma_switch(kQ4Env) == TmaSwitch::off) return {};
  const int n_groups = K / quant::kInt4Group;
  // Where it runs: K's groups split evenly over the 8 warps (q4mma's ranges) and one scale box wide (≤ 256 groups);
  // 16-byte aligned bases (TMA); rope with halves pairs only when a tile stays inside a head.
  if (K % quant::kInt4Group != 0 || n_groups % kWarps != 0 || n_groups > 256)
    return not_here(kQ4Env, "K / 128 must be a multiple of 8 and at most 256");
  if (items < 1 || reinterpret_cast<std::uintptr_t>(q) % 16 != 0 || reinterpret_cast<std::uintptr_t>(scales) % 16 != 0)
    return not_here(kQ4Env, "no items, or W / scales not 16-byte aligned");
  if (mode == GemvMode::rope && (ra.hd % 2 != 0 || (ra.halves && (ra.hd / 2) % 16 != 0)))
    return not_here(kQ4Env, "rope with halves pairs needs head_dim / 2 a multiple of 16");
  if (out_t == DType::f32)
    return launch_mode<float, false>(static_cast<float*>(out), x, q, scales, bias, N, items, K, mode, ra, s, launched);
  if (out_t == DType::bf16)
    return launch_mode<bf16, false>(static_cast<bf16*>(out), x, q, scales, bias, N, items, K, mode, ra, s, launched);
  return not_here(kQ4Env, "output neither f32 nor bf16");
}

Status launch_q4tma_normed(bf16* out, const bf16* h, const bf16* norm_w, bf16* xn, float eps, const std::uint8_t* q,
                           const float* scales, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                           cudaStream_t s, bool* launched) {
  *launched = false;
  if (tma_switch(kQ4Env) == TmaSwitch::off) return {};
  const char* ef = std::getenv("PIXTRAL_CUDA_FOLD_NORM");  // =0: the norm kernel, then the GEMV (A/B)
  if (ef && ef[0] == '0') return {};
  // (PIXTRAL_CUDA_FOLD_NORM=require: the caller makes "not launched" an error.)
  const int n_groups = K / quant::kInt4Group;
  // Where it runs: launch_q4tma's conditions, and the norm's: one block of row_norm_kernel covers the row (K / 8 ≤
  // 1024 pieces of 8), 16-byte aligned h, w and xn.
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  if (K % quant::kInt4Group != 0 || n_groups % kWarps != 0 || n_groups > 256 || K / 8 > 1024 || items < 1 ||
      !aligned(q) || !aligned(scales) || !aligned(h) || !aligned(norm_w) || !aligned(xn))
    return not_here(kQ4Env, "the folded norm: K / 128 a multiple of 8, K ≤ 8192, 16-byte aligned buffers");
  if (mode == GemvMode::rope && (ra.hd % 2 != 0 || (ra.halves && (ra.hd / 2) % 16 != 0)))
    return not_here(kQ4Env, "rope with halves pairs needs head_dim / 2 a multiple of 16");
  const NormIn norm{h, norm_w, xn, eps};
  const auto go = [&](auto m) {
    return launch_typed<bf16, decltype(m)::value>(out, nullptr, q, scales, nullptr, N, items, K, ra, s, launched,
                                                   &norm);
  };
  switch (mode) {
    case GemvMode::silu: return go(std::integral_constant<GemvMode, GemvMode::silu>{});
    case GemvMode::rope: return go(std::integral_constant<GemvMode, GemvMode::rope>{});
    default: return not_here(kQ4Env, "the folded norm is for the rope and silu modes");
  }
}

Status launch_q8tma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched) {
  *launched = false;
  if (T != 1 || tma_switch(kQ8Env) == TmaSwitch::off) return {};
  // Where it runs: rows of at least one stage (1 KB) and whole 16-byte chunks; 16-byte aligned W (TMA); rope with
  // halves pairs only when a tile of 8 stays inside a head.
  if (K % 16 != 0 || K < kQ8RowStage) return not_here(kQ8Env, "K must be a multiple of 16 and at least 1024");
  if (items < 1 || reinterpret_cast<std::uintptr_t>(q) % 16 != 0)
    return not_here(kQ8Env, "no items, or W not 16-byte aligned");
  if (mode == GemvMode::rope && (ra.hd % 2 != 0 || (ra.halves && (ra.hd / 2) % kQ8Items != 0)))
    return not_here(kQ8Env, "rope with halves pairs needs head_dim / 2 a multiple of 8");
  if (out_t == DType::f32)
    return launch_mode<float, true>(static_cast<float*>(out), x, q, scales, bias, N, items, K, mode, ra, s, launched);
  if (out_t == DType::bf16)
    return launch_mode<bf16, true>(static_cast<bf16*>(out), x, q, scales, bias, N, items, K, mode, ra, s, launched);
  return not_here(kQ8Env, "output neither f32 nor bf16");
}

}  // namespace pixtral::cuda
