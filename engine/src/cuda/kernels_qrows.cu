// SPDX-License-Identifier: Apache-2.0
// Short prefills with int8 or int4 weights (issue 6): a follow-up turn's few rows of x (kQRowsMin(f)..kQRowsMaxRows)
// times a quantized W on the tensor cores, each weight read from memory once and dequantized in registers once for
// all the rows. Called by CudaBackend::matmul_quantized; the decode GEMVs (T ≤ 4, int4 passes ≤ 8) and the
// dequantize-tile + cuBLAS prefill (more rows) are elsewhere (kernels_quant.cu, kernels_q4mma.cu).
//
// Why a kernel of its own: the passes of ≤ 8 rows through q4mma read every int4 weight once a pass, and int8's
// dequantize-then-cuBLAS writes and reads a bf16 copy of W (4× / 2.5× the weight bytes): a 34-row follow-up took
// int4 25.6 ms and int8 22.2 against bf16's 10.7 on an H200 (PERF_NOTES v36 6.). A first one-launch form that kept
// q4mma's layout (16 W rows a block, its warps splitting K; PERF_NOTES v37) reached 20.0: every block read all T rows
// of x for its 16 W rows, ~8× the weight bytes from L2 at T = 34.
//
// Block = 8 warps = 128 W rows (warp w: rows 16w .. 16w + 15 of the block's), × one K slice of whole groups of 128
// (grid.y slices; one where the W rows alone give enough blocks). A stage = one group of 128 k: the block's W bytes
// (1 KB a warp for int4, 2 KB for int8; int4 also the rows' scales) and x's 8·nt rows (nt = ⌈T / 8⌉ MMA column
// tiles; rows past T zero-filled) with their int4 group corrections, copied into a ring of kStages stages in shared
// memory; x's copy is shared by the 8 warps, so L2 serves x's bytes once for 128 W rows (~1× the int4 weight bytes
// at T = 34) instead of once for 16. The copies: on sm_90+ x and W as two tensor-map boxes a stage on its mbarrier,
// issued by one thread (the scales and corrections by cp.async); elsewhere every thread's cp.async pieces, whose
// address arithmetic and issue were most of the kernel's instructions (ncu on an H200: int8 2.0× faster by the TMA,
// PERF_NOTES v38). Both forms put the same values into the same MMAs: the same bits.
// MMA m16n8k16, A = 16 W rows × 16 k (bf16, dequantized), B = 16 k × 8 x rows, fp32 accumulate. A thread (g, t) holds
// rows g and g + 8 at k = 128G + 32t + 8w + i (w = 0..3, i = 0..7), as q4mma does (its comment: the k order inside
// an MMA is free as long as A and B agree), so x's stage is stored as each lane's B values: 16 bytes x[row 8c + g]
// [128G + 32t + 8w .. + 7] at [c][w][lane] (lane = 4g + t; a warp's read of (c, w) is 512 contiguous bytes).
//   int4: x permuted into the MMA's pairs (x0, x4), (x1, x5), (x2, x6), (x3, x7) as the nibble pairs come
//         (q4_b_fragments), once, by launch_q4_corrections beside the corrections (the caller passes that copy: each
//         warp permuting every chunk it reads cost 4 PRMTs a chunk and tile, PERF_NOTES v38); A = 136 + v
//         (int4_pair_biased) and the group's −136 · Σ x per x row (corr, computed once a row and group by
//         q4mma_corrections) taken off before the group's scale: q4_group_mma_b, q4mma's arithmetic.
//   int8: A = v exactly (every int8 is a bf16): the byte b ^ 0x80 placed under a float exponent (2^23 + b ^ 0x80, one
//         PRMT), less 2^23 + 128 (one FADD), two adjacent bytes packed into bf16x2 (one F2FP), so x's 16 bytes are
//         the B registers as they lie (H200, layer 0's GEMMs at T = 34: PERF_NOTES v38); the MMAs accumulate the
//         products over the slice's k straight into the accumulators, the row's scale applied once at the end.
// A stage's A fragments are made once and used for all nt column tiles: the int4 / int8 conversion's cost is one a
// weight, not one a weight and tile.
// The result: with one slice, each (W row, x row) is stored by its thread (plain: + bias; residual: h + the product
// rounded to h's dtype first: gemv_modes.cuh's store, so matmul_add keeps the bits of matmul + add).
// With several, each slice's block writes its fp32 partials to a workspace and qrows_reduce adds them in slice order
// and stores: the same bits on a rerun. The slice count and each block's group order depend on N, K, the block, the
// GPU and the blocks an SM holds at T's shared memory (two, or one: int8 from 49 rows on an H100 / H200), so x row
// t's values are the same in every launch of the same W whose T gives the same blocks an SM (among the T this kernel
// takes on that GPU: see smem_allowance).
// ref: PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type", "cp.async", "prmt".
#include <algorithm>
#include <utility>

