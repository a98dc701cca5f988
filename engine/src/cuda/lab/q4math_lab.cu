// SPDX-License-Identifier: Apache-2.0
// q4math lab (not a test; PERF_NOTES v30): how fast can an SM's q4tma consumers multiply int4 weights that are
// already in shared memory? No DRAM, no TMA: each block fills a ring of stages once (random bytes), then every
// consumer warp runs q4tma's stage body (q4_math.cuh's functions, the engine's code) over it again and again. The
// rate it prints, in GB/s of weights an SM (events around the whole kernel), is what the consumers can do at best;
// the H200's DRAM share is ~4.3 TB/s / 132 SMs ≈ 33 GB/s an SM. How the rate grows with the warps an SM says whether
// the stage body is bound by its latency (grows with warps) or by a pipe's throughput (flat). The bytes a cycle a
// block (clock64) are printed too, but are no measure: one block's warps finish before another's.
//
// Variants (V):
//   full   q4tma before PERF_NOTES v30 2.: x group read in natural order, its correction and B fragments made
//   prex   q4tma's kPreX later tiles: x read as B registers, the correction read
//   ring   prex plus the ring's handshakes a stage (wait on a completed mbarrier, __syncwarp, arrive)
//   mma    the MMAs alone on raw words (no LOP3 / shifts / PRMT)
//   deq    the dequantization alone (LOP3 and shifts, folded by a 3-input LOP3 a pair of registers; no MMA)
//   deq5   prex with 5 ALU instructions a word (2 masks of the word, 2 of it shifted by 8: wrong values, the count
//          an fp16 operand path would have)
//   bord   q4tma since PERF_NOTES v30 2.: x staged as B registers (q4_b_fragments' order), read as they are; the
//          correction's natural-order values from its chunk by 2 PRMTs (q4_corr_input_b: the same bits)
//   bordhi bord with the dequantization's shifts as multiply-highs (mul.hi.u32 by 2^(32-4s): the FMA pipe's IMAD
//          instead of the integer pipe's SHF, if ptxas keeps them)
//   nox    prex with x's B registers read once before the loop (no x reads a stage; wrong values): what x's shared
//          memory reads cost (each lane reads 64 bytes of x a stage, 2 KB a warp, for 1 KB of weights)
//   xa     x as the MMAs' A operand, the weights as B: D row 0 = x · W^T for 8 weight rows an MMA, so only lanes
//          0..3 (A row 0) read x (256 bytes a warp and stage) and the other lanes' A rows are never read; twice the
//          MMAs; four chains of four (each row's k-steps in q4_group_mma_b's order); the correction read (kPreX)
//   xab    xa with the correction made from its chunk (bord's)
//   xa2    xa with two chains of eight (fewer registers, another order)
//   mmaxa  xa's MMAs alone on raw words
//   imma   integer MMAs (PERF_NOTES v32; q4_imma.cuh, the engine's since v33): x as 3 unsigned byte digit planes of
//          a fixed-point X (B columns 0..2, column 3 ones: v34; staged as if made once upstream, with each group's
//          bias and exponent), the weights as unsigned bytes (v + 8: even nibbles by one LOP3 a word, odd ones times
//          16 by another), m16n8k32 u8 × u8 → s32: 4 MMAs a group and row set (an even chain, an odd one),
//          16·even + odd, planes summed in int32 / fp32 less the bias, times scale · 2^-e (a lane's plane weight
//          folded in)
//   mmaint imma's MMAs alone on raw words
//   immax  imma with x's digits made from x (bf16) by the block every 5 stages a warp (two __syncthreads around
//          it): what a one-tile block (wo, w2, QKV: its stages and its x both grow with K) would pay to make them
//          after its wait; immaxl every 17 ([w1; w3]: ~3.4 tiles of 5 stages a block)
// R: row sets a stage (1: wo, w2; 2: QKV, [w1; w3]). The stage loop is not unrolled (#pragma unroll 1): unrolled by
// the ring's two slots, the compiler hoisted loop-invariant weight loads and LOP3s of the mma and deq5 variants out
// of the loop (the first run's mma and deq5 rows with one row set are inflated by it; PERF_NOTES v30 1.).
// Usage: pixtral_q4math_lab [stages_per_warp=4000] [variant,variant,... (default: all)]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cuda/q4_imma.cuh"
#include "cuda/q4_math.cuh"
#include "cuda/tma.cuh"
#include "lab_common.h"

