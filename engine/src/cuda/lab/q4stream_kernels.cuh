// SPDX-License-Identifier: Apache-2.0
// The q4stream lab's kernels (lab/q4stream_lab.cu; PERF_NOTES v17): q4s, the persistent warp-specialized int4
// GEMV fed by cp.async.bulk copies (row pieces, or one contiguous copy a stage, timing only), and q4t, the same fed
// by 2-D / 3-D tensor maps (the engine's kernels_q4tma.cu grew from it). The tensor-core arithmetic is q4mma's
// (q4_math.cuh). Included once, by the lab's main file.
#pragma once

#include <cuda.h>  // CUtensorMap (types only; the encoder comes through the runtime)

#include <cstdint>

#include "cuda/kernels.cuh"
#include "cuda/q4_math.cuh"
#include "cuda/tma.cuh"

namespace pixtral::cuda::q4stream_lab {

constexpr int kCW = 8;                    // consumer warps
constexpr int kThreads = (kCW + 1) * 32;  // + one producer warp
// A stage's geometry for GPW groups a consumer warp multiplies per stage (16 groups of 128 = 1 KB of a row at 2).
template <int GPW>
struct Geo {
  static constexpr int kStageGroups = kCW * GPW;
  static constexpr int kRowStride = kStageGroups * 64 + 64;  // padded: rows g and g + 1 lie 16 banks apart
  static constexpr int kStageW = 16 * kRowStride;
  static constexpr int kStageS = 16 * kStageGroups * 4;
  static constexpr int kStageBytes = kStageW + kStageS;
};

inline std::size_t q4s_smem(int stages, int gpw, int K) {
  const int stage = gpw == 2 ? Geo<2>::kStageBytes : Geo<4>::kStageBytes;
  return 1024 + std::size_t(stages) * stage + std::size_t(K) * 2 + std::size_t(K / 128) * 4 + 2 * kCW * 16 * 4;
}

__device__ __forceinline__ void bulk_copy(std::uint32_t dst, const void* src, std::uint32_t bytes, std::uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
__device__ __forceinline__ std::uint32_t lop_lo(std::uint32_t u) {
  std::uint32_t r;
  asm("lop3.b32 %0, %1, 0x000f000f, 0x43084308, 0x6a;" : "=r"(r) : "r"(u));
  return r;
}
__device__ __forceinline__ std::uint32_t lop_hi(std::uint32_t u) {
  std::uint32_t r;
  asm("lop3.b32 %0, %1, 0x00f000f0, 0x43804380, 0x6a;" : "=r"(r) : "r"(u));
  return r;
}

// The consumers' x, staged once, each 8-value chunk permuted to (x0, x4, x1, x5, x2, x6, x3, x7): one 16-byte read is
// then the four B registers of a word's two k-steps (q4mma builds them with byte_perms every group and tile); and
// each group's correction, from x as stored (q4mma's lane order). The caller syncs the consumers after it.
__device__ __forceinline__ void stage_x_permuted(bf16* xs, float* corr, const bf16* x, int K, int n_groups, int tid,
                                                 int warp, int lane) {
  for (int i = tid; i < K / 8; i += kCW * 32) {
    const uint4 v = reinterpret_cast<const uint4*>(x)[i];
    reinterpret_cast<uint4*>(xs)[i] = make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632),
                                                 __byte_perm(v.y, v.w, 0x5410), __byte_perm(v.y, v.w, 0x7632));
  }
  for (int G = warp; G < n_groups; G += kCW) {
    const float c = group_correction(reinterpret_cast<const uint2*>(x + 128 * G)[lane]);
    if (lane == 0) corr[G] = c;
  }
}

