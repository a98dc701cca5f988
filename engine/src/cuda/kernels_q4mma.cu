// SPDX-License-Identifier: Apache-2.0
// The int4 × bf16 decode GEMV on the tensor cores (issue 6): launch_q4mma, called by kernels_quant.cu's GEMV
// dispatch for int4 weights with bf16 activations (T ≤ 4, plain / silu / rope / residual modes), and
// launch_q4mma_rows, short prefills as passes of ≤ 8 rows (plain / residual). Formats in core/quant.h.
#include <algorithm>
#include <cstdlib>

#include "cuda/env_switch.h"
#include "cuda/gemv_modes.cuh"
#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"
#include "cuda/q4_math.cuh"

namespace pixtral::cuda {
namespace {

// ---- int4 × bf16 decode GEMV on the tensor cores ---------------------------------------------------------------
// The scalar qgemv_kernel spends ~5-6 instructions a weight (nibble unpack, bf16 → f32 of x, FFMA, partial sums):
// issue-bound at 34-44 % of copy bandwidth. Here one mma.sync.m16n8k16 (bf16 in, f32 accumulate) multiplies a
// 16-row × 16-k tile of dequantized W by x (B columns = x rows, T ≤ 4 of 8 used): ~1 instruction a weight
// (per 8 weights: 3 shifts, 4 LOP3, 1 MMA, plus one bias-correction MMA a group and x row; x's fragments shared
// by the R tiles; with a correction MMA a word: 0.17 warp instructions a byte of W on w2, ncu, against 0.22 with
// a bf16x2 subtraction a pair).
//
// Block = 16 work items (the MMA's M) × all of K; its W warps (kMmaWarps = 8) split the K groups of 128 round robin
// (warp w: groups w, w + W, ...; q4tma's order). Each thread streams its W bytes and scales through a cp.async ring
// in shared memory (kRingGroups of its groups in flight, refilled one group at a time; the first before
// griddepcontrol.wait: W and scales are immutable) — in flight without holding registers. For T = 1 the group's
// x row (256 bytes a warp) travels through the same ring, copied by lanes 0..15 and read by every lane after a
// __syncwarp: a plain load of x when the group's W had landed put one dependent L1/L2 round trip on every group's
// path (H200 int4 decode 3.58 -> 3.26 ms/token).
// Lane = 4g + t. For tile r (R = 1 plain, 2 silu/rope) the A rows g and g + 8 are W rows
// gemv_item_rows(n0 + g)[r] and gemv_item_rows(n0 + g + 8)[r]; thread t of a row reads the 16 bytes 16t..16t+15
// of the row's 64-byte group (one 16-byte load a row a group; the 4 threads of a row read it whole). Its word w
// (bytes 4w..4w+3) holds nibbles i = 0..7 = k = 128G + 32t + 8w + i (low nibble first: core/quant.h).
// The MMA's k order is free as long as A and B agree (each thread's A and B fragments cover the same k' slots
// 2t, 2t+1, 2t+8, 2t+9 of a k-step): word w gives k-steps (w, h), h = 0, 1, with
//   A reg0 = row g   (k + 2h, k + 2h + 4)   [k' 2t, 2t+1]      B b0 = (x[k + 2h],     x[k + 2h + 4])
//   A reg1 = row g+8 (k + 2h, k + 2h + 4)
//   A reg2 = row g   (k + 2h + 1, k + 2h + 5) [k' 2t+8, 2t+9]  B b1 = (x[k + 2h + 1], x[k + 2h + 5])
//   A reg3 = row g+8 (k + 2h + 1, k + 2h + 5)
// (PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type": a0,a1 row g / a2,a3 row g+8 at cols
// 2t, 2t+1; a4..a7 the same at cols +8; b0,b1 rows 2t, 2t+1 / b2,b3 rows 2t+8, 2t+9 of col g; c0,c1 row g /
// c2,c3 row g+8 at cols 2t, 2t+1.) Nibbles (s, s+4) of a word become the bf16x2 of the exact values 136 + v with
// one shift and one LOP3 ((u >> 4s) & 0x000f000f) ^ 0x43084308 = bf16 (128 + (n ^ 8)); the 136 is taken off once a
// group and x row: C = -136 · Σ x over the group's 128 k, the same for every W row, from ONE MMA with a constant A
// whose 8 B columns hold 8 slices of the group's x (lane 4j + t supplies x[4(4j + t) .. +3] to column j; see
// group_correction), then two shuffles across the quad. (Two MMAs with a constant A a word and tile, 8 to 16 a
// group, kept the tensor pipe busy: timing them out made int4 decode 3.29 -> 3.11 ms/token on an H200.)
// Per group: two chains of 4 dependent MMAs (words 0, 2 and 1, 3; in every mode), over the 8 k-steps, then
// acc += scale(row, G) · ((D0 + D1) + C) (fp32; the cancellation of the 136s happens before the scale, at the
// group's magnitude). The W warps' partial sums meet in shared
// memory and are added in warp order: deterministic, and a row's value does not depend on its place in the tile,
// its tile, nor on T (fused silu/rope modes keep the bits of the plain matmul + epilogue).
// ref: Marlin (IST-DASLab/marlin) dequant (LOP3 with 0x43004300 magic, bf16 variant), PTX ISA mma fragments.
constexpr int kMmaItems = 16;  // work items per block: the MMA's M
constexpr int kMmaWarps = 8;  // warps a block, splitting K's groups (measured against 4 and 2: see PERF_NOTES)
// Groups of 128 a thread keeps in flight in the q4mma kernel's shared-memory ring, for one row pair (R = 1; half as
// many for two): 6 groups = 192 bytes of W a thread, 61 KB a block (73 KB with T = 1's x: 3 blocks use 225 of the
// 228 KB), 3 blocks (24 warps) an SM. Measured on an H200
// (int4 page-QA decode): 10 groups at 2 blocks an SM 3.71 ms/token, 6 groups 3.60; W held in registers
// (128 bytes a thread) 4.05; the scalar kernel 4.45.
constexpr int kRingGroups = 6;

// PIXTRAL_CUDA_INT4_MMA=0 sends int4 × bf16 GEMVs to the scalar kernel (A/B); read once.
bool int4_mma_enabled() {
  static const bool on = [] {
    return !env_zero("PIXTRAL_CUDA_INT4_MMA");
  }();
  return on;
}

constexpr int q4mma_ring_groups(int R) { return kRingGroups / R; }
/// x rows a launch takes: T ≤ kQGemvMaxRows in every mode (decode), up to kQ4PassRows in the plain and residual
/// modes (a prefill pass: the MMA's 8 B columns are all x rows; the same MMAs a group as T = 1).
constexpr int kQ4PassRows = 8;
/// The most x rows a launch in mode M takes.
constexpr int q4mma_max_rows(GemvMode m) {
  return m == GemvMode::plain || m == GemvMode::residual ? kQ4PassRows : kQGemvMaxRows;
}
/// D columns a block keeps in shared memory for its final sum: 4 (T ≤ 4, as before passes existed) or 8.
constexpr int q4mma_cols(int T) { return T <= 4 ? 4 : 8; }
/// One x row (T = 1) travels through the ring with W: 256 bytes (a group's 128 bf16) a warp and slot.
constexpr bool q4mma_ring_x(int T) { return T == 1; }
/// Dynamic shared memory of the q4mma kernel: the ring (16 bytes of W and a 4-byte scale per slot, tile, row half,
/// thread; for T = 1 also the group's x row, 256 bytes a warp).
template <int R, int T>
constexpr std::size_t q4mma_smem_bytes() {
  return std::size_t(q4mma_ring_groups(R)) *
         (R * 2 * kMmaWarps * 32 * (16 + 4) + (q4mma_ring_x(T) ? kMmaWarps * 256 : 0));
}

// 16-byte load through L1 (x: read by every block), volatile so that the compiler keeps it in program order with
// load_stream (hoisting the x of later groups ahead costs 16 registers a group).
__device__ __forceinline__ uint4 load_cached(const uint4* p) {
  uint4 r;  // not .nc: under PDL the previous kernel wrote x during this kernel's lifetime (plain loads use L1 too)
  asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

// 8-byte load through L1 (x for T > 1; volatile for the same reason as load_cached).
__device__ __forceinline__ uint2 load_cached8(const uint2* p) {
  uint2 r;
  asm volatile("ld.global.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
  return r;
}

template <int T, class TO, GemvMode M, int W = kMmaWarps>
__global__ void __launch_bounds__(W * 32, 3)  // ≤ 85 registers: 3 blocks (24 warps) an SM in every mode
q4mma_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const std::uint8_t* __restrict__ q,
             const float* __restrict__ scales, const bf16* __restrict__ bias, int N, int n_items, int K,
             RopeAppendArgs ra) {
  constexpr int R = gemv_rows_per_item(M);
  constexpr int S = q4mma_ring_groups(R);  // groups in flight a thread (cp.async ring in shared memory)
  constexpr int kCols = q4mma_cols(T);  // D columns kept: x rows 0..T-1 of the MMA's 8
  __shared__ float red[W][R][kMmaItems][kCols];  // [warp][tile][item][x row]
  // The ring: slot s holds, for each tile r and row half h, this thread's 16 bytes of W (then its scale), laid out
  // [s][r][h][thread] so that a warp's accesses are 512 contiguous bytes (no bank conflict).
  extern __shared__ __align__(16) unsigned char q4_ring[];
  uint4* ring_w = reinterpret_cast<uint4*>(q4_ring);
  float* ring_s = reinterpret_cast<float*>(ring_w + S * R * 2 * W * 32);
  constexpr bool kRingX = q4mma_ring_x(T);
  uint4* ring_x = reinterpret_cast<uint4*>(ring_s + S * R * 2 * W * 32);  // [slot][warp][16 × 16 bytes] (T = 1)
  PIXTRAL_TIMELINE(kTlQ4mma + unsigned(M));
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * kMmaItems;
  const int rb = K / 2;
  const int n_groups = K / quant::kInt4Group;
  // A rows g (h = 0) and g + 8 (h = 1) of each tile; items past the end read the last item's rows, never stored.
  // 32-bit offsets from q (bytes, this thread's 16 of the group's 64) and from scales (launch_typed: every row's
  // bytes lie below 2^32), not 64-bit pointers: registers.
  std::uint32_t woff[R][2], soff[R][2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    int rows[2];
    gemv_item_rows<M>(min(n0 + g + 8 * h, n_items - 1), N, ra, rows);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      woff[r][h] = std::uint32_t(rows[r]) * std::uint32_t(rb) + 16u * std::uint32_t(t);
      soff[r][h] = std::uint32_t(rows[r]) * std::uint32_t(n_groups);
    }
  }
  // Warp w takes the groups w, w + W, w + 2W, ... (q4tma's order: a stage there is the W warps' next groups, one
  // contiguous piece of each row); the block's W warps together stream W consecutive groups of each row.
  const int my_groups = (n_groups - warp + W - 1) / W;  // warp-uniform
  const auto slot_of = [&](int sl, int r, int h) { return ((sl * R + r) * 2 + h) * W * 32 + int(threadIdx.x); };
  // Copies group G's W bytes and scales of this thread's rows into ring slot sl (no registers held in flight).
  const auto issue = [&](int G, int sl) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        cp_async16(smem_addr(ring_w + slot_of(sl, r, h)), q + (woff[r][h] + 64u * std::uint32_t(G)), true);
        cp_async4(smem_addr(ring_s + slot_of(sl, r, h)), scales + (soff[r][h] + std::uint32_t(G)));
      }
  };
  // x of group G into ring slot sl (T = 1): lanes 0..15 copy the row's 256 bytes, 16 each; every lane of the warp
  // reads them after its wait and a __syncwarp. x arrives with W instead of one dependent load a group later.
  const uint4* xg = reinterpret_cast<const uint4*>(x) + (lane & 15);
  const auto issue_x = [&](int G, int sl) {
    if (lane < 16) cp_async16(smem_addr(ring_x + (sl * W + warp) * 16 + lane), xg + 16 * G, true);
  };
#pragma unroll
  for (int j = 0; j < S; ++j) {  // W and scales are immutable: the first S groups before waiting
    if (j < my_groups) issue(warp + W * j, j);
    cp_async_commit();
  }
  // The thread that stores (item, x row) below gets its epilogue inputs (gemv_modes.cuh): the rope mode's now.
  const int item = threadIdx.x / kCols, c = threadIdx.x % kCols;
  const bool stores = threadIdx.x < kMmaItems * kCols && c < T && n0 + item < n_items;
  GemvItemPre<TO> pre;
  if (stores) gemv_item_pre_early<M>(pre, n0 + item, ra);
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  if constexpr (kRingX) {  // the first S groups' x, one more commit group: the first wait below takes them all
#pragma unroll
    for (int j = 0; j < S; ++j)
      if (j < my_groups) issue_x(warp + W * j, j);
    cp_async_commit();
  }
  if (stores) gemv_item_pre_late<M>(pre, out, c, n0 + item, N);  // the residual mode's h, after the wait
  // B column g = x row g (g < T; the other columns multiply x row 0 again and are never read).
  const uint4* xp = reinterpret_cast<const uint4*>(x + std::int64_t(g < T ? g : 0) * K + 32 * t);  // g ≥ T: row 0
  float acc[R][4];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[r][e] = 0.f;
  int sl = 0;
  for (int i = 0; i < my_groups; ++i) {
    {
      const int G = warp + W * i;
      // x[k .. k + 7] of x row g, k = 128G + 32t + 8ww. Lanes with g ≥ T take row 0: their B columns only reach
      // D columns ≥ T, which are never read (no zeroing, no predicate).
      uint4 xv[4];
      if constexpr (kRingX) {
        // i = 0: every copy so far (the x group was committed last); later the oldest of S groups in flight.
        if (i == 0) cp_async_wait<0>(); else cp_async_wait<S - 1>();
        __syncwarp();  // x was copied by lanes 0..15
#pragma unroll
        for (int ww = 0; ww < 4; ++ww) xv[ww] = ring_x[(sl * W + warp) * 16 + 4 * t + ww];
      } else {
        cp_async_wait<S - 1>();  // group i's copies (this thread's own: no barrier needed) have landed
#pragma unroll
        for (int ww = 0; ww < 4; ++ww) xv[ww] = load_cached(xp + 16 * G + ww);
      }
      // C = -136 · Σ x over the group, for the D columns 2t and 2t + 1 this thread holds (x rows; columns ≥ T are
      // never read): one MMA and two shuffles an x row (group_correction).
      float corr[2] = {0.f, 0.f};
      if (!kRingX && ra.x_corr) {  // T > 1 with the corrections computed once (q4mma_corrections: the same bits)
        if (2 * t < T) corr[0] = __ldca(ra.x_corr + (2 * t) * n_groups + G);
        if (2 * t + 1 < T) corr[1] = __ldca(ra.x_corr + (2 * t + 1) * n_groups + G);
      } else {
        const uint2* xc = kRingX ? reinterpret_cast<const uint2*>(ring_x + (sl * W + warp) * 16)
                                 : reinterpret_cast<const uint2*>(x + 128 * std::int64_t(G));
#pragma unroll
        for (int row = 0; row < T; ++row) {
          const uint2 xs = kRingX ? xc[lane] : load_cached8(xc + std::int64_t(row) * (K / 4) + lane);
          const float cr = group_correction(xs);
          if (row == 2 * t) corr[0] = cr;
          if (row == 2 * t + 1) corr[1] = cr;
        }
      }
      // The same arithmetic in every mode (a row's bits must not depend on the mode: fused silu/rope = plain).
#pragma unroll
      for (int r = 0; r < R; ++r)  // rows g, g + 8 of tile r (q4_group_mma: the same code in q4tma)
        q4_group_mma(ring_w[slot_of(sl, r, 0)], ring_w[slot_of(sl, r, 1)], xv, ring_s[slot_of(sl, r, 0)],
                     ring_s[slot_of(sl, r, 1)], corr, acc[r]);
      // Refill the slot only now: the FMAs above consumed w and s (data dependence), so the shared loads are done
      // before the cp.async that overwrites them is issued (PTX does not order an ld.shared before a later cp.async
      // to the same address by the same thread).
      if (i + S < my_groups) {
        if constexpr (kRingX) __syncwarp();  // every lane has read slot sl's x before lanes 0..15 overwrite it
        issue(G + W * S, sl);  // S - 1 groups in flight during the math, S after
        if constexpr (kRingX) issue_x(G + W * S, sl);
      }
      cp_async_commit();
      sl = sl + 1 == S ? 0 : sl + 1;
    }
  }
  if (2 * t < kCols) {  // columns 2t, 2t + 1 = x rows
#pragma unroll
    for (int r = 0; r < R; ++r) {
      red[warp][r][g][2 * t] = acc[r][0];
      red[warp][r][g][2 * t + 1] = acc[r][1];
      red[warp][r][g + 8][2 * t] = acc[r][2];
      red[warp][r][g + 8][2 * t + 1] = acc[r][3];
    }
  }
  __syncthreads();
  if (stores) {
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float sum = red[0][r][item][c];
#pragma unroll
      for (int ww = 1; ww < W; ++ww) sum += red[ww][r][item][c];
      v[r] = sum;
    }
    gemv_item_store<M>(out, c, n0 + item, N, v, bias, ra, pre);
  }
}