using namespace pixtral;
using namespace pixtral::cuda;

namespace {

enum Var {
  kFull, kPrex, kRing, kMma, kDeq, kDeq5, kBord, kBordHi, kNoX, kXa, kXaB, kXa2, kMmaXa, kImma, kMmaInt, kImmaX, kImmaXL, kNumVars
};
const char* const kVarName[] = {"full", "prex", "ring", "mma", "deq", "deq5", "bord", "bordhi", "nox", "xa", "xab",
                                "xa2", "mmaxa", "imma", "mmaint", "immax",
                                "immaxl"};

constexpr int kK = 5120, kGroups = kK / 128, kStages = 2;

__device__ __forceinline__ unsigned hash32(unsigned h) {
  h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
  return h;
}

// 5 ALU instructions for a word's 8 nibbles (wrong values; deq5's count).
__device__ __forceinline__ void pairs5(std::uint32_t u, std::uint32_t p[4]) {
  const std::uint32_t h = u >> 8;
  asm("lop3.b32 %0, %1, 0x000f000f, 0x43084308, 0x6a;" : "=r"(p[0]) : "r"(u));
  asm("lop3.b32 %0, %1, 0x00f000f0, 0x43084308, 0x6a;" : "=r"(p[1]) : "r"(u));
  asm("lop3.b32 %0, %1, 0x000f000f, 0x43084308, 0x6a;" : "=r"(p[2]) : "r"(h));
  asm("lop3.b32 %0, %1, 0x00f000f0, 0x43084308, 0x6a;" : "=r"(p[3]) : "r"(h));
}

// Nibbles s and s + 4 of u as int4_pair_biased, the shift as a multiply-high.
__device__ __forceinline__ std::uint32_t pair_hi(std::uint32_t u, int s) {
  std::uint32_t v = u, r;
  if (s > 0) asm("mul.hi.u32 %0, %1, %2;" : "=r"(v) : "r"(u), "r"(1u << (32 - 4 * s)));
  asm("lop3.b32 %0, %1, 0x000f000f, 0x43084308, 0x6a;" : "=r"(r) : "r"(v));
  return r;
}

// x's digits for the imma variants (q4_imma.cuh's layout, imma_x_bytes: the digits, a float2 a group, the ones):
// each 8-value chunk by one thread of a half-warp (imma_digits). n_groups · 16 a multiple of 32.
__device__ __forceinline__ void stage_digits(const bf16* xs, unsigned char* xd, int n_groups, int tid, int nthr) {
  float2* gf = reinterpret_cast<float2*>(xd + n_groups * kImmaDigitBytes);
  imma_write_ones(xd, n_groups, tid);
  for (int ci = tid; ci < n_groups * 16; ci += nthr) {
    const uint4 xv[1] = {reinterpret_cast<const uint4*>(xs)[ci]};
    const int grp[1] = {ci >> 4};
    imma_digits<1>(xv, grp, ci & 15, xd, gf);
  }
}

// Shared memory: [barriers 64 B][ring kStages × R × 8 KB][x natural kK bf16][x as B registers kK bf16]
// [scales R × 16 × kGroups f32][corr kGroups f32][imma: x's digits, float2s and ones, imma_x_bytes(kGroups)].
template <int R>
constexpr int smem_bytes() {
  return 64 + kStages * R * 8192 + 2 * kK * 2 + R * 16 * kGroups * 4 + kGroups * 4 + imma_x_bytes(kGroups);
}

template <int V, int R, int WARPS, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) math_kernel(float* out, long long* cycles, int iters) {
  constexpr int kEvery = V == kImmaX ? 5 : V == kImmaXL ? 17 : 0;  // immax: x's digits made every kEvery stages
  // cycles[4 block .. + 3]: clock64 and %globaltimer (ns) at the loop's start and end, and the SM.
  extern __shared__ __align__(1024) unsigned char smem[];
  std::uint64_t* bars = reinterpret_cast<std::uint64_t*>(smem);
  unsigned char* ring = smem + 64;
  bf16* xs = reinterpret_cast<bf16*>(ring + kStages * R * 8192);
  bf16* xb = xs + kK;
  float* sc = reinterpret_cast<float*>(xb + kK);
  float* corr_s = sc + R * 16 * kGroups;
  unsigned char* xd = reinterpret_cast<unsigned char*>(corr_s + kGroups);  // [G][plane 3][t 4][32 B]
  float2* xgf = reinterpret_cast<float2*>(xd + kGroups * kImmaDigitBytes);  // [G]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nthr = WARPS * 32;
  const unsigned seed = blockIdx.x * 7919u;
  // Random weights; x in [-1, 1); scales in [0.001, 0.002).
  for (int i = tid; i < kStages * R * 8192 / 4; i += nthr)
    reinterpret_cast<unsigned*>(ring)[i] = hash32(seed ^ unsigned(i));
  for (int i = tid; i < kK; i += nthr)
    xs[i] = __float2bfloat16_rn(float(hash32(seed + 77u * unsigned(i)) & 0xffff) / 32768.f - 1.f);
  for (int i = tid; i < R * 16 * kGroups; i += nthr)
    sc[i] = 0.001f + float(hash32(seed * 3u + unsigned(i)) & 0xffff) * 1.5e-8f;
  for (int i = tid; i < kGroups * kImmaDigitBytes / 4; i += nthr)
    reinterpret_cast<unsigned*>(xd)[i] = hash32(seed ^ 0x5151u ^ i);
  imma_write_ones(xd, kGroups, tid);
  for (int i = tid; i < kGroups; i += nthr)
    xgf[i] = make_float2(float(int(hash32(seed + 5u * unsigned(i)) & 0xfffff) - 0x80000),
                         1.0f / float(1 << (8 + (i & 7))));
  if (tid == 0) {
    mbar_init(smem_addr(bars), 1);      // "full": completed once below, its phase 0 waited on forever after
    mbar_init(smem_addr(bars + 1), WARPS);  // "empty": arrived on, never waited on
    mbar_init_fence();
  }
  __syncthreads();
  if (tid == 0) mbar_arrive(smem_addr(bars));
  const int g = lane >> 2, t = lane & 3;
  // x as B registers and each group's correction (what kPreX's first tile leaves behind).
  for (int G = warp; G < kGroups; G += WARPS) {
    uint4 xv[4];
    const float cr = q4_x_group(xs, G, t, lane, xv);
    if (g == 0) {
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) reinterpret_cast<uint4*>(xb + 128 * G + 32 * t)[ww] = q4_b_fragments(xv[ww]);
      if (t == 0) corr_s[G] = cr;
    }
  }
  __syncthreads();
  float acc[R][4] = {};
  std::uint32_t xq[4] = {};
  uint4 bv0[4];  // nox: x's B registers of group `warp`, read once
