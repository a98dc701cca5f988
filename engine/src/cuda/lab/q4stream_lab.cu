// SPDX-License-Identifier: Apache-2.0
// q4stream lab (not a test; PERF_NOTES v17): can a differently built int4 decode GEMV stream the weights of a
// decoder layer closer to the copy rate than q4mma (kernels_q4mma.cu)?
//
// q4mma: every thread streams its own 16-byte pieces through a cp.async ring; a block = 16 rows × all of K; grids
// of 192–896 blocks, three an SM. v14 7.: each kernel ~6–11 µs over its bytes.
// q4s (this file): one persistent block an SM (or two), warp-specialized. A producer warp copies stages of
// 16 rows × 16 groups (16 KB of W + 1 KB of scales) with cp.async.bulk (one bulk copy a row and lane) into a ring
// of mbarrier-guarded stages, starting before the programmatic-dependent-launch wait (weights are immutable);
// eight consumer warps stage x and the groups' bias corrections in shared memory once per block, then multiply
// each stage on the tensor cores with q4mma's arithmetic (each warp two groups a stage) and meet a tile's sums in
// shared memory. Tiles are handed out statically (tile = block + j · grid) or from a device counter.
// With ~100 KB of shared memory a block, the next GEMV's block fits on the SM beside this one and fills its ring
// while this one drains: DRAM never waits for a kernel boundary.
//
// Measured: a chain of the decoder's four int4 GEMVs (QKV 6144×5120, wo 5120×4096, [w1; w3] 28672×5120,
// w2 5120×14336), 40 layers of distinct weights in one CUDA graph, each GEMV reading the previous one's output;
// µs a layer against the bytes a layer at the copy rate; then each shape alone (40 launches in a graph).
// Validated first: every shape's q4s output against q4mma's on the same x (max |diff| / max |ref|).
// Usage: pixtral_q4stream_lab [reps=20]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda.h>  // CUtensorMap (types only; the encoder comes through the runtime)

#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"
#include "cuda/tma.cuh"
#include "lab_common.h"

using namespace pixtral;
using namespace pixtral::cuda;