#include "cuda/env_switch.h"
#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"
#include "cuda/q4_math.cuh"
#include "cuda/qtma_common.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarpsA = 8;                 // warps a block
constexpr int kBlockRows = 16 * kWarpsA;   // W rows a block
constexpr int kStages = 4;                 // groups of 128 k in the ring

/// A stage's bytes, in order: x (nt × 2 KB: cp.async [nt][4][32] × 16 bytes; TMA [8 nt rows][2][64] bf16, 128-byte
/// swizzled), W (8 / 16 KB: cp.async [warp][piece][32] × 16 bytes, int4 rows g, g + 8, int8 rows g, g, g + 8, g + 8
/// (k 32t .. + 15, + 16 .. + 31); TMA rows of 64 / 128 bytes, int4 the same bytes in the same places, int8 128-byte
/// swizzled), int4's corrections ([8 nt] floats), int4's scales ([warp][2][32] floats). x and W at multiples of 1 KB
/// (the swizzle's period); with the TMA each stage a multiple of 1 KB.
struct StageLayout {
  int w, corr, s, total;  // byte offsets (x at 0), the stage's size
};
__host__ __device__ constexpr StageLayout stage_layout(bool int4, int nt, bool tma) {
  const int x = nt * 4 * 32 * 16;
  const int w = kWarpsA * 32 * (int4 ? 2 : 4) * 16;
  const int corr = int4 ? nt * 8 * 4 : 0;
  const int s = int4 ? kWarpsA * 2 * 32 * 4 : 0;
  const int total = x + w + corr + s;
  return {x, x + w, x + w + corr, tma ? (total + 1023) / 1024 * 1024 : total};
}
constexpr int kTmaBarBytes = 64;  // the TMA form's stage barriers, after the stages

/// (b0, b1) = bytes i and i + 1 of a word of int8 values as bf16x2 (b0 in the low half), exactly.
__device__ __forceinline__ std::uint32_t int8_pair(std::uint32_t biased, int i) {
  // biased = the word ^ 0x80808080: byte b ^ 0x80 = v + 128. Under exponent 0x4B: 2^23 + v + 128.
  const float a = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7440u + unsigned(i))) - 8388736.f;
  const float b = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7441u + unsigned(i))) - 8388736.f;
  const __nv_bfloat162 p = __floats2bfloat162_rn(a, b);  // .x = a: the low half
  return *reinterpret_cast<const std::uint32_t*>(&p);
}

/// Stores out[col, row] from its fp32 sum v as the GEMVs' plain / residual modes do (gemv_modes.cuh: + bias; residual:
/// h + the product rounded to h's dtype first, so that matmul_add keeps the bits of matmul + add).
template <bool kResidual, class TO>
__device__ __forceinline__ void store_value(TO* out, int col, int row, int N, float v, const bf16* bias) {
  constexpr GemvMode M = kResidual ? GemvMode::residual : GemvMode::plain;
  GemvItemPre<TO> pre;
  gemv_item_pre_late<M>(pre, out, col, row, N);
  const float sums[2] = {v, 0.f};
  gemv_item_store<M>(out, col, row, N, sums, bias, RopeAppendArgs{}, pre);
}