// out[N] = dequant(W)[N, K] · x[K] (bf16 out), N % 16 == 0, K % 128 == 0. counter: nullptr = static tiles.
// NOMATH: the consumers only wait for each stage and release it (timing of the copies alone; output wrong).
// CONTIG: a stage's bytes (W and scales) as one contiguous bulk copy, as a tile-major layout would store them
// (timing only: the addresses ignore the row-major layout, the output is wrong).
// CLASS: timing only — the dequantization a nibble order by class would allow (one shift a word: nibbles 0-1 of
// each byte pair as 136 + v, the high ones as 256 + 16v in their own MMA chain, the sum D_L + D_H / 16).
template <int STAGES, int GPW, bool NOMATH, bool CONTIG = false, bool CLASS = false>
__global__ void __launch_bounds__(kThreads, 2)
    q4s_kernel(bf16* __restrict__ out, const bf16* __restrict__ x, const std::uint8_t* __restrict__ q,
               const float* __restrict__ scales, int N, int K, int* counter, unsigned long long* probe) {
  constexpr int kStageGroups = Geo<GPW>::kStageGroups, kRowStride = Geo<GPW>::kRowStride;
  constexpr int kStageW = Geo<GPW>::kStageW, kStageBytes = Geo<GPW>::kStageBytes, kGpw = GPW;
  extern __shared__ __align__(128) unsigned char smem[];
  allow_dependents_to_launch();
  std::uint64_t* full = reinterpret_cast<std::uint64_t*>(smem);
  std::uint64_t* empty = full + STAGES;
  int* tile_of = reinterpret_cast<int*>(empty + STAGES);
  unsigned char* ring = smem + 1024;
  bf16* xs = reinterpret_cast<bf16*>(ring + STAGES * kStageBytes);
  const int n_groups = K / 128;
  float* corr = reinterpret_cast<float*>(xs + K);
  float* red = corr + n_groups;  // [2][kCW][16]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_tiles = N / 16, n_stages = (n_groups + kStageGroups - 1) / kStageGroups;
  if (threadIdx.x == 0) {
    for (int i = 0; i < STAGES; ++i) {
      mbar_init(smem_addr(full + i), 1);
      mbar_init(smem_addr(empty + i), kCW);
    }
    mbar_init_fence();
  }
  __syncthreads();
  // probe (one launch, timing study): per block 8 %globaltimer stamps — consumer warp 0: entry, after the PDL wait,
  // after the prologue, first stage landed, done; producer: entry, first STAGES stages issued, last issued.
  const auto stamp = [&](int k) {
    if (probe && (threadIdx.x & 31) == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      probe[blockIdx.x * 8 + k] = t;
    }
  };
  if (threadIdx.x == 0) stamp(0);
  if (warp == kCW) {  // producer
    stamp(5);
    int slot = 0, uses = 0;
    for (int j = 0;; ++j) {
      int tile = blockIdx.x + j * gridDim.x;
      if (counter) {
        if (lane == 0) tile = atomicAdd(counter, 1);
        tile = __shfl_sync(0xffffffffu, tile, 0);
      }
      const bool done = tile >= n_tiles;
      for (int st = 0; st < (done ? 1 : n_stages); ++st) {
        if (uses >= STAGES) mbar_wait(smem_addr(empty + slot), ((uses / STAGES) - 1) & 1);
        const int G0 = st * kStageGroups, ng = min(kStageGroups, n_groups - G0);
        const std::uint32_t bar = smem_addr(full + slot);
        if (lane == 0) {
          tile_of[slot] = done ? -1 : tile;
          mbar_expect_tx(bar, done ? 0u : std::uint32_t(16 * ng * 64 + 16 * ng * 4));
        }
        __syncwarp();
        if (!done && CONTIG) {
          if (lane == 0)
            bulk_copy(smem_addr(ring + slot * kStageBytes), q + (std::size_t(tile) * n_groups + G0) * 16 * 68,
                      std::uint32_t(16 * ng * 68), bar);
        } else if (!done) {
          unsigned char* st_base = ring + slot * kStageBytes;
          if (lane < 16) {
            const std::uint8_t* src = q + std::size_t(tile * 16 + lane) * (K / 2) + G0 * 64;
            bulk_copy(smem_addr(st_base + lane * kRowStride), src, ng * 64, bar);
          } else {
            const int r = lane - 16;
            const float* src = scales + std::size_t(tile * 16 + r) * n_groups + G0;
            bulk_copy(smem_addr(st_base + kStageW + r * kStageGroups * 4), src, ng * 4, bar);
          }
        }
        ++uses;
        if (uses == STAGES) stamp(6);
        slot = slot + 1 == STAGES ? 0 : slot + 1;
      }
      if (done) break;
    }
    stamp(7);
    return;
  }
  // consumers
  wait_for_previous_grid();
  if (threadIdx.x == 0) stamp(1);
  const int tid = threadIdx.x;
  stage_x_permuted(xs, corr, x, K, n_groups, tid, warp, lane);
  named_sync(1, kCW * 32);
  if (threadIdx.x == 0) stamp(2);
  const int g = lane >> 2, t = lane & 3;
  int slot = 0, uses = 0, buf = 0;
  for (;;) {
    mbar_wait(smem_addr(full + slot), (uses / STAGES) & 1);
    const int tile = tile_of[slot];
    if (uses == 0 && threadIdx.x == 0) stamp(3);
    if (tile < 0) break;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int st = 0; st < n_stages; ++st) {
      if (st > 0) mbar_wait(smem_addr(full + slot), (uses / STAGES) & 1);
      const int G0 = st * kStageGroups, ng = min(kStageGroups, n_groups - G0);
      const unsigned char* st_base = ring + slot * kStageBytes;
      const float* ss = reinterpret_cast<const float*>(st_base + kStageW);
      // The stage's W and scales into registers, then the slot goes back to the producer before any math.
      uint4 w[kGpw][2];
      float sc[kGpw][2];
#pragma unroll
      for (int gi = 0; gi < kGpw; ++gi) {
        const int gl = min(warp * kGpw + gi, ng - 1);
        w[gi][0] = *reinterpret_cast<const uint4*>(st_base + g * kRowStride + gl * 64 + 16 * t);
        w[gi][1] = *reinterpret_cast<const uint4*>(st_base + (g + 8) * kRowStride + gl * 64 + 16 * t);
        sc[gi][0] = ss[g * kStageGroups + gl];
        sc[gi][1] = ss[(g + 8) * kStageGroups + gl];
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(smem_addr(empty + slot));
      ++uses;
      slot = slot + 1 == STAGES ? 0 : slot + 1;
#pragma unroll
      for (int gi = 0; gi < kGpw; ++gi) {
        const int gl = warp * kGpw + gi;
        if (!NOMATH && gl < ng) {
          const int G = G0 + gl;
          const uint4* xp = reinterpret_cast<const uint4*>(xs + 128 * G + 32 * t);
          const float cr = corr[G];
          float d[2][4];
#pragma unroll
          for (int ww = 0; ww < 4; ++ww) {
            const uint4 xv = xp[ww];
            constexpr float kZero[4] = {0.f, 0.f, 0.f, 0.f};
            const std::uint32_t u0 = (&w[gi][0].x)[ww], u1 = (&w[gi][1].x)[ww];
            if constexpr (CLASS) {
              const std::uint32_t v0 = u0 >> 8, v1 = u1 >> 8;
              mma_bf16_16816(d[0], lop_lo(u0), lop_lo(u1), lop_lo(v0), lop_lo(v1), xv.x, xv.y, ww == 0 ? kZero : d[0]);
              mma_bf16_16816(d[1], lop_hi(u0), lop_hi(u1), lop_hi(v0), lop_hi(v1), xv.z, xv.w, ww == 0 ? kZero : d[1]);
            } else {
              float* dc = d[ww % 2];
              mma_bf16_16816(dc, int4_pair_biased(u0, 0), int4_pair_biased(u1, 0), int4_pair_biased(u0, 1),
                             int4_pair_biased(u1, 1), xv.x, xv.y, ww < 2 ? kZero : dc);
              mma_bf16_16816(dc, int4_pair_biased(u0, 2), int4_pair_biased(u1, 2), int4_pair_biased(u0, 3),
                             int4_pair_biased(u1, 3), xv.z, xv.w, dc);
            }
          }
          if constexpr (CLASS) {
            acc[0] = fmaf(sc[gi][0], fmaf(d[1][0], 0.0625f, d[0][0]) + cr, acc[0]);
            acc[2] = fmaf(sc[gi][1], fmaf(d[1][2], 0.0625f, d[0][2]) + cr, acc[2]);
          } else {
            acc[0] = fmaf(sc[gi][0], (d[0][0] + d[1][0]) + cr, acc[0]);
            acc[2] = fmaf(sc[gi][1], (d[0][2] + d[1][2]) + cr, acc[2]);
          }
        }
      }
    }
    float* rb = red + buf * kCW * 16;
    if (t == 0) {
      rb[warp * 16 + g] = acc[0];
      rb[warp * 16 + g + 8] = acc[2];
    }
    named_sync(1, kCW * 32);
    if (tid < 16) {
      float sum = rb[tid];
#pragma unroll
      for (int w = 1; w < kCW; ++w) sum += rb[w * 16 + tid];
      out[tile * 16 + tid] = __float2bfloat16_rn(sum);
    }
    buf ^= 1;
  }
  if (threadIdx.x == 0) stamp(4);
}