// -136 · Σx over each group of 128 of each of T x rows (the prefill passes' corrections, [T][K / 128]): one warp a
// (row, group), group_correction on the same 8 bytes a lane as the kernel's own path — the same bits. Non-null xb:
// also x with each 16-byte chunk as q4_b_fragments makes it (the MMAs' B registers; kernels_qrows.cu reads them).
__global__ void q4mma_corrections(const bf16* __restrict__ x, int T, int K, float* __restrict__ corr,
                                  bf16* __restrict__ xb) {
  allow_dependents_to_launch();
  wait_for_previous_grid();  // x comes from the previous kernels
  const int n_groups = K / quant::kInt4Group;
  const int wid = int(blockIdx.x) * (blockDim.x / 32) + int(threadIdx.x / 32), lane = threadIdx.x & 31;
  if (wid >= T * n_groups) return;  // warp-uniform
  const int row = wid / n_groups, G = wid % n_groups;
  const uint2 xs = load_cached8(reinterpret_cast<const uint2*>(x + std::int64_t(row) * K + 128 * std::int64_t(G)) +
                                lane);
  const float cr = group_correction(xs);
  if (lane == 0) corr[wid] = cr;
  if (xb) {  // warp-uniform; the even lane of a chunk's two stores it
    const unsigned hi_x = __shfl_down_sync(0xffffffffu, xs.x, 1), hi_y = __shfl_down_sync(0xffffffffu, xs.y, 1);
    if ((lane & 1) == 0)
      reinterpret_cast<uint4*>(xb + std::int64_t(row) * K + 128 * std::int64_t(G))[lane >> 1] =
          q4_b_fragments(make_uint4(xs.x, xs.y, hi_x, hi_y));
  }
}