#pragma unroll
  for (int ww = 0; ww < 4; ++ww) bv0[ww] = reinterpret_cast<const uint4*>(xb + 128 * warp + 32 * t)[ww];
  uint4 av[4] = {};  // xa: lanes 0..3 hold x as A row 0; the other lanes' rows are never read
  int s = 0, G = warp % kGroups;
  long long t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  const long long c0 = clock64();
#pragma unroll 1
  for (int it = 0; it < iters; ++it, s = (s + 1) & (kStages - 1), G = G + WARPS >= kGroups ? G + WARPS - kGroups
                                                                                            : G + WARPS) {
    const unsigned char* st = ring + s * R * 8192;
    if constexpr (V == kRing) mbar_wait(smem_addr(bars), 0);
    if constexpr (kEvery > 0) {
      if (it % kEvery == 0) {
        __syncthreads();
        stage_digits(xs, xd, kGroups, tid, nthr);
        __syncthreads();
      }
    }
    uint4 w0[R], w1[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      w0[r] = *reinterpret_cast<const uint4*>(st + r * 8192 + (warp % 8) * 1024 + g * 64 + 16 * t);
      w1[r] = *reinterpret_cast<const uint4*>(st + r * 8192 + (warp % 8) * 1024 + (g + 8) * 64 + 16 * t);
    }
    if constexpr (V == kRing) {
      __syncwarp();
      if (lane == 0) mbar_arrive(smem_addr(bars + 1));
    }
    const float* s0 = sc + g * kGroups + G;
    if constexpr (V == kFull) {
      uint4 xv[4];
      const float cr = q4_x_group(xs, G, t, lane, xv);
      const float corr[2] = {cr, cr};
#pragma unroll
      for (int r = 0; r < R; ++r)
        q4_group_mma(w0[r], w1[r], xv, s0[r * 16 * kGroups], s0[r * 16 * kGroups + 8 * kGroups], corr, acc[r]);
    } else if constexpr (V == kPrex || V == kRing || V == kNoX || V == kBord) {
      uint4 bv[4];
#pragma unroll
      for (int ww = 0; ww < 4; ++ww)
        bv[ww] = V == kNoX ? bv0[ww] : reinterpret_cast<const uint4*>(xb + 128 * G + 32 * t)[ww];
      const float cr = V == kBord ? group_correction(q4_corr_input_b(xb, G, lane)) : corr_s[G];
      const float corr[2] = {cr, cr};
#pragma unroll
      for (int r = 0; r < R; ++r)
        q4_group_mma_b(w0[r], w1[r], bv, s0[r * 16 * kGroups], s0[r * 16 * kGroups + 8 * kGroups], corr, acc[r]);
    } else if constexpr (V == kMma || V == kDeq5 || V == kBordHi) {
      uint4 bv[4];
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) bv[ww] = reinterpret_cast<const uint4*>(xb + 128 * G + 32 * t)[ww];
      const float cr = V == kBordHi ? group_correction(q4_corr_input_b(xb, G, lane)) : corr_s[G];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float d[2][4] = {};
#pragma unroll
        for (int ww = 0; ww < 4; ++ww) {
          const std::uint32_t u0 = (&w0[r].x)[ww], u1 = (&w1[r].x)[ww];
          std::uint32_t a[4], b[4];
          if constexpr (V == kMma) {
            a[0] = u0; a[1] = u1; a[2] = u0 ^ u1; a[3] = u1 + u0;  // raw words (the +/^ keep them distinct)
            b[0] = a[2]; b[1] = a[3]; b[2] = a[0]; b[3] = a[1];
          } else if constexpr (V == kBordHi) {
            a[0] = pair_hi(u0, 0); a[1] = pair_hi(u1, 0); a[2] = pair_hi(u0, 1); a[3] = pair_hi(u1, 1);
            b[0] = pair_hi(u0, 2); b[1] = pair_hi(u1, 2); b[2] = pair_hi(u0, 3); b[3] = pair_hi(u1, 3);
          } else {
            std::uint32_t p0[4], p1[4];
            pairs5(u0, p0);
            pairs5(u1, p1);
            a[0] = p0[0]; a[1] = p1[0]; a[2] = p0[1]; a[3] = p1[1];
            b[0] = p0[2]; b[1] = p1[2]; b[2] = p0[3]; b[3] = p1[3];
          }
          float* dc = d[ww % 2];
          mma_bf16_16816(dc, a[0], a[1], a[2], a[3], bv[ww].x, bv[ww].y, dc);
          mma_bf16_16816(dc, b[0], b[1], b[2], b[3], bv[ww].z, bv[ww].w, dc);
        }
        const float sa = s0[r * 16 * kGroups], sb = s0[r * 16 * kGroups + 8 * kGroups];
        acc[r][0] = fmaf(sa, d[0][0] + d[1][0] + cr, acc[r][0]);
        acc[r][1] = fmaf(sa, d[0][1] + d[1][1] + cr, acc[r][1]);
        acc[r][2] = fmaf(sb, d[0][2] + d[1][2] + cr, acc[r][2]);
        acc[r][3] = fmaf(sb, d[0][3] + d[1][3] + cr, acc[r][3]);
      }
    } else if constexpr (V == kXa || V == kXaB || V == kXa2 || V == kMmaXa) {
      if (g == 0) {
#pragma unroll
        for (int ww = 0; ww < 4; ++ww) av[ww] = reinterpret_cast<const uint4*>(xb + 128 * G + 32 * t)[ww];
      }
      const float cr = V == kXaB ? group_correction(q4_corr_input_b(xb, G, lane)) : corr_s[G];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float d[4][4] = {};  // chains: rows 0..7 (w0) words 0, 2 / 1, 3; rows 8..15 (w1) the same
#pragma unroll
        for (int ww = 0; ww < 4; ++ww) {
          const std::uint32_t u0 = (&w0[r].x)[ww], u1 = (&w1[r].x)[ww];
          std::uint32_t b[8];
          if constexpr (V == kMmaXa) {
            b[0] = u0; b[1] = u1; b[2] = u0 ^ u1; b[3] = u1 + u0; b[4] = u0 - u1; b[5] = u1 - u0; b[6] = u0 | u1;
            b[7] = u0 & u1;
          } else {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              b[q] = int4_pair_biased(u0, q);
              b[4 + q] = int4_pair_biased(u1, q);
            }
          }
          float* da = d[V == kXa2 ? 0 : ww % 2];
          float* db = d[V == kXa2 ? 2 : 2 + ww % 2];
          mma_bf16_16816(da, av[ww].x, av[ww].x, av[ww].y, av[ww].y, b[0], b[1], da);
          mma_bf16_16816(da, av[ww].z, av[ww].z, av[ww].w, av[ww].w, b[2], b[3], da);
          mma_bf16_16816(db, av[ww].x, av[ww].x, av[ww].y, av[ww].y, b[4], b[5], db);
          mma_bf16_16816(db, av[ww].z, av[ww].z, av[ww].w, av[ww].w, b[6], b[7], db);
        }
        // Lane t of row 0: weight rows 2t, 2t + 1 (chains 0, 1) and 8 + 2t, 9 + 2t (chains 2, 3).
        const float* sr = s0 - g * kGroups + r * 16 * kGroups;
        acc[r][0] = fmaf(sr[(2 * t) * kGroups], d[0][0] + d[1][0] + cr, acc[r][0]);
        acc[r][1] = fmaf(sr[(2 * t + 1) * kGroups], d[0][1] + d[1][1] + cr, acc[r][1]);
        acc[r][2] = fmaf(sr[(2 * t + 8) * kGroups], d[2][0] + d[3][0] + cr, acc[r][2]);
        acc[r][3] = fmaf(sr[(2 * t + 9) * kGroups], d[2][1] + d[3][1] + cr, acc[r][3]);
      }
    } else if constexpr (V == kImma || V == kMmaInt || V == kImmaX || V == kImmaXL) {
      // Lane (g, t): plane g % 4's digits of k in [32t, 32t + 32) of group G (B column g; plane 3 is the ones).
      const ImmaX xi = imma_x(imma_lane(xd, kGroups, g, t), G, xgf, t, t == 0 ? 1.f : t == 1 ? 65536.f : 0.f);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float sa = s0[r * 16 * kGroups], sb = s0[r * 16 * kGroups + 8 * kGroups];
        if constexpr (V != kMmaInt) {
          imma_group(w0[r], w1[r], xi, t, sa, sb, acc[r]);
        } else {  // the MMAs on raw words
          constexpr int z[4] = {0, 0, 0, 0};
          int de[4], dd[4];
          const uint4 u0 = w0[r], u1 = w1[r];
          mma_u8u8(de, u0.x, u1.x, u0.y, u1.y, xi.b01.x, xi.b01.y, z);
          mma_u8u8(de, u0.z, u1.z, u0.w, u1.w, xi.b01.z, xi.b01.w, de);
          mma_u8u8(dd, u0.x ^ u1.x, u1.y, u0.y ^ u1.w, u1.x, xi.b23.x, xi.b23.y, z);
          mma_u8u8(dd, u0.z ^ u1.z, u1.w, u0.w ^ u1.y, u1.z, xi.b23.z, xi.b23.w, dd);
          acc[r][0] = fmaf(sa * xi.xf, float(16 * de[0] + dd[0]) + xi.bias, acc[r][0]);
          acc[r][2] = fmaf(sb * xi.xf, float(16 * de[2] + dd[2]) + xi.bias, acc[r][2]);
        }
      }
    } else {  // kDeq
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int ww = 0; ww < 4; ++ww) {
          const std::uint32_t u0 = (&w0[r].x)[ww], u1 = (&w1[r].x)[ww];
#pragma unroll
          for (int q = 0; q < 4; ++q)
            asm("lop3.b32 %0, %1, %2, %3, 0x96;"
                : "=r"(xq[q])
                : "r"(xq[q]), "r"(int4_pair_biased(u0, q)), "r"(int4_pair_biased(u1, q)));
        }
      acc[0][0] += s0[0];
    }
  }
  const long long c1 = clock64();
  long long t1;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
  float v = 0.f;