// ---- q4t: q4s reading the row-major int4 layout through 2-D tensor maps -----------------------------------------
// One TMA a stage for W (a box of 16 rows × 1 KB: 256 uint32 × 16) and one for the scales (16 groups × 16 rows,
// fp32), whatever the row stride: the TMA unit walks the rows itself. Groups past K read as zeros (OOB fill) and
// are never multiplied. FIX: the prologue in one round trip (each thread stages one 16-byte chunk of x and the
// group's correction is summed over the 16 lanes holding it, -136 · Σx in a fixed order) and a tile's sums met
// without stopping every warp (warps 1..7 bar.arrive, warp 0 bar.sync then adds; STAGES + 1 buffers and barriers).
template <int GPW>
struct TGeo {
  static constexpr int kSG = kCW * GPW;  // groups a stage
  static constexpr int kStageW = 16 * kSG * 64, kStageBytes = kStageW + 16 * kSG * 4;
};
inline std::size_t q4t_smem(int stages, int K, int gpw = 2) {
  const int stage = gpw == 1 ? TGeo<1>::kStageBytes : TGeo<2>::kStageBytes;
  return 1024 + std::size_t(stages) * stage + std::size_t(K) * 2 + std::size_t(K / 128) * 4 +
         std::size_t(stages + 1) * kCW * 16 * 4;
}