template <bool kInt4, int NT, class TO, bool kResidual, bool kTma>
__global__ void __launch_bounds__(kWarpsA * 32, 2)
qrows_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const std::uint8_t* __restrict__ q,
             const float* __restrict__ scales, const bf16* __restrict__ bias, const float* __restrict__ x_corr, int T,
             int N, int K, int slice_groups, float* __restrict__ partials, const __grid_constant__ CUtensorMap mx,
             const __grid_constant__ CUtensorMap mw) {
  // mx / mw (kTma): x as [T][K / 64][64] bf16 in boxes [8 nt][2][64], W as [N][K / 2 | K] bytes in boxes of 128 rows
  // × 64 | 128 bytes; rows past T / N read as zeros.
  extern __shared__ __align__(1024) unsigned char qrows_smem[];
  allow_dependents_to_launch();
  constexpr StageLayout L = stage_layout(kInt4, NT, kTma);
  constexpr std::uint32_t kTmaBytes = std::uint32_t(L.corr);  // a stage's x and W boxes: the bytes before corr
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n_groups = K / quant::kInt4Group;
  const int KS = int(gridDim.y), ks = int(blockIdx.y);
  const int G0 = ks * slice_groups, my = min(n_groups, G0 + slice_groups) - G0;  // my ≥ 1 (the launch's slices)
  const int wrow = int(blockIdx.x) * kBlockRows + 16 * warp;  // the warp's first W row
  // The blocks of a slice start at different groups (block b at group b mod my, then wrapping): x's group is read
  // from L2 by every block, and all of them asking for the same lines at once is what bounded the first form.
  const int rot = int(blockIdx.x) % my;
  const auto group = [&](int i) { return G0 + (i + rot < my ? i + rot : i + rot - my); };
  // Rows past N read the last row (never stored).
  const int r0 = min(wrow + g, N - 1), r1 = min(wrow + g + 8, N - 1);
  const std::size_t rb = kInt4 ? std::size_t(K) / 2 : std::size_t(K);
  const std::uint8_t* q0 = q + std::size_t(r0) * rb;
  const std::uint8_t* q1 = q + std::size_t(r1) * rb;
  constexpr int kPieces = kInt4 ? 2 : 4;
  const auto stage = [&](int sl) { return qrows_smem + sl * L.total; };
  // kTma: stage sl's barrier (its x and W boxes; the stages start at the 1 KB-aligned shared window's start).
  const std::uint32_t bar0 = smem_addr(qrows_smem + kStages * L.total);
  if constexpr (kTma) {
    if (threadIdx.x == 0) {
      if (smem_addr(qrows_smem) % 1024 != 0) __trap();  // the swizzle's period: never seen, but the reads assume it
      for (int i = 0; i < kStages; ++i) mbar_init(bar0 + 8 * i, 1);
      mbar_init_fence();
    }
    __syncthreads();
  }
  const auto issue_w = [&](int G, int sl) {
    if constexpr (kTma) {
      if (threadIdx.x == 0) {
        mbar_expect_tx(bar0 + 8 * sl, kTmaBytes);  // x's box comes in issue_x
        tma_load_2d(smem_addr(stage(sl) + L.w), &mw, bar0 + 8 * sl, (kInt4 ? 64 : 128) * G,
                    int(blockIdx.x) * kBlockRows);
      }
    } else {
      uint4* w = reinterpret_cast<uint4*>(stage(sl) + L.w) + warp * kPieces * 32 + lane;
      if constexpr (kInt4) {
        cp_async16(smem_addr(w), q0 + 64 * std::size_t(G) + 16 * t, true);
        cp_async16(smem_addr(w + 32), q1 + 64 * std::size_t(G) + 16 * t, true);
      } else {
#pragma unroll
        for (int p = 0; p < 4; ++p)
          cp_async16(smem_addr(w + 32 * p), (p < 2 ? q0 : q1) + 128 * std::size_t(G) + 32 * t + 16 * (p & 1), true);
      }
    }
    if constexpr (kInt4) {
      float* s = reinterpret_cast<float*>(stage(sl) + L.s) + warp * 64 + lane;
      cp_async4(smem_addr(s), scales + std::size_t(r0) * n_groups + G);
      cp_async4(smem_addr(s + 32), scales + std::size_t(r1) * n_groups + G);
    }
  };
  const auto issue_x = [&](int G, int sl) {
    if constexpr (kTma) {
      if (threadIdx.x == 0) tma_load_3d(smem_addr(stage(sl)), &mx, bar0 + 8 * sl, 0, 2 * G, 0);
    } else {
      uint4* xs = reinterpret_cast<uint4*>(stage(sl));
#pragma unroll
      for (int i = 0; i < (128 * NT + kWarpsA * 32 - 1) / (kWarpsA * 32); ++i) {
        const int idx = int(threadIdx.x) + i * kWarpsA * 32;
        if (idx >= 128 * NT) break;
        const int j = idx >> 4, k8 = idx & 15;  // x row j, 16-byte chunk k8 = 4t' + w' of the group
        const int c = j >> 3, gg = j & 7, tt = k8 >> 2, ww = k8 & 3;
        const bool ok = j < T;
        cp_async16(smem_addr(xs + (c * 4 + ww) * 32 + 4 * gg + tt),
                   x + std::size_t(ok ? j : 0) * K + 128 * std::size_t(G) + 8 * k8, ok);
      }
    }
    if constexpr (kInt4) {
      // Rows past T keep what the slot held: their D columns are never stored.
      if (int(threadIdx.x) < T)
        cp_async4(smem_addr(reinterpret_cast<float*>(stage(sl) + L.corr) + threadIdx.x),
                  x_corr + std::size_t(threadIdx.x) * n_groups + G);
    }
  };
  // Where this lane's 16 bytes of x (tile c, chunk ww) lie in a stage: cp.async's [c][ww][lane]; the TMA's rows of
  // 2 × 128 bytes, 128-byte unit u = 2 (8c + g) + t / 2, its 16-byte chunks XORed with u mod 8 (= (2g + t / 2) mod 8).
  const int xu = 2 * g + (t >> 1), xhi = 4 * (t & 1);
  const auto x_at = [&](const unsigned char* st, int c, int ww) -> uint4 {
    if constexpr (kTma)
      return *reinterpret_cast<const uint4*>(st + c * 2048 + xu * 128 + (((xhi + ww) ^ (xu & 7)) << 4));
    else
      return reinterpret_cast<const uint4*>(st)[(c * 4 + ww) * 32 + lane];
  };
  // W and the scales are immutable: the first stages' copies go out before the wait; x and its corrections (and
  // the workspace, out) belong to the previous kernels. Stage s's commit group holds its x, and the
  // first one also every early W copy, so waiting for group s covers stage s either way.
  for (int s = 0; s < kStages - 1; ++s)
    if (s < my) issue_w(group(s), s);
  wait_for_previous_grid();
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < my) issue_x(group(s), s);
    cp_async_commit();
  }
  float acc[NT][4];