#pragma unroll
  for (int r = 0; r < R; ++r) v += acc[r][0] + acc[r][1] + acc[r][2] + acc[r][3];
  out[blockIdx.x * nthr + tid] = v + float((xq[0] ^ xq[1] ^ xq[2] ^ xq[3]) & 1u);
  if (tid == 0) {
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    cycles[4 * blockIdx.x] = c1 - c0;
    cycles[4 * blockIdx.x + 1] = t0;
    cycles[4 * blockIdx.x + 2] = t1;
    cycles[4 * blockIdx.x + 3] = sm;
  }
}

struct Result {
  double gbs_sm = 0, b_cycle = 0, ghz = 0, overlap = 0;
  int regs = 0, spill = 0;
};

template <int V, int R, int WARPS, int MINB>
Result run(int blocks_per_sm, int sms, int iters, float* out, long long* cyc, cudaStream_t s) {
  auto* k = math_kernel<V, R, WARPS, MINB>;
  cudaFuncAttributes fa{};
  LAB_CHECK(cudaFuncGetAttributes(&fa, k));
  // Shared memory a block such that at most blocks_per_sm fit an SM (228 KB, 1 KB reserved a block).
  const int need = smem_bytes<R>();
  const int cap = 228 * 1024 / blocks_per_sm - 1024;
  int bytes = cap;
  if (need > cap) return {};
  LAB_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  int fit = 0;
  LAB_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, k, WARPS * 32, std::size_t(bytes)));
  Result res;
  res.regs = fa.numRegs;
  res.spill = int(fa.localSizeBytes);
  if (fit < blocks_per_sm) return res;
  const int grid = blocks_per_sm * sms;
  const float ms =
      median_ms(s, 5, [&] { math_kernel<V, R, WARPS, MINB><<<grid, WARPS * 32, bytes, s>>>(out, cyc, iters); });
  LAB_CHECK(cudaGetLastError());
  std::vector<long long> c(static_cast<std::size_t>(4 * grid));
  LAB_CHECK(cudaMemcpy(c.data(), cyc, sizeof(long long) * std::size_t(4 * grid), cudaMemcpyDeviceToHost));
  // The last (timed) run's blocks: mean cycles, mean clock (cycles / ns), and how many of them ran at once (the sum
  // of their loop times over the span from the first start to the last end, per SM).
  double mean_c = 0, sum_ns = 0;
  long long first = c[1], last = c[2];
  for (int b = 0; b < grid; ++b) {
    mean_c += double(c[4 * b]);
    sum_ns += double(c[4 * b + 2] - c[4 * b + 1]);
    first = std::min(first, c[4 * b + 1]);
    last = std::max(last, c[4 * b + 2]);
  }
  mean_c /= double(grid);
  res.ghz = mean_c / (sum_ns / double(grid));
  res.overlap = sum_ns / double(last - first) / double(sms);
  const double bytes_sm = double(blocks_per_sm) * WARPS * double(iters) * R * 1024.0;
  res.gbs_sm = bytes_sm / (double(ms) * 1e-3) / 1e9;
  res.b_cycle = bytes_sm / mean_c;
  return res;
}

