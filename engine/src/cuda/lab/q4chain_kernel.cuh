// SPDX-License-Identifier: Apache-2.0
// The q4stream lab's persistent chain (PERF_NOTES v18, "what is left"): the decoder layers' int4 GEMVs of a whole
// step in ONE cooperative kernel instead of one kernel each. Question: how much of the int4 decode's excess over
// its bytes is the kernel boundaries (each kernel's blocks can only take an SM once the previous kernel's leave it;
// the wait for a whole grid; the prologue; the tail), i.e. what a persistent decode kernel ("megakernel") would win.
//
// Each block runs q4tma's plain mode (kernels_q4tma.cu: one producer lane filling a ring of 16-row stages through 4-D
// tensor maps, 8 consumer warps multiplying with q4mma's arithmetic, a tile's 8 partial sums added in warp order by
// warp 0) over GEMV after GEMV: the tiles of GEMV i are tile = block + j · grid. The producer never waits for anything
// but a free ring slot, so it streams GEMV i + 1's weights while the consumers still work on GEMV i. The consumers of
// GEMV i + 1 wait until every tile of GEMV i is stored: warp 0 of a block, after storing a tile, adds 1 to done[i]
// (release); one thread a block spins on done[i] reaching GEMV i's tile count (acquire) and releases the consumer warps
// through a named barrier, which then copy their own groups of x from L2. Counters 128 bytes apart (done[32 i]): the
// blocks' polls and the finishing blocks' atomics do not share a line. All blocks must be resident at once: a
// cooperative launch. Each GEMV's output has q4mma's bits (the same arithmetic and order), which the lab checks against
// the per-kernel chain.
#pragma once

#include <cuda.h>  // CUtensorMap (types only)

#include <cstdint>

#include "cuda/q4_math.cuh"
#include "cuda/qtma_common.cuh"