// Once per kernel and device (first, eager launch; not a stream operation): the shared-memory opt-in, and whether 2
// or more blocks fit an SM — on GPUs with 100 KB of shared memory an SM (sm_86/89) one 8-warp block would be
// latency-bound: the scalar kernel runs there.
template <int T, class TO, GemvMode M>
bool q4mma_fits() {
  constexpr std::size_t smem = q4mma_smem_bytes<gemv_rows_per_item(M), T>();
  auto kernel = q4mma_kernel<T, TO, M>;
  return per_device_once(reinterpret_cast<const void*>(kernel), long(smem), [&] {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    int blocks = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kMmaWarps * 32, smem) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return blocks >= 2;
  });
}

template <int T, class TO, GemvMode M>
Status launch_typed(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                    int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  *launched = false;
  // The kernel addresses W and the scales with 32-bit offsets: rows ≤ 2N (silu) of K / 2 bytes must stay below
  // 2^32 (N·K < 2^31 leaves room); larger weights go to the scalar kernel.
  if (std::int64_t(N) * K >= (std::int64_t(1) << 31) || !q4mma_fits<T, TO, M>()) return {};
  constexpr std::size_t smem = q4mma_smem_bytes<gemv_rows_per_item(M), T>();
  const dim3 grid{unsigned(ceil_div(items, kMmaItems))};
  launch_dependent_smem(q4mma_kernel<T, TO, M>, grid, dim3{kMmaWarps * 32}, smem, s, out, x, q, scales, bias, N, items,
                        K, ra);
  PIXTRAL_CUDA_LAUNCH_CHECK(q4mma_kernel);
  *launched = true;
  return {};
}