template <int V, int R>
void row(int sms, int iters, float* out, long long* cyc, cudaStream_t s) {
  struct Cfg { int warps, bps; Result r; };
  Cfg cfg[] = {{8, 1, run<V, R, 8, 1>(1, sms, iters, out, cyc, s)},
               {8, 2, run<V, R, 8, 2>(2, sms, iters, out, cyc, s)},
               {8, 3, run<V, R, 8, 3>(3, sms, iters, out, cyc, s)},
               {8, 4, run<V, R, 8, 4>(4, sms, iters, out, cyc, s)},
               {16, 2, run<V, R, 16, 2>(2, sms, iters, out, cyc, s)}};
  std::printf("%-5s R=%d", kVarName[V], R);
  for (const Cfg& c : cfg) {
    if (c.r.b_cycle > 0)
      std::printf(" | %2dw %5.1f B/c %5.1f GB/s %4.2f GHz %3.1fx %3dr%s", c.warps * c.bps, c.r.b_cycle, c.r.gbs_sm,
                  c.r.ghz, c.r.overlap, c.r.regs, c.r.spill ? "!" : " ");
    else
      std::printf(" | %2dw    -- (regs %d)                     ", c.warps * c.bps, c.r.regs);
  }
  std::printf("\n");
}

const char* g_only = nullptr;  // a comma-separated list of the variants to run (all if null)