namespace {

constexpr int kCW = 8;                          // consumer warps
constexpr int kThreads = (kCW + 1) * 32;        // + one producer warp
// A stage's geometry for GPW groups a consumer warp multiplies per stage (16 groups of 128 = 1 KB of a row at 2).
template <int GPW>
struct Geo {
  static constexpr int kStageGroups = kCW * GPW;
  static constexpr int kRowStride = kStageGroups * 64 + 64;  // padded: rows g and g + 1 lie 16 banks apart
  static constexpr int kStageW = 16 * kRowStride;
  static constexpr int kStageS = 16 * kStageGroups * 4;
  static constexpr int kStageBytes = kStageW + kStageS;
};

std::size_t q4s_smem(int stages, int gpw, int K) {
  const int stage = gpw == 2 ? Geo<2>::kStageBytes : Geo<4>::kStageBytes;
  return 1024 + std::size_t(stages) * stage + std::size_t(K) * 2 + std::size_t(K / 128) * 4 + 2 * kCW * 16 * 4;
}

__device__ __forceinline__ void bulk_copy(std::uint32_t dst, const void* src, std::uint32_t bytes,
                                          std::uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
__device__ __forceinline__ void mma16816(float d[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                         std::uint32_t a3, std::uint32_t b0, std::uint32_t b1, const float c[4]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
// q4mma's dequantization: nibbles s, s + 4 of u as bf16x2 of 136 + v.
__device__ __forceinline__ std::uint32_t pair136(std::uint32_t u, int s) {
  std::uint32_t r;
  asm("lop3.b32 %0, %1, 0x000f000f, 0x43084308, 0x6a;" : "=r"(r) : "r"(u >> (4 * s)));
  return r;
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
// q4mma's group correction: -136 · Σ x over a group, from lane's x[4·lane .. +3].
__device__ __forceinline__ float correction(uint2 xs) {
  constexpr float kZero[4] = {0.f, 0.f, 0.f, 0.f};
  constexpr std::uint32_t kM = 0xc308c308u;
  float d[4];
  mma16816(d, kM, kM, kM, kM, xs.x, xs.y, kZero);
  float v = d[0] + d[1];
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

// out[N] = dequant(W)[N, K] · x[K] (bf16 out), N % 16 == 0, K % 128 == 0. counter: nullptr = static tiles.
// NOMATH: the consumers only wait for each stage and release it (timing of the copies alone; output wrong).
// CONTIG: a stage's bytes (W and scales) as one contiguous bulk copy, as a tile-major layout would store them
// (timing only: the addresses ignore the row-major layout, the output is wrong).
// CLASS: timing only — the dequantization a nibble order by class would allow (one shift a word: nibbles 0-1 of
// each byte pair as 136 + v, the high ones as 256 + 16v in their own MMA chain, the sum D_L + D_H / 16).
template <int STAGES, int GPW, bool NOMATH, bool CONTIG = false, bool CLASS = false>
__global__ void __launch_bounds__(kThreads, 2) q4s_kernel(bf16* __restrict__ out, const bf16* __restrict__ x,
                                                          const std::uint8_t* __restrict__ q,
                                                          const float* __restrict__ scales, int N, int K,
                                                          int* counter, unsigned long long* probe) {
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
            bulk_copy(smem_addr(ring + slot * kStageBytes),
                      q + (std::size_t(tile) * n_groups + G0) * 16 * 68, std::uint32_t(16 * ng * 68), bar);
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
  // x staged once, each 8-value chunk permuted to (x0, x4, x1, x5, x2, x6, x3, x7): one 16-byte read is then the
  // four B registers of a word's two k-steps (q4mma builds them with byte_perms every group and tile).
  for (int i = tid; i < K / 8; i += kCW * 32) {
    const uint4 v = reinterpret_cast<const uint4*>(x)[i];
    reinterpret_cast<uint4*>(xs)[i] = make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632),
                                                 __byte_perm(v.y, v.w, 0x5410), __byte_perm(v.y, v.w, 0x7632));
  }
  for (int G = warp; G < n_groups; G += kCW) {  // from x as stored (q4mma's lane order)
    const float c = correction(reinterpret_cast<const uint2*>(x + 128 * G)[lane]);
    if (lane == 0) corr[G] = c;
  }
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
              mma16816(d[0], lop_lo(u0), lop_lo(u1), lop_lo(v0), lop_lo(v1), xv.x, xv.y, ww == 0 ? kZero : d[0]);
              mma16816(d[1], lop_hi(u0), lop_hi(u1), lop_hi(v0), lop_hi(v1), xv.z, xv.w, ww == 0 ? kZero : d[1]);
            } else {
              float* dc = d[ww % 2];
              mma16816(dc, pair136(u0, 0), pair136(u1, 0), pair136(u0, 1), pair136(u1, 1), xv.x, xv.y,
                       ww < 2 ? kZero : dc);
              mma16816(dc, pair136(u0, 2), pair136(u1, 2), pair136(u0, 3), pair136(u1, 3), xv.z, xv.w, dc);
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
std::size_t q4t_smem(int stages, int K, int gpw = 2) {
  const int stage = gpw == 1 ? TGeo<1>::kStageBytes : TGeo<2>::kStageBytes;
  return 1024 + std::size_t(stages) * stage + std::size_t(K) * 2 + std::size_t(K / 128) * 4 +
         std::size_t(stages + 1) * kCW * 16 * 4;
}

// MAP3: W through a 3-D map (16 uint32 of a group, rows, groups) whose box lands group-major in shared memory
// ([group][row][64 bytes]): a warp's 16-byte reads of rows g and g + 1 fall on different banks (the 2-D box's
// 1 KB rows put them on the same ones: a 2-way conflict on every W read).
template <int STAGES, bool NOMATH, bool FIX, bool MAP3 = false, int GPW = 2>
__global__ void __launch_bounds__(kThreads, 2)
    q4t_kernel(bf16* __restrict__ out, const bf16* __restrict__ x, int N, int K, int* counter,
               unsigned long long* probe, const __grid_constant__ CUtensorMap tw,
               const __grid_constant__ CUtensorMap ts) {
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
      const int tile = counter ? atomicAdd(counter, 1) : int(blockIdx.x + j * gridDim.x);
      const bool done = tile >= n_tiles;
      for (int st = 0; st < (done ? 1 : n_stages); ++st) {
        if (uses >= STAGES) mbar_wait(smem_addr(empty + slot), ((uses / STAGES) - 1) & 1);
        const std::uint32_t bar = smem_addr(full + slot);
        tile_of[slot] = done ? -1 : tile;
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
    for (int i = tid; i < K / 8; i += kCW * 32) {
      const uint4 v = reinterpret_cast<const uint4*>(x)[i];
      reinterpret_cast<uint4*>(xs)[i] = make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632),
                                                   __byte_perm(v.y, v.w, 0x5410), __byte_perm(v.y, v.w, 0x7632));
    }
    for (int G = warp; G < n_groups; G += kCW) {
      const float c = correction(reinterpret_cast<const uint2*>(x + 128 * G)[lane]);
      if (lane == 0) corr[G] = c;
    }
  }
  named_sync(1, kCW * 32);
  if (threadIdx.x == 0) stamp(2);
  const int g = lane >> 2, t = lane & 3;
  int slot = 0, uses = 0, n_done = 0;
  for (;;) {
    mbar_wait(smem_addr(full + slot), (uses / STAGES) & 1);
    const int tile = tile_of[slot];
    if (uses == 0 && threadIdx.x == 0) stamp(3);
    if (tile < 0) break;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int st = 0; st < n_stages; ++st) {
      if (st > 0) mbar_wait(smem_addr(full + slot), (uses / STAGES) & 1);
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
            mma16816(dc, pair136(u0, 0), pair136(u1, 0), pair136(u0, 1), pair136(u1, 1), xv.x, xv.y,
                     ww < 2 ? kZero : dc);
            mma16816(dc, pair136(u0, 2), pair136(u1, 2), pair136(u0, 3), pair136(u1, 3), xv.z, xv.w, dc);
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
        out[tile * 16 + tid] = __float2bfloat16_rn(sum);
      }
    }
    ++n_done;
  }
  if (threadIdx.x == 0) stamp(4);
}

__global__ void fill_random(bf16* p, std::size_t n, unsigned seed, float scale) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ (seed * 0x9E3779B9u) ^ unsigned(i >> 32);
    h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
    float u = (float(h & 0xffffff) / float(1 << 24)) * 2.f - 1.f;
    p[i] = __float2bfloat16_rn(u * scale);
  }
}