#pragma unroll
  for (int c = 0; c < NT; ++c)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[c][e] = 0.f;

  for (int i = 0; i < my; ++i) {
    cp_async_wait<kStages - 2>();  // this thread's copies of stage i have landed
    __syncthreads();               // everyone's have, and everyone is done with stage i - 1's slot
    const int j = i + kStages - 1;  // refill stage i - 1's slot
    if (j < my) {
      issue_w(group(j), j % kStages);
      issue_x(group(j), j % kStages);
    }
    cp_async_commit();
    if constexpr (kTma) mbar_wait(bar0 + 8 * (i % kStages), unsigned(i / kStages) & 1u);  // its boxes have landed
    const unsigned char* st = stage(i % kStages);
    // Chunk (w) outer, tile (c) inner: the NT tiles' MMAs of a k-step are independent, so they pipeline; a tile's
    // chain runs through the 8 k-steps of the group.
    if constexpr (kInt4) {
      // Rows g and g + 8: the same bytes in both forms (the TMA's 64-byte rows put row g's 16t at [warp][0][lane]).
      const uint4* ws = reinterpret_cast<const uint4*>(st + L.w) + warp * kPieces * 32 + lane;
      const uint4 w0 = ws[0], w1 = ws[32];
      float d[NT][4];
#pragma unroll
      for (int c = 0; c < NT; ++c)
#pragma unroll
        for (int e = 0; e < 4; ++e) d[c][e] = 0.f;
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) {
        const std::uint32_t u0 = (&w0.x)[ww], u1 = (&w1.x)[ww];
        const std::uint32_t a00 = int4_pair_biased(u0, 0), a01 = int4_pair_biased(u1, 0);
        const std::uint32_t a02 = int4_pair_biased(u0, 1), a03 = int4_pair_biased(u1, 1);
        const std::uint32_t a10 = int4_pair_biased(u0, 2), a11 = int4_pair_biased(u1, 2);
        const std::uint32_t a12 = int4_pair_biased(u0, 3), a13 = int4_pair_biased(u1, 3);
#pragma unroll
        for (int c = 0; c < NT; ++c) {
          const uint4 bv = x_at(st, c, ww);  // x as the B registers (launch_q4_corrections's xb)
          mma_bf16_16816(d[c], a00, a01, a02, a03, bv.x, bv.y, d[c]);
          mma_bf16_16816(d[c], a10, a11, a12, a13, bv.z, bv.w, d[c]);
        }
      }
      const float* sp = reinterpret_cast<const float*>(st + L.s) + warp * 64 + lane;
      const float s0 = sp[0], s1 = sp[32];
      const float* cp = reinterpret_cast<const float*>(st + L.corr);
#pragma unroll
      for (int c = 0; c < NT; ++c) {
        const float c0 = cp[8 * c + 2 * t], c1 = cp[8 * c + 2 * t + 1];
        acc[c][0] = fmaf(s0, d[c][0] + c0, acc[c][0]);  // row g,     x row 8c + 2t
        acc[c][1] = fmaf(s0, d[c][1] + c1, acc[c][1]);  // row g,     x row 8c + 2t + 1
        acc[c][2] = fmaf(s1, d[c][2] + c0, acc[c][2]);  // row g + 8
        acc[c][3] = fmaf(s1, d[c][3] + c1, acc[c][3]);
      }
    } else {
      // Row g's 32 bytes are words 0..7 of pieces 0, 1; row g + 8's of pieces 2, 3. Chunk w = words 2w, 2w + 1. MMA m
      // of a chunk takes word 2w + m: its bytes in order, pairs (0, 1) and (2, 3), against x's values in order, so x's
      // 16 bytes are the two MMAs' B registers as they lie (no q4_b_fragments, which int4's nibble pairs need).
      // The TMA's rows: row r's 16-byte chunk h at (h ^ r mod 8) (r mod 8 = g for both of the lane's rows).
      uint4 p0, p1, p2, p3;
      if constexpr (kTma) {
        const unsigned char* wr = st + L.w + (16 * warp + g) * 128;
        const int h0 = ((2 * t) ^ g) << 4, h1 = ((2 * t + 1) ^ g) << 4;
        p0 = *reinterpret_cast<const uint4*>(wr + h0);
        p1 = *reinterpret_cast<const uint4*>(wr + h1);
        p2 = *reinterpret_cast<const uint4*>(wr + 1024 + h0);
        p3 = *reinterpret_cast<const uint4*>(wr + 1024 + h1);
      } else {
        const uint4* ws = reinterpret_cast<const uint4*>(st + L.w) + warp * kPieces * 32 + lane;
        p0 = ws[0];
        p1 = ws[32];
        p2 = ws[64];
        p3 = ws[96];
      }
      const std::uint32_t rg[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
      const std::uint32_t rh[8] = {p2.x, p2.y, p2.z, p2.w, p3.x, p3.y, p3.z, p3.w};
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) {
        std::uint32_t a[2][4];  // [MMA][A register]
#pragma unroll
        for (int m = 0; m < 2; ++m) {
          const std::uint32_t gw = rg[2 * ww + m] ^ 0x80808080u, hw = rh[2 * ww + m] ^ 0x80808080u;
          a[m][0] = int8_pair(gw, 0);  // row g,     k 4m, 4m + 1 of the chunk
          a[m][1] = int8_pair(hw, 0);  // row g + 8
          a[m][2] = int8_pair(gw, 2);  // row g,     k 4m + 2, 4m + 3
          a[m][3] = int8_pair(hw, 2);  // row g + 8
        }
#pragma unroll
        for (int c = 0; c < NT; ++c) {
          const uint4 bv = x_at(st, c, ww);
          mma_bf16_16816(acc[c], a[0][0], a[0][1], a[0][2], a[0][3], bv.x, bv.y, acc[c]);
          mma_bf16_16816(acc[c], a[1][0], a[1][1], a[1][2], a[1][3], bv.z, bv.w, acc[c]);
        }
      }
    }
  }
  cp_async_wait<0>();  // nothing of this block's copies outlives it

  // acc[c][e]: W row wrow + g + 8 (e >> 1), x row 8c + 2t + (e & 1).
  if constexpr (!kInt4) {
    const float s0 = __ldg(scales + r0), s1 = __ldg(scales + r1);
#pragma unroll
    for (int c = 0; c < NT; ++c)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[c][e] *= e < 2 ? s0 : s1;
  }
  if (KS == 1) {
#pragma unroll
    for (int c = 0; c < NT; ++c)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = wrow + g + 8 * (e >> 1), col = 8 * c + 2 * t + (e & 1);
        if (row < N && col < T) store_value<kResidual>(out, col, row, N, acc[c][e], bias);
      }
    return;
  }
  float* mine = partials + std::size_t(ks) * T * N;  // [slice][x row][W row], added by qrows_reduce