// launch_typed<T> for the runtime T among Tc..Tmax (not launched when T is none of them).
template <int Tmax, class TO, GemvMode M, int Tc = 1>
Status launch_rows_upto(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int T,
                        int N, int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  if (T == Tc) return launch_typed<Tc, TO, M>(out, x, q, scales, bias, N, items, K, ra, s, launched);
  if constexpr (Tc < Tmax) {
    return launch_rows_upto<Tmax, TO, M, Tc + 1>(out, x, q, scales, bias, T, N, items, K, ra, s, launched);
  } else {
    *launched = false;
    return {};
  }
}

// T ≤ 4 in every mode (decode); up to 8 in the plain and residual modes (prefill passes, launch_q4mma_rows).
template <class TO, GemvMode M>
Status launch_rows(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int T,
                   int N, int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  return launch_rows_upto<q4mma_max_rows(M), TO, M>(out, x, q, scales, bias, T, N, items, K, ra, s, launched);
}

template <class TO>
Status launch_mode(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int T,
                   int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  switch (mode) {
    case GemvMode::plain:
      return launch_rows<TO, GemvMode::plain>(out, x, q, scales, bias, T, N, items, K, ra, s, launched);
    case GemvMode::silu:
      return launch_rows<TO, GemvMode::silu>(out, x, q, scales, bias, T, N, items, K, ra, s, launched);
    case GemvMode::residual:
      return launch_rows<TO, GemvMode::residual>(out, x, q, scales, bias, T, N, items, K, ra, s, launched);
    default:  // rope: one x row
      return launch_typed<1, TO, GemvMode::rope>(out, x, q, scales, bias, N, items, K, ra, s, launched);
  }
}

}  // namespace