struct Shape { const char* name; int N, K; };
constexpr Shape kShapes[4] = {{"wq+wk+wv", 6144, 5120}, {"wo", 5120, 4096}, {"w1+w3", 28672, 5120},
                              {"w2", 5120, 14336}};

struct Variant {
  const char* name; int stages; int per_sm; bool dynamic; int gpw; bool nomath; bool contig; bool cls = false;
  bool tmap = false; bool fix = false; bool map3 = false; int tgpw = 2;
};
using TKernelFn = void (*)(bf16*, const bf16*, int, int, int*, unsigned long long*, const CUtensorMap,
                           const CUtensorMap);
TKernelFn tkernel_of(const Variant& v) {
  if (v.map3 && v.tgpw == 1) return q4t_kernel<8, false, true, true, 1>;
  if (v.map3) return v.nomath ? q4t_kernel<4, true, true, true> : q4t_kernel<4, false, true, true>;
  if (v.nomath) return q4t_kernel<4, true, true>;
  if (v.stages == 6) return v.fix ? q4t_kernel<6, false, true> : q4t_kernel<6, false, false>;
  return v.fix ? q4t_kernel<4, false, true> : q4t_kernel<4, false, false>;
}
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiledFn encode_fn() {
  void* f = nullptr;
  cudaDriverEntryPointQueryResult q;
  LAB_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
  if (q != cudaDriverEntryPointSuccess) std::exit(1);
  return reinterpret_cast<EncodeTiledFn>(f);
}
// A 3-D map over a row-major int4 [rows, K / 2 bytes] matrix: (16 uint32 of a group, rows, groups), boxes of
// 16 × 16 rows × 16 groups (group-major in shared memory). false where the driver refuses it.
bool encode3(CUtensorMap* m, const void* base, int K, int rows, int box_groups = 16) {
  static const EncodeTiledFn fn = encode_fn();
  const cuuint64_t dims[3] = {16, cuuint64_t(rows), cuuint64_t(K / 128)};
  const cuuint64_t strides[2] = {cuuint64_t(K / 2), 64};
  const cuuint32_t box[3] = {16, 16, cuuint32_t(box_groups)};
  const cuuint32_t es[3] = {1, 1, 1};
  const CUresult r = fn(m, CU_TENSOR_MAP_DATA_TYPE_UINT32, 3, const_cast<void*>(base), dims, strides, box, es,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) std::fprintf(stderr, "cuTensorMapEncodeTiled (3-D): %d\n", int(r));
  return r == CUDA_SUCCESS;
}
// A 2-D map over a row-major [rows, cols] matrix of 4-byte elements, boxes of box_cols × 16 rows.
CUtensorMap encode(const void* base, int cols, int rows, int box_cols, CUtensorMapDataType dt) {
  static const EncodeTiledFn fn = encode_fn();
  CUtensorMap m;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(cols) * 4};
  const cuuint32_t box[2] = {cuuint32_t(box_cols), 16};
  const cuuint32_t es[2] = {1, 1};
  const CUresult r = fn(&m, dt, 2, const_cast<void*>(base), dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled: %d\n", int(r));
    std::exit(1);
  }
  return m;
}
using KernelFn = void (*)(bf16*, const bf16*, const std::uint8_t*, const float*, int, int, int*,
                          unsigned long long*);