#pragma unroll
  for (int c = 0; c < NT; ++c)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = wrow + g + 8 * (e >> 1), col = 8 * c + 2 * t + (e & 1);
      if (row < N && col < T) mine[std::size_t(col) * N + row] = acc[c][e];
    }
}

/// The K slices' partial sums added in slice order (the same bits whichever block finished first) and stored as
/// qrows_kernel stores one slice's: a thread an output value, all of a value's loads in flight at once. (A first form
/// had the last slice block to arrive add them: its threads' serial L2 round trips cost more than this launch.)
template <class TO, bool kResidual>
__global__ void __launch_bounds__(256) qrows_reduce(TO* __restrict__ out, const float* __restrict__ partials,
                                                    const bf16* __restrict__ bias, int T, int N, int KS) {
  allow_dependents_to_launch();
  wait_for_previous_grid();
  const std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x, n = std::int64_t(T) * N;
  if (idx >= n) return;
  constexpr int kBatch = 8;
  float v = 0.f;
  for (int k0 = 0; k0 < KS; k0 += kBatch) {
    float p[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) p[k] = k0 + k < KS ? __ldcg(partials + std::int64_t(k0 + k) * n + idx) : 0.f;
#pragma unroll
    for (int k = 0; k < kBatch; ++k)
      if (k0 + k < KS) v += p[k];
  }
  store_value<kResidual>(out, int(idx / N), int(idx % N), N, v, bias);
}