namespace pixtral::cuda::q4chain_lab {

using qtma::kBarBytes;
using qtma::kThreads;
using qtma::kWarps;
using qtma::StageRing;

constexpr int kMaxGemvs = 160;                    // 40 layers × 4
constexpr int kCounterStride = 32;                // ints between two GEMVs' counters (128 bytes)
constexpr int kStages = 8;                        // 8 KB stages of 16 rows × 8 warps × 64 bytes
constexpr int kBoxBytes = 16 * kWarps * 64;
constexpr int kMaxK = 14336;
constexpr int kScaleSlot = 16 * (kMaxK / 128) * 4;  // a tile's scales, [16 rows][n_groups] fp32
constexpr int kRedBufs = 4;                          // tiles warps 1..7 may run ahead of warp 0's sums
constexpr int kRing = kBarBytes, kScales = kRing + kStages * kBoxBytes, kXs = kScales + 2 * kScaleSlot,
              kRed = kXs + kMaxK * 2, kSmem = kRed + kRedBufs * kWarps * 16 * 4;
static_assert(kSmem <= qtma::kMaxSmem, "two blocks an SM");

struct ChainGemv {
  int N, K;
  int in, out;  // buffer 0 or 1
};
// The step's GEMVs and their maps (the int4 4-D map of kernels_q4tma.cu's q4_map kind 0, the scales' kind 2), in
// constant memory: 320 maps do not fit the kernel's parameters.
__constant__ ChainGemv c_gemv[kMaxGemvs];
__constant__ CUtensorMap c_mw[kMaxGemvs];
__constant__ CUtensorMap c_ms[kMaxGemvs];

__device__ __forceinline__ int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// kProducerWaits: the producer too waits for every tile of GEMV i before streaming GEMV i + 1 — the kernel
// boundaries' order of bytes without their launches (how much of the gain is streaming across the boundaries).
template <bool kProducerWaits>
// done: kMaxGemvs · kCounterStride ints, zero at the launch.
__global__ void __launch_bounds__(kThreads, 2) q4chain_kernel(bf16* buf0, bf16* buf1, int n_gemv, int* done) {
  extern __shared__ __align__(1024) unsigned char smem[];
  std::uint64_t* bars = reinterpret_cast<std::uint64_t*>(smem);
  StageRing ring{bars, bars + kStages, kStages};
  StageRing sring{bars + 2 * kStages, bars + 2 * kStages + 2, 2};
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) {
    ring.init();
    sring.init();
    mbar_init_fence();
  }
  __syncthreads();
  if (warp == kWarps) {  // the producer: lane 0, through every GEMV without waiting on any
    if (lane != 0) return;
    for (int gi = 0; gi < n_gemv; ++gi) {
      const ChainGemv g = c_gemv[gi];
      const int n_groups = g.K / 128, gpw = n_groups / kWarps, n_tiles = (g.N + 15) / 16;
      if (gi + 1 < n_gemv) {  // the next GEMV's maps, ahead of its first copies
        prefetch_map(&c_mw[gi + 1]);
        prefetch_map(&c_ms[gi + 1]);
      }
      if (kProducerWaits && gi > 0)
        while (load_acquire(done + (gi - 1) * kCounterStride) < (c_gemv[gi - 1].N + 15) / 16) __nanosleep(64);
      for (int tile = int(blockIdx.x); tile < n_tiles; tile += int(gridDim.x)) {
        sring.wait_empty();
        const std::uint32_t sbar = sring.full_bar(), sdst = smem_addr(smem + kScales + sring.slot * kScaleSlot);
        mbar_expect_tx(sbar, std::uint32_t(16 * n_groups * 4));
        tma_load_2d(sdst, &c_ms[gi], sbar, 0, tile * 16);
        sring.next();
        for (int s = 0; s < gpw; ++s) {
          ring.wait_empty();
          const std::uint32_t bar = ring.full_bar(), dst = smem_addr(smem + kRing + ring.slot * kBoxBytes);
          mbar_expect_tx(bar, std::uint32_t(kBoxBytes));
          tma_load_4d(dst, &c_mw[gi], bar, 0, tile * 16, 0, s);
          ring.next();
        }
      }
    }
    return;
  }
  bf16* xs = reinterpret_cast<bf16*>(smem + kXs);
  float* red = reinterpret_cast<float*>(smem + kRed);
  const int g = lane >> 2, t = lane & 3;
  int jt = 0;  // tiles this block has done, over all GEMVs (the red buffers' rotation)
  for (int gi = 0; gi < n_gemv; ++gi) {
    const ChainGemv cg = c_gemv[gi];
    const int n_groups = cg.K / 128, gpw = n_groups / kWarps, n_tiles = (cg.N + 15) / 16;
    const bf16* x = cg.in ? buf1 : buf0;
    bf16* out = cg.out ? buf1 : buf0;
    if (gi > 0) {  // every tile of the GEMV before stored: one poller a block, the others on barrier 1
      if (threadIdx.x == 0) {
        const int need = (c_gemv[gi - 1].N + 15) / 16;
        while (load_acquire(done + (gi - 1) * kCounterStride) < need) __nanosleep(64);
      }
      __syncwarp();                // warp 0 converged again for bar.sync (aligned)
      named_sync(1, kWarps * 32);  // orders the other warps' loads after thread 0's acquire
    }
    {  // this warp's groups of x (warp, warp + 8, ...), from L2 (the other buffer's lines in L1 may be two GEMVs old)
      const int nc = gpw * 16;  // 16-byte chunks; chunk i of the warp's own = chunk 16 (warp + 8 (i / 16)) + i % 16
      const auto chunk = [&](int i) { return 16 * (warp + kWarps * (i / 16)) + i % 16; };
      const uint4* src = reinterpret_cast<const uint4*>(x);
      uint4* dst = reinterpret_cast<uint4*>(xs);
      uint4 v[7];  // gpw ≤ 14: ≤ 224 chunks, 7 a lane
#pragma unroll
      for (int b = 0; b < 7; ++b)
        if (b * 32 + lane < nc) v[b] = __ldcg(src + chunk(b * 32 + lane));
#pragma unroll
      for (int b = 0; b < 7; ++b)
        if (b * 32 + lane < nc) dst[chunk(b * 32 + lane)] = v[b];
      __syncwarp();
    }
    for (int tile = int(blockIdx.x); tile < n_tiles; tile += int(gridDim.x), ++jt) {
      const int n0 = tile * 16;
      sring.wait_full();
      const float* sc = reinterpret_cast<const float*>(smem + kScales + sring.slot * kScaleSlot);
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      for (int s = 0; s < gpw; ++s) {
        ring.wait_full();
        const unsigned char* st = smem + kRing + ring.slot * kBoxBytes + warp * 1024;
        const uint4 w0 = *reinterpret_cast<const uint4*>(st + g * 64 + 16 * t);
        const uint4 w1 = *reinterpret_cast<const uint4*>(st + (g + 8) * 64 + 16 * t);
        __syncwarp();
        ring.release(lane);
        ring.next();
        const int G = s * kWarps + warp;
        uint4 xv[4];
        const float cr = q4_x_group(xs, G, t, lane, xv);
        const float corr[2] = {cr, cr};
        q4_group_mma(w0, w1, xv, sc[g * n_groups + G], sc[(g + 8) * n_groups + G], corr, acc);
      }
      __syncwarp();
      sring.release(lane);
      sring.next();
      const int b = jt % kRedBufs;
      float* rb = red + b * kWarps * 16;
      if (t == 0) {
        rb[warp * 16 + g] = acc[0];
        rb[warp * 16 + g + 8] = acc[2];
      }
      if (warp != 0) {
        named_arrive(2 + b, kWarps * 32);
      } else {
        named_sync(2 + b, kWarps * 32);
        if (lane < 16 && n0 + lane < cg.N) {
          float sum = rb[lane];
#pragma unroll
          for (int w = 1; w < kWarps; ++w) sum += rb[w * 16 + lane];
          out[n0 + lane] = __float2bfloat16_rn(sum);
        }
        __syncwarp();
        if (lane == 0) {
          __threadfence();  // the tile's stores (ordered before by the __syncwarp) before the count
          atomicAdd(done + gi * kCounterStride, 1);
        }
      }
    }
  }
}

}  // namespace pixtral::cuda::q4chain_lab