// MAP3: W through a 3-D map (16 uint32 of a group, rows, groups) whose box lands group-major in shared memory
// ([group][row][64 bytes]): a warp's 16-byte reads of rows g and g + 1 fall on different banks (the 2-D box's
// 1 KB rows put them on the same ones: a 2-way conflict on every W read).
// SPLIT (timing of split K, PERF_NOTES v19 7.): where a tile has at least kSplitStages stages, it is two units —
// its first and its second half of the stages — handed out like tiles (unit = block + j · grid), so a shape with
// few tiles an SM (w2: 320 over 132 SMs) spreads over twice as many. A unit's 16 sums (its warps' partials added in
// warp order) go to part[tile][half]; the tile's second unit to finish (a counter a tile: fence, atomic; zeroed
// again by that unit, so graph replays find it zero) adds the halves in half order and stores the tile. The bits
// differ from q4mma's (each warp's chain is cut in two): the lab's validation prints the difference.
constexpr int kSplitStages = 8;
template <int STAGES, bool NOMATH, bool FIX, bool MAP3 = false, int GPW = 2, bool SPLIT = false>
__global__ void __launch_bounds__(kThreads, 2)
    q4t_kernel(bf16* __restrict__ out, const bf16* __restrict__ x, int N, int K, int* counter,
               unsigned long long* probe, const __grid_constant__ CUtensorMap tw,
               const __grid_constant__ CUtensorMap ts, int* tile_cnt, float* part) {
  constexpr int kSG = TGeo<GPW>::kSG, kTStageW = TGeo<GPW>::kStageW, kTStageBytes = TGeo<GPW>::kStageBytes;
  extern __shared__ __align__(128) unsigned char smem[];
  allow_dependents_to_launch();
  std::uint64_t* full = reinterpret_cast<std::uint64_t*>(smem);
  std::uint64_t* empty = full + STAGES;
  int* tile_of = reinterpret_cast<int*>(empty + STAGES);
  unsigned char* ring = smem + 1024;
  bf16* xs = reinterpret_cast<bf16*>(ring + STAGES * kTStageBytes);
  const int n_groups = K / 128;
  float* corr = reinterpret_cast<float*>(xs + K);
  float* red = corr + n_groups;  // [STAGES + 1][kCW][16]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_tiles = N / 16, n_stages = (n_groups + kSG - 1) / kSG;
  const bool split = SPLIT && n_stages >= kSplitStages;
  const int n_units = split ? 2 * n_tiles : n_tiles;
  // Unit u's tile and its stages [lo, hi).
  const auto unit_tile = [&](int u) { return split ? u >> 1 : u; };
  const auto unit_lo = [&](int u) { return split && (u & 1) ? n_stages / 2 : 0; };
  const auto unit_hi = [&](int u) { return split && !(u & 1) ? n_stages / 2 : n_stages; };
  if (threadIdx.x == 0) {
    for (int i = 0; i < STAGES; ++i) {
      mbar_init(smem_addr(full + i), 1);
      mbar_init(smem_addr(empty + i), kCW);
    }
    mbar_init_fence();
  }
  __syncthreads();
  const auto stamp = [&](int k) {
    if (probe && (threadIdx.x & 31) == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      probe[blockIdx.x * 8 + k] = t;
    }
  };
  if (threadIdx.x == 0) stamp(0);
  if (warp == kCW) {  // producer: lane 0 only
    if (lane != 0) return;
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tw)) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&ts)) : "memory");
    int slot = 0, uses = 0;
    for (int j = 0;; ++j) {
      const int unit = counter ? atomicAdd(counter, 1) : int(blockIdx.x + j * gridDim.x);
      const bool done = unit >= n_units;
      const int tile = unit_tile(unit), st_lo = done ? 0 : unit_lo(unit), st_hi = done ? 1 : unit_hi(unit);
      for (int st = st_lo; st < st_hi; ++st) {
        if (uses >= STAGES) mbar_wait(smem_addr(empty + slot), ((uses / STAGES) - 1) & 1);
        const std::uint32_t bar = smem_addr(full + slot);
        tile_of[slot] = done ? -1 : unit;
        mbar_expect_tx(bar, done ? 0u : std::uint32_t(kTStageBytes));
        if (!done) {
          unsigned char* sb = ring + slot * kTStageBytes;
          if constexpr (MAP3)
            tma_load_3d(smem_addr(sb), &tw, bar, 0, tile * 16, st * kSG);
          else
            tma_load_2d(smem_addr(sb), &tw, bar, st * kSG * 16, tile * 16);
          tma_load_2d(smem_addr(sb + kTStageW), &ts, bar, st * kSG, tile * 16);
        }
        ++uses;
        if (uses == STAGES) stamp(6);
        slot = slot + 1 == STAGES ? 0 : slot + 1;
      }
      if (done) break;
    }
    stamp(7);
    return;
  }
  wait_for_previous_grid();
  if (threadIdx.x == 0) stamp(1);
  const int tid = threadIdx.x;
  if constexpr (FIX) {
    constexpr int kMaxChunks = 7;  // K ≤ 14336: 1792 chunks of 8 over 256 threads, all loads issued at once
    uint4 xv[kMaxChunks];
#pragma unroll
    for (int j = 0; j < kMaxChunks; ++j)
      if (j * kCW * 32 + tid < K / 8) xv[j] = reinterpret_cast<const uint4*>(x)[j * kCW * 32 + tid];
#pragma unroll
    for (int j = 0; j < kMaxChunks; ++j) {  // a half-warp holds one group's 16 chunks
      const int c = j * kCW * 32 + tid;
      float sum = 0.f;
      if (c < K / 8) {
        const uint4 v = xv[j];
        reinterpret_cast<uint4*>(xs)[c] = make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632),
                                                     __byte_perm(v.y, v.w, 0x5410), __byte_perm(v.y, v.w, 0x7632));
        float f[8];
        bf16x8_to_f32(v, f);
        sum = ((f[0] + f[1]) + (f[2] + f[3])) + ((f[4] + f[5]) + (f[6] + f[7]));
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      sum += __shfl_xor_sync(0xffffffffu, sum, 4);
      sum += __shfl_xor_sync(0xffffffffu, sum, 8);
      if (c < K / 8 && (lane & 15) == 0) corr[c / 16] = -136.f * sum;
      if (j * kCW * 32 >= K / 8) break;
    }
  } else {
    stage_x_permuted(xs, corr, x, K, n_groups, tid, warp, lane);
  }
  named_sync(1, kCW * 32);
  if (threadIdx.x == 0) stamp(2);
  const int g = lane >> 2, t = lane & 3;
  int slot = 0, uses = 0, n_done = 0;
  for (;;) {
    mbar_wait(smem_addr(full + slot), (uses / STAGES) & 1);
    const int unit = tile_of[slot];
    if (uses == 0 && threadIdx.x == 0) stamp(3);
    if (unit < 0) break;
    const int tile = unit_tile(unit), st_lo = unit_lo(unit), st_hi = unit_hi(unit);
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int st = st_lo; st < st_hi; ++st) {
      if (st > st_lo) mbar_wait(smem_addr(full + slot), (uses / STAGES) & 1);
      const int G0 = st * kSG, ng = min(kSG, n_groups - G0);
      const unsigned char* sb = ring + slot * kTStageBytes;
      const float* ss = reinterpret_cast<const float*>(sb + kTStageW);
      uint4 w[GPW][2];
      float sc[GPW][2];
#pragma unroll
      for (int gi = 0; gi < GPW; ++gi) {
        const int gl = min(warp * GPW + gi, ng - 1);
        const int r0 = MAP3 ? gl * 1024 + g * 64 + 16 * t : g * kSG * 64 + gl * 64 + 16 * t;
        const int r1 = MAP3 ? r0 + 512 : r0 + 8 * kSG * 64;
        w[gi][0] = *reinterpret_cast<const uint4*>(sb + r0);
        w[gi][1] = *reinterpret_cast<const uint4*>(sb + r1);
        sc[gi][0] = ss[g * kSG + gl];
        sc[gi][1] = ss[(g + 8) * kSG + gl];
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(smem_addr(empty + slot));
      ++uses;
      slot = slot + 1 == STAGES ? 0 : slot + 1;
#pragma unroll
      for (int gi = 0; gi < GPW; ++gi) {
        const int gl = warp * GPW + gi;
        if (!NOMATH && gl < ng) {
          const int G = G0 + gl;
          const uint4* xp = reinterpret_cast<const uint4*>(xs + 128 * G + 32 * t);
          const float cr = corr[G];
          float d[2][4];
#pragma unroll
          for (int ww = 0; ww < 4; ++ww) {
            const uint4 xv = xp[ww];
            constexpr float kZero[4] = {0.f, 0.f, 0.f, 0.f};
            const std::uint32_t u0 = (&w[gi][0].x)[ww], u1 = (&w[gi][1].x)[ww];
            float* dc = d[ww % 2];
            mma_bf16_16816(dc, int4_pair_biased(u0, 0), int4_pair_biased(u1, 0), int4_pair_biased(u0, 1),
                           int4_pair_biased(u1, 1), xv.x, xv.y, ww < 2 ? kZero : dc);
            mma_bf16_16816(dc, int4_pair_biased(u0, 2), int4_pair_biased(u1, 2), int4_pair_biased(u0, 3),
                           int4_pair_biased(u1, 3), xv.z, xv.w, dc);
          }
          acc[0] = fmaf(sc[gi][0], (d[0][0] + d[1][0]) + cr, acc[0]);
          acc[2] = fmaf(sc[gi][1], (d[0][2] + d[1][2]) + cr, acc[2]);
        }
      }
    }
    const int b = FIX ? n_done % (STAGES + 1) : (n_done & 1);
    float* rb = red + b * kCW * 16;
    if (t == 0) {
      rb[warp * 16 + g] = acc[0];
      rb[warp * 16 + g + 8] = acc[2];
    }
    if (FIX && warp != 0) {
      named_arrive(2 + b, kCW * 32);
    } else {
      named_sync(FIX ? 2 + b : 1, kCW * 32);
      if (tid < 16) {
        float sum = rb[tid];
#pragma unroll
        for (int w2 = 1; w2 < kCW; ++w2) sum += rb[w2 * 16 + tid];
        if (!split) {
          out[tile * 16 + tid] = __float2bfloat16_rn(sum);
        } else {
          const int h = unit & 1;
          __stcg(part + (2 * tile + h) * 16 + tid, sum);
          __threadfence();  // this lane's half visible before the count
          __syncwarp(0xffffu);
          int old = 0;
          if (tid == 0) old = atomicAdd(tile_cnt + tile, 1);
          old = __shfl_sync(0xffffu, old, 0);
          if (old == 1) {  // the tile's second unit: both halves are stored
            __threadfence();
            const float other = __ldcg(part + (2 * tile + (h ^ 1)) * 16 + tid);
            out[tile * 16 + tid] = __float2bfloat16_rn(h ? other + sum : sum + other);
            if (tid == 0) tile_cnt[tile] = 0;  // for the next launch (stream order)
          }
        }
      }
    }
    ++n_done;
  }
  if (threadIdx.x == 0) stamp(4);
}

}  // namespace pixtral::cuda::q4stream_lab