/// Whether this GPU's launches take the TMA form (sm_90+; PIXTRAL_CUDA_QROWS_TMA=0: the cp.async form, A/B).
bool qrows_tma() { return !env_zero("PIXTRAL_CUDA_QROWS_TMA") && device_has_tma(); }

/// The kernel's dynamic shared memory for T rows.
std::size_t qrows_smem_bytes(bool int4, int T, bool tma) {
  return std::size_t(kStages) * std::size_t(stage_layout(int4, ceil_div(T, 8), tma).total) +
         (tma ? std::size_t(kTmaBarBytes) : 0);
}

/// The current device's shared memory: a block's opt-in most and an SM's ({0, 0} where they cannot be read).
std::pair<int, int> device_smem() {
  int dev = 0, block = 0, sm = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&block, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return {0, 0};
  }
  return {block, sm};
}

/// Blocks of T rows an SM holds: two (the launch bound), or one where its shared memory has no room for a second
/// (int8 at 49+ rows: 120 / 128 KB a block, an H100's or H200's SM 228 KB).
int blocks_per_sm(bool int4, int T) {
  const int sm = device_smem().second;
  return sm > 0 && 2 * (qrows_smem_bytes(int4, T, qrows_tma()) + 1024) > std::size_t(sm) ? 1 : 2;  // + the driver's
}                                                                                                    // 1 KB a block

/// Groups a K slice takes: as many slices as fit the column blocks into one wave (@p per_sm blocks an SM), each of
/// at least 4 groups; one where the column blocks alone fill it. (Rounding the slice count up instead left every
/// shape a partial second wave — w1 at 1.27 waves, ncu on an H200 — PERF_NOTES v37.) Read at every launch (A/B):
/// PIXTRAL_CUDA_QROWS_SLICES=k forces k slices, PIXTRAL_CUDA_QROWS_SLOTS=m counts m blocks an SM (1..8).
int slice_groups(int N, int K, int per_sm) {
  const int n_groups = K / quant::kInt4Group, col_blocks = ceil_div(N, kBlockRows);
  const long m = std::clamp(env_long("PIXTRAL_CUDA_QROWS_SLOTS", per_sm), 1L, 8L);
  const int slots = int(m) * std::max(1, qtma::sm_count());
  long ks = env_long("PIXTRAL_CUDA_QROWS_SLICES", 0);
  if (ks <= 0) ks = std::max(1, slots / col_blocks);
  ks = std::clamp<long>(ks, 1, std::max(1, n_groups / 4));
  return ceil_div(n_groups, int(ks));
}