Status launch_q4mma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched) {
  *launched = false;
  if (!int4_mma_enabled() || T < 1 || T > q4mma_max_rows(mode)) return {};
  if (out_t == DType::f32)
    return launch_mode(static_cast<float*>(out), x, q, scales, bias, T, N, items, K, mode, ra, s, launched);
  if (out_t == DType::bf16)
    return launch_mode(static_cast<bf16*>(out), x, q, scales, bias, T, N, items, K, mode, ra, s, launched);
  return {};
}

Status launch_q4_corrections(const bf16* x, std::int64_t T, int K, float* corr, cudaStream_t s, bf16* xb) {
  constexpr int kWarps = 8;
  const int n_groups = K / quant::kInt4Group;
  launch_dependent(q4mma_corrections, dim3(unsigned(ceil_div(int(T) * n_groups, kWarps))), dim3(kWarps * 32), s, x,
                   int(T), K, corr, xb);
  PIXTRAL_CUDA_LAUNCH_CHECK(q4mma_corrections);
  return {};
}

Status launch_q4mma_rows(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                         const bf16* bias, std::int64_t T, int N, int K, bool residual, float* corr, cudaStream_t s,
                         bool* launched) {
  *launched = false;
  if (T < 1 || T > kQ4PassMaxRows || !int4_mma_enabled()) return {};
  const GemvMode mode = residual ? GemvMode::residual : GemvMode::plain;
  const std::size_t osz = out_t == DType::f32 ? 4 : 2;
  const int n_groups = K / quant::kInt4Group;
  if (corr) PIXTRAL_RETURN_IF_ERROR(launch_q4_corrections(x, T, K, corr, s));
  for (std::int64_t t0 = 0; t0 < T; t0 += kQ4PassRows) {
    const int rows = int(std::min<std::int64_t>(kQ4PassRows, T - t0));
    RopeAppendArgs ra;
    if (corr && rows > 1) ra.x_corr = corr + t0 * n_groups;
    bool ok = false;
    PIXTRAL_RETURN_IF_ERROR(launch_q4mma(static_cast<char*>(out) + std::size_t(t0) * std::size_t(N) * osz, out_t,
                                         x + t0 * K, q, scales, bias, rows, N, N, K, mode, ra, s, &ok));
    if (!ok) {
      if (t0 == 0) return {};  // no pass launched (the corrections' kernel is harmless): the caller's other path
      return Status(ErrorCode::internal, "launch_q4mma_rows: a later pass could not run");
    }
  }
  *launched = true;
  return {};
}

}  // namespace pixtral::cuda