KernelFn kernel_of(const Variant& v) {
  if (v.contig) {
    if (v.nomath) return q4s_kernel<4, 2, true, true>;
    if (v.gpw == 4) return v.cls ? q4s_kernel<2, 4, false, true, true> : q4s_kernel<2, 4, false, true>;
    return v.cls ? q4s_kernel<4, 2, false, true, true> : q4s_kernel<4, 2, false, true>;
  }
  if (v.nomath) return v.gpw == 2 ? q4s_kernel<4, 2, true> : q4s_kernel<3, 4, true>;
  if (v.gpw == 4) return q4s_kernel<3, 4, false>;
  return v.stages == 3 ? q4s_kernel<3, 2, false> : v.stages == 4 ? q4s_kernel<4, 2, false> : q4s_kernel<6, 2, false>;
}

float bf16_to_f(std::uint16_t b) {
  std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(3, std::atoi(argv[1])) : 20;
  constexpr int kLayers = 40;
  cudaDeviceProp prop{};
  LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  cudaStream_t s;
  LAB_CHECK(cudaStreamCreate(&s));
  std::printf("device: %s, %d SMs\n", prop.name, sms);

  const std::size_t copy_bytes = std::size_t(2) << 30;
  void *c0, *c1;
  LAB_CHECK(cudaMalloc(&c0, copy_bytes));
  LAB_CHECK(cudaMalloc(&c1, copy_bytes));
  const float copy_ms = median_ms(s, 10, [&] {
    LAB_CHECK(cudaMemcpyAsync(c1, c0, copy_bytes, cudaMemcpyDeviceToDevice, s));
  });
  const double copy_bw = 2.0 * copy_bytes / (copy_ms * 1e-3);
  LAB_CHECK(cudaFree(c0));
  LAB_CHECK(cudaFree(c1));
  std::printf("copy bandwidth: %.0f GB/s (read + write)\n", copy_bw / 1e9);

  // Weights: 40 layers × 4 int4 matrices from random bf16 (one source a shape, seeds differ by layer).
  const auto f = quant::Format::int4_g128;
  std::vector<std::uint8_t*> Q(kLayers * 4);
  double layer_bytes = 0;
  bf16* src;
  LAB_CHECK(cudaMalloc(&src, std::size_t(28672) * 5120 * 2));
  for (int k = 0; k < 4; ++k) {
    const Shape& sh = kShapes[k];
    layer_bytes += double(quantized_alloc_bytes(f, sh.N, sh.K));
    for (int l = 0; l < kLayers; ++l) {
      fill_random<<<1024, 256, 0, s>>>(src, std::size_t(sh.N) * sh.K, 100 * k + l, 2.f / std::sqrt(float(sh.K)));
      LAB_CHECK(cudaMalloc(&Q[l * 4 + k], quantized_alloc_bytes(f, sh.N, sh.K)));
      LAB_STATUS(launch_quantize(Q[l * 4 + k],
                                 reinterpret_cast<float*>(Q[l * 4 + k] + quantized_values_bytes(f, sh.N, sh.K)), src,
                                 sh.N, sh.K, f, s));
    }
  }
  LAB_CHECK(cudaFree(src));
  const auto scales_of = [&](int i, const Shape& sh) {
    return reinterpret_cast<const float*>(Q[i] + quantized_values_bytes(f, sh.N, sh.K));
  };
  bf16 *a, *b, *ref;
  LAB_CHECK(cudaMalloc(&a, 32768 * 2));
  LAB_CHECK(cudaMalloc(&b, 32768 * 2));
  LAB_CHECK(cudaMalloc(&ref, 32768 * 2));
  fill_random<<<64, 256, 0, s>>>(a, 32768, 3, 1.f);
  fill_random<<<64, 256, 0, s>>>(b, 32768, 4, 1.f);
  int* counters;
  LAB_CHECK(cudaMalloc(&counters, kLayers * 4 * sizeof(int)));
  LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));

  const Variant variants[] = {{"q4s 3st 2/SM static", 3, 2, false, 2, false, false},
                              {"contig 4st 2/SM nomath", 4, 2, false, 2, true, true},
                              {"contig 4st 2/SM math", 4, 2, false, 2, false, true},
                              {"map3 8st g1 fix", 8, 2, false, 2, false, false, false, true, true, true, 1},
                              {"map3 8st g1 fix dyn", 8, 2, true, 2, false, false, false, true, true, true, 1},
                              {"map3 4st nomath", 4, 2, false, 2, true, false, false, true, true, true},
                              {"map3 4st fix", 4, 2, false, 2, false, false, false, true, true, true},
                              {"map3 4st fix dyn", 4, 2, true, 2, false, false, false, true, true, true}};
  for (const Variant& v : variants) {
    if (v.tmap) {
      LAB_CHECK(cudaFuncSetAttribute(tkernel_of(v), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     int(q4t_smem(v.stages, 14336, v.tgpw))));
      continue;
    }
    const std::size_t smem = q4s_smem(v.stages, v.gpw, 14336);
    LAB_CHECK(cudaFuncSetAttribute(kernel_of(v), cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  std::vector<CUtensorMap> maps_w(Q.size()), maps_s(Q.size()), maps_w3(Q.size()), maps_w31(Q.size()),
      maps_s1(Q.size());
  bool have3 = true;
  for (std::size_t i = 0; i < Q.size(); ++i) {
    const Shape& sh = kShapes[i % 4];
    maps_w[i] = encode(Q[i], sh.K / 8, sh.N, 256, CU_TENSOR_MAP_DATA_TYPE_UINT32);
    have3 = have3 && encode3(&maps_w3[i], Q[i], sh.K, sh.N) && encode3(&maps_w31[i], Q[i], sh.K, sh.N, 8);
    maps_s1[i] = encode(scales_of(int(i), sh), sh.K / 128, sh.N, 8, CU_TENSOR_MAP_DATA_TYPE_FLOAT32);
    maps_s[i] = encode(scales_of(int(i), sh), sh.K / 128, sh.N, 16, CU_TENSOR_MAP_DATA_TYPE_FLOAT32);
  }
  // Probes: launches probe_at[0..1] (weight indices) of the next graph record their stamps.
  unsigned long long* probe_buf;
  LAB_CHECK(cudaMalloc(&probe_buf, 2 * 2 * sms * 8 * sizeof(unsigned long long)));
  int probe_at[2] = {-1, -1};
  const auto probe_for = [&](int i) -> unsigned long long* {
    for (int k = 0; k < 2; ++k)
      if (probe_at[k] == i) return probe_buf + std::size_t(k) * 2 * sms * 8;
    return nullptr;
  };
  // One GEMV: -1 = q4mma (launch_qgemv), else a q4s variant; counter slot i.
  const auto gemv = [&](int var, int i, const Shape& sh, bf16* out, const bf16* x) {
    if (var < 0) {
      LAB_STATUS(launch_qgemv(out, DType::bf16, x, DType::bf16, Q[i], scales_of(i, sh), f, nullptr, 1, sh.N, sh.K, s));
      return;
    }
    const Variant& v = variants[var];
    if (v.tmap) {
      launch_dependent_smem(tkernel_of(v), dim3(sms * v.per_sm), dim3(kThreads), q4t_smem(v.stages, sh.K, v.tgpw), s,
                            out, x, sh.N, sh.K, v.dynamic ? counters + i : static_cast<int*>(nullptr), probe_for(i),
                            v.map3 ? (v.tgpw == 1 ? maps_w31[i] : maps_w3[i]) : maps_w[i],
                            v.tgpw == 1 ? maps_s1[i] : maps_s[i]);
      return;
    }
    launch_dependent_smem(kernel_of(v), dim3(sms * v.per_sm), dim3(kThreads), q4s_smem(v.stages, v.gpw, sh.K), s,
                          out, x,
                          static_cast<const std::uint8_t*>(Q[i]), scales_of(i, sh), sh.N, sh.K,
                          v.dynamic ? counters + i : static_cast<int*>(nullptr), probe_for(i));
  };
  const int n_var = int(sizeof(variants) / sizeof(variants[0]));

  // pixtral_q4stream_lab reps ncu VARIANT SHAPE: five eager launches of one variant (-1 = q4mma) on one shape, for
  // a profiler (ncu --launch-skip 2 --launch-count 1), then exit.
  if (argc > 4 && !std::strcmp(argv[2], "ncu")) {
    const int var = std::atoi(argv[3]), k = std::atoi(argv[4]);
    for (int r = 0; r < 5; ++r) {
      LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));
      gemv(var, (r % kLayers) * 4 + k, kShapes[k], b, a);
    }
    LAB_CHECK(cudaStreamSynchronize(s));
    return 0;
  }
  // Validation: each shape (layer 0's weights), q4s against q4mma on the same x.
  std::printf("\nvalidation (max |q4s - q4mma| / max |q4mma|, layer 0's weights):\n");
  for (int var = 0; var < n_var; ++var) {
    if (variants[var].map3 && !have3) continue;
    std::printf("  %-24s", variants[var].name);
    for (int k = 0; k < 4; ++k) {
      const Shape& sh = kShapes[k];
      gemv(-1, k, sh, ref, a);
      LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));
      gemv(var, k, sh, b, a);
      std::vector<std::uint16_t> hr(sh.N), hb(sh.N);
      LAB_CHECK(cudaMemcpyAsync(hr.data(), ref, sh.N * 2, cudaMemcpyDeviceToHost, s));
      LAB_CHECK(cudaMemcpyAsync(hb.data(), b, sh.N * 2, cudaMemcpyDeviceToHost, s));
      LAB_CHECK(cudaStreamSynchronize(s));
      double md = 0, mr = 0;
      for (int n = 0; n < sh.N; ++n) {
        md = std::max(md, double(std::fabs(bf16_to_f(hr[n]) - bf16_to_f(hb[n]))));
        mr = std::max(mr, double(std::fabs(bf16_to_f(hr[n]))));
      }
      std::printf("  %s %.2e", sh.name, md / mr);
    }
    std::printf("\n");
  }
  LAB_CHECK(cudaGetLastError());

  // The chain: QKV(a) -> b, wo(b) -> a, w13(a) -> b, w2(b) -> a, 40 layers in one graph.
  const auto time_graph = [&](auto&& enqueue) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));
    enqueue();
    LAB_CHECK(cudaStreamEndCapture(s, &graph));
    LAB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const float ms = median_ms(s, reps, [&] { LAB_CHECK(cudaGraphLaunch(exec, s)); });
    LAB_CHECK(cudaGraphExecDestroy(exec));
    LAB_CHECK(cudaGraphDestroy(graph));
    return ms;
  };
  const double floor_us = layer_bytes / copy_bw * 1e6;
  std::printf("\nchain of 40 layers (QKV, wo, w1+w3, w2): %.1f MB a layer, floor %.2f us a layer at the copy rate\n",
              layer_bytes / 1e6, floor_us);
  std::printf("%-24s %10s %8s", "kernel", "us/layer", "xfloor");
  for (const Shape& sh : kShapes) std::printf(" %12s", sh.name);
  std::printf("   (each shape alone: us a launch, 40 in a graph; xfloor)\n");
  for (int var = -1; var < n_var; ++var) {
    if (var >= 0 && variants[var].map3 && !have3) continue;
    const float ms = time_graph([&] {
      for (int l = 0; l < kLayers; ++l) {
        gemv(var, l * 4 + 0, kShapes[0], b, a);
        gemv(var, l * 4 + 1, kShapes[1], a, b);
        gemv(var, l * 4 + 2, kShapes[2], b, a);
        gemv(var, l * 4 + 3, kShapes[3], a, b);
      }
    });
    std::printf("%-24s %10.2f %8.3f", var < 0 ? "q4mma" : variants[var].name, ms * 1e3 / kLayers,
                ms * 1e3 / kLayers / floor_us);
    for (int k = 0; k < 4; ++k) {
      const Shape& sh = kShapes[k];
      const float ms1 = time_graph([&] {
        for (int l = 0; l < kLayers; ++l) gemv(var, l * 4 + k, sh, l % 2 ? a : b, l % 2 ? b : a);
      });
      const double fl = double(quantized_alloc_bytes(f, sh.N, sh.K)) / copy_bw * 1e6;
      std::printf(" %6.2f %5.2f", ms1 * 1e3 / kLayers, ms1 * 1e3 / kLayers / fl);
    }
    std::printf("\n");
  }
  LAB_CHECK(cudaGetLastError());

  // Timing study: launches 19 and 20 of a 40-launch chain of one shape, µs from launch 19's first block entry.
  std::printf("\nstamps (us from launch 19's first entry; median / max over blocks): entry, after wait, after "
              "prologue, first stage, done | producer: first ring issued, last issued\n");
  for (int var = 0; var < n_var; ++var) {
    const Variant& v = variants[var];
    if (!v.tmap || (v.map3 && !have3)) continue;
    for (int k : {1, 2}) {
      const Shape& sh = kShapes[k];
      probe_at[0] = 19 * 4 + k;
      probe_at[1] = 20 * 4 + k;
      LAB_CHECK(cudaMemsetAsync(probe_buf, 0, 2 * 2 * sms * 8 * sizeof(unsigned long long), s));
      time_graph([&] {
        for (int l = 0; l < kLayers; ++l) gemv(var, l * 4 + k, sh, l % 2 ? a : b, l % 2 ? b : a);
      });
      probe_at[0] = probe_at[1] = -1;
      const int nb = sms * v.per_sm;
      std::vector<unsigned long long> h(std::size_t(2) * 2 * sms * 8);
      LAB_CHECK(cudaMemcpy(h.data(), probe_buf, h.size() * 8, cudaMemcpyDeviceToHost));
      unsigned long long t0 = ~0ull;
      for (int b2 = 0; b2 < nb; ++b2) t0 = std::min(t0, h[b2 * 8 + 0]);
      std::printf("%-24s %-9s", v.name, sh.name);
      for (int L = 0; L < 2; ++L) {
        std::printf(" |");
        for (int st : {0, 1, 2, 3, 4, 6, 7}) {
          std::vector<double> xs2;
          for (int b2 = 0; b2 < nb; ++b2) xs2.push_back((double(h[(L * 2 * sms + b2) * 8 + st]) - double(t0)) / 1e3);
          std::sort(xs2.begin(), xs2.end());
          std::printf(" %.1f/%.1f", xs2[xs2.size() / 2], xs2.back());
        }
      }
      std::printf("\n");
    }
  }
  return 0;
}