/// Once per kernel and device: the shared-memory opt-in at what its launches need, or the GPU's most where that is
/// less (then it is not launched: sm_86 / 89 give a block 99 KB; four stages take int8 72 + 8 KB a tile of 8 rows,
/// over 99 from 33 rows, and int4 48..105 KB, over from 57 rows). The bytes a launch may use; 0 where even the opt-in
/// failed.
template <class Kernel>
std::size_t smem_allowance(Kernel kernel, std::size_t most) {
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                                                    dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  const std::size_t allow = std::min(most, std::size_t(optin));
  const bool ok = per_device_once(reinterpret_cast<const void*>(kernel), long(allow), [&] {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(allow)) == cudaSuccess)
      return true;
    (void)cudaGetLastError();
    return false;
  });
  return ok ? allow : 0;
}

template <bool kInt4, int NT, class TO, bool kResidual>
Status launch_tiles(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias,
                    const float* corr, int T, int N, int K, void* ws, cudaStream_t s, bool* launched) {
  const int sg = slice_groups(N, K, blocks_per_sm(kInt4, T)), n_groups = K / quant::kInt4Group;
  const int slices = ceil_div(n_groups, sg);
  auto* partials = static_cast<float*>(ws);
  const dim3 grid(unsigned(ceil_div(N, kBlockRows)), unsigned(slices));
  CUtensorMap mx{}, mw{};
  bool tma = qrows_tma() && sm90_image(qrows_kernel<kInt4, NT, TO, kResidual, true>);
  if (tma) {  // x: [T][K / 64][64] bf16, boxes [8 NT][2][64]; W: [N][K / 2 | K] bytes, boxes of 128 rows
    qtma::MapSpec xs = qtma::make_map(x, CU_TENSOR_MAP_DATA_TYPE_UINT16,
                                      {64, cuuint64_t(K / 64), cuuint64_t(T)}, {128, cuuint64_t(K) * 2},
                                      {64, 2, cuuint32_t(8 * NT)});
    xs.swizzle = CU_TENSOR_MAP_SWIZZLE_128B;
    const cuuint64_t rb = kInt4 ? cuuint64_t(K / 2) : cuuint64_t(K);
    qtma::MapSpec wsp = qtma::make_map(q, CU_TENSOR_MAP_DATA_TYPE_UINT8, {rb, cuuint64_t(N)}, {rb},
                                       {kInt4 ? 64u : 128u, cuuint32_t(kBlockRows)});
    if (!kInt4) wsp.swizzle = CU_TENSOR_MAP_SWIZZLE_128B;
    tma = qtma::encode_map(&mx, xs) && qtma::encode_map(&mw, wsp);
  }
  if (!tma && env_is("PIXTRAL_CUDA_QROWS_TMA", "require"))
    return Status(ErrorCode::unsupported, "short prefill (PIXTRAL_CUDA_QROWS_TMA=require): no TMA form here");
  const auto run = [&](auto kernel, std::size_t smem) -> bool {
    if (smem > smem_allowance(kernel, smem)) return false;
    launch_dependent_smem(kernel, grid, dim3(kWarpsA * 32), smem, s, out, x, q, scales, bias, corr, T, N, K, sg,
                          partials, mx, mw);
    return true;
  };
  if (tma ? !run(qrows_kernel<kInt4, NT, TO, kResidual, true>, qrows_smem_bytes(kInt4, T, true))
          : !run(qrows_kernel<kInt4, NT, TO, kResidual, false>, qrows_smem_bytes(kInt4, T, false)))
    return {};
  PIXTRAL_CUDA_LAUNCH_CHECK(qrows_kernel);
  if (slices > 1) {
    launch_dependent(qrows_reduce<TO, kResidual>, dim3(unsigned(ceil_div(T * N, 256))), dim3(256), s, out,
                     static_cast<const float*>(partials), bias, T, N, slices);
    PIXTRAL_CUDA_LAUNCH_CHECK(qrows_reduce);
  }
  *launched = true;
  return {};
}

template <bool kInt4, class TO, bool kResidual>
Status launch_typed(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias,
                    const float* corr, int T, int N, int K, void* ws, cudaStream_t s, bool* launched) {
#define PIXTRAL_QROWS_CASE(nt) \
  case nt: return launch_tiles<kInt4, nt, TO, kResidual>(out, x, q, scales, bias, corr, T, N, K, ws, s, launched);
  switch (ceil_div(T, 8)) {
    PIXTRAL_QROWS_CASE(2)
    PIXTRAL_QROWS_CASE(3)
    PIXTRAL_QROWS_CASE(4)
    PIXTRAL_QROWS_CASE(5)
    PIXTRAL_QROWS_CASE(6)
    PIXTRAL_QROWS_CASE(7)
    PIXTRAL_QROWS_CASE(8)
    default:
      if constexpr (!kInt4) {  // int8 at 5..8 rows; int4 starts at 9 (kQRowsMin)
        if (T <= 8)
          return launch_tiles<kInt4, 1, TO, kResidual>(out, x, q, scales, bias, corr, T, N, K, ws, s, launched);
      }
      return {};
  }
#undef PIXTRAL_QROWS_CASE
}