template <int V>
void rows(int sms, int iters, float* out, long long* cyc, cudaStream_t s) {
  if (g_only) {
    const std::string list = std::string(",") + g_only + ",";
    if (list.find(std::string(",") + kVarName[V] + ",") == std::string::npos) return;
  }
  row<V, 1>(sms, iters, out, cyc, s);
  row<V, 2>(sms, iters, out, cyc, s);
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 4000;
  if (argc > 2) g_only = argv[2];
  cudaDeviceProp prop{};
  LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  int clock_khz = 0;
  LAB_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  cudaStream_t s;
  LAB_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  float* out = nullptr;
  long long* cyc = nullptr;
  LAB_CHECK(cudaMalloc(&out, sizeof(float) * std::size_t(4) * sms * 512));
  LAB_CHECK(cudaMalloc(&cyc, sizeof(long long) * std::size_t(16) * sms));
  std::printf("%s, %d SMs, max clock %.0f MHz; %d stages a warp; weights' bytes a cycle an SM (clock64), GB/s an SM "
              "(events), clock (cycles / globaltimer), blocks at once / blocks an SM, registers (! = spills); "
              "columns: consumer warps an SM (8 a block, or 16)\n",
              prop.name, sms, clock_khz / 1e3, iters);
  [&]<int... V>(std::integer_sequence<int, V...>) {  // every variant, in Var's order
    (rows<V>(sms, iters, out, cyc, s), ...);
  }(std::make_integer_sequence<int, kNumVars>{});
  LAB_CHECK(cudaFree(out));
  LAB_CHECK(cudaFree(cyc));
  return 0;
}