template <bool kInt4>
Status launch_format(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                     const bf16* bias, const float* corr, int T, int N, int K, bool residual, void* ws,
                     cudaStream_t s, bool* launched) {
  if (out_t == DType::f32) {
    auto* o = static_cast<float*>(out);
    return residual ? launch_typed<kInt4, float, true>(o, x, q, scales, bias, corr, T, N, K, ws, s, launched)
                    : launch_typed<kInt4, float, false>(o, x, q, scales, bias, corr, T, N, K, ws, s, launched);
  }
  auto* o = static_cast<bf16*>(out);
  return residual ? launch_typed<kInt4, bf16, true>(o, x, q, scales, bias, corr, T, N, K, ws, s, launched)
                  : launch_typed<kInt4, bf16, false>(o, x, q, scales, bias, corr, T, N, K, ws, s, launched);
}

}  // namespace

bool qrows_supported(std::int64_t T, std::int64_t N, std::int64_t K, const void* x, DType x_t, DType out_t,
                     quant::Format f) {
  if (env_zero("PIXTRAL_CUDA_QROWS")) return false;
  if (f != quant::Format::int8_channel && f != quant::Format::int4_g128) return false;
  if (T < kQRowsMin(f) || T > kQRowsMaxRows || N < 1 || K < quant::kInt4Group || K % quant::kInt4Group) return false;
  if (N * K >= (std::int64_t(1) << 40) || T * N >= (std::int64_t(1) << 31) || K >= (std::int64_t(1) << 31))
    return false;
  if (x_t != DType::bf16 || (out_t != DType::bf16 && out_t != DType::f32)) return false;
  if (reinterpret_cast<std::uintptr_t>(x) % 16 != 0) return false;
  // Where a block cannot have the shared memory (sm_86 / 89: 99 KB, int8 from 33 rows, int4 from 57), not before the
  // caller has prepared the corrections and the workspace for nothing.
  const int block = device_smem().first;
  return block <= 0 || qrows_smem_bytes(f == quant::Format::int4_g128, int(T), qrows_tma()) <= std::size_t(block);
}

std::size_t qrows_workspace_bytes(std::int64_t T, std::int64_t N, std::int64_t K, quant::Format f) {
  const int n_groups = int(K / quant::kInt4Group);
  const int slices = ceil_div(n_groups, slice_groups(int(N), int(K), blocks_per_sm(f == quant::Format::int4_g128,
                                                                                     int(T))));
  return std::size_t(slices) * std::size_t(T) * std::size_t(N) * 4;
}

Status launch_qrows(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    quant::Format f, const bf16* bias, const float* corr, std::int64_t T, std::int64_t N,
                    std::int64_t K, bool residual, void* ws, std::size_t ws_bytes, cudaStream_t s, bool* launched) {
  *launched = false;
  if (qrows_workspace_bytes(T, N, K, f) > ws_bytes)
    return Status(ErrorCode::internal, "launch_qrows: the workspace is smaller than this launch's slices need");
  if (!qrows_supported(T, N, K, x, DType::bf16, out_t, f))
    return Status(ErrorCode::internal, "launch_qrows: unsupported shape/alignment (caller must check)");
  if (reinterpret_cast<std::uintptr_t>(q) % 16 != 0 || (f == quant::Format::int4_g128 && !corr) || !ws)
    return Status(ErrorCode::internal, "launch_qrows: unaligned weights, or no corrections / workspace");
  if (f == quant::Format::int4_g128)
    return launch_format<true>(out, out_t, x, q, scales, bias, corr, int(T), int(N), int(K), residual, ws, s,
                               launched);
  return launch_format<false>(out, out_t, x, q, scales, bias, corr, int(T), int(N), int(K), residual, ws, s,
                              launched);
}

}  // namespace pixtral::cuda
