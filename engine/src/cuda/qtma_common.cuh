// SPDX-License-Identifier: Apache-2.0
// What the one-row quantized GEMVs streamed by the Tensor Memory Accelerator share (kernels_q4tma.cu: int4, the
// decode's kernel on sm_90; kernels_q8tma.cu: the int8 twin, opt-in; issue 6, PERF_NOTES v17): the block shape (8
// consumer warps + 1 producer warp, a persistent grid of 2–4 blocks an SM), a tile's rows per GEMV mode, the
// consumers' copy of x, the mbarrier ring of stages, the switches, the tensor-map cache and the launch checks.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda/gemv_modes.cuh"
#include "cuda/kernels.cuh"
#include "cuda/ring_pos.h"
#include "cuda/tma.cuh"

namespace pixtral::cuda::qtma {

inline constexpr int kWarps = 8;                    // consumer warps (q4mma's kMmaWarps: the same group ranges)
inline constexpr int kThreads = (kWarps + 1) * 32;  // + the producer warp (its lane 0 issues every copy)
inline constexpr int kBarBytes = 1024;              // the barriers' corner at the start of shared memory
inline constexpr int kMaxSmem = 110 * 1024;         // two blocks an SM (228 KB, 1 KB reserved a block)
inline constexpr int kSmem3 = 74 * 1024;            // three blocks an SM

// Where the rows of the tile of items n0.. lie: row_a (and row_b for an R = 2 tile split in two boxes), or rows 2n,
// 2n + 1 of its items in one box of pairs (inter). gemv_item_rows' mapping, per tile (any tile ≤ half a head).
struct TilePlan {
  int row_a, row_b;
  bool inter;
};
template <GemvMode M>
__device__ __forceinline__ TilePlan tile_plan(int n0, int N, const RopeAppendArgs& ra) {
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

/// The weight's rows for a launch in mode M (its tensor maps' extent: rows past it read as zeros).
template <GemvMode M>
std::int64_t weight_rows(int N, const RopeAppendArgs& ra) {
  if constexpr (M == GemvMode::silu) return 2 * std::int64_t(N);
  if constexpr (M == GemvMode::rope) return std::int64_t(ra.nh + 2 * ra.nkv) * ra.hd;
  return N;
}

// What stage_x stores for each 16-byte chunk of x by default: the chunk as it is (natural order).
struct XAsIs {
  __device__ uint4 operator()(const uint4& v) const { return v; }
};

// The consumers' copy of x (K bf16) into shared memory, each 16-byte chunk stored as `chunk` makes it (default: as
// it is; q4tma stores the MMAs' B registers): every load first (one round trip for K ≤ 16384), then the stores. The
// caller syncs the consumers after it.
template <class Chunk = XAsIs>
__device__ __forceinline__ void stage_x(bf16* xs, const bf16* x, int K, int tid, Chunk chunk = {}) {
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
      if (c < n_chunks) reinterpret_cast<uint4*>(xs)[c] = chunk(v[b]);
    }
  }
}

// A ring of S stages in shared memory, each guarded by a "full" mbarrier (the producer's arrive.expect_tx, the TMA's
// bytes) and an "empty" one (an arrival from lane 0 of each consumer warp), and one side's place in it (RingPos:
// the slot, and the phase each use of it completes).
struct StageRing : RingPos {
  std::uint32_t full, empty;  // shared-space addresses of the barrier arrays (8 bytes a barrier)
  __device__ StageRing(const std::uint64_t* full_bars, const std::uint64_t* empty_bars, int stages)
      : RingPos(stages), full(smem_addr(full_bars)), empty(smem_addr(empty_bars)) {}
  __device__ void init() const {  // thread 0, then mbar_init_fence and a block barrier
    for (int i = 0; i < S; ++i) {
      mbar_init(full + 8 * i, 1);
      mbar_init(empty + 8 * i, kWarps);
    }
  }
  __device__ std::uint32_t full_bar() const { return full + 8 * slot; }
  /// Producer: the slot's previous use has been released (nothing to wait for on the ring's first pass).
  __device__ void wait_empty() const {
    if (lapped()) mbar_wait(empty + 8 * slot, prev_phase());
  }
  /// Consumers: this use of the slot has landed.
  __device__ void wait_full() const { mbar_wait(full + 8 * slot, phase()); }
  /// Consumers: the warp is done reading the slot (after a __syncwarp).
  __device__ void release(int lane) const {
    if (lane == 0) mbar_arrive(empty + 8 * slot);
  }
};

// PIXTRAL_CUDA_Q4TMA=0 sends the one-row int4 GEMVs to q4mma (A/B). The int8 kernel is opt-in: PIXTRAL_CUDA_Q8TMA=1,
// or 3 / 4 for that many blocks an SM instead of 2 (H200 int8 decode, same run: the scalar kernel 3.88 ms/token, this
// one 4.21 / 4.15 / 4.24 at 2 / 3 / 4 blocks an SM — not the occupancy, then; kept, tested, for the work on it).
// =require makes a one-row GEMV that cannot run here an error instead (tst_quant_cuda: the bits it compares with the
// other kernel's are this one's). Read at every launch (a decode graph launches nothing: the capture read it).
enum class TmaSwitch { off, on, require };
inline constexpr const char* kQ4Env = "PIXTRAL_CUDA_Q4TMA";
inline constexpr const char* kQ8Env = "PIXTRAL_CUDA_Q8TMA";
TmaSwitch tma_switch(const char* env);
/// Not launched, for the reason given: the other kernel runs instead, or, under <env>=require, an error.
Status not_here(const char* env, const char* why);

/// A tiled tensor map's description (4-byte elements; unused dimensions 0).
struct MapSpec {
  const void* base = nullptr;
  CUtensorMapDataType dtype = CU_TENSOR_MAP_DATA_TYPE_UINT32;
  int rank = 0;
  cuuint64_t dims[5] = {};
  cuuint64_t strides[4] = {};  // bytes, dimensions 1..rank-1
  cuuint32_t box[5] = {};
  CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_NONE;
  bool cache = true;  // false: encoded every time, never kept (a shape that changes every call: the KV caches' rows)
};
/// A spec from its parts (dims and box of the same length ≤ 5, one stride fewer, in bytes).
MapSpec make_map(const void* base, CUtensorMapDataType dtype, std::initializer_list<cuuint64_t> dims,
                 std::initializer_list<cuuint64_t> strides, std::initializer_list<cuuint32_t> box);
/// The map of `spec` (its swizzle, no interleave, zeros out of bounds). Maps are pure functions of their spec and are
/// cached, so eager launches encode nothing after the first (a captured graph keeps the kernel's copies); a freed
/// weight's address reused by another of the same shape maps identically, so entries never go stale. False: no
/// encoder in the driver, or the driver refused the spec.
bool encode_map(CUtensorMap* m, const MapSpec& spec);

/// SMs of the current device (0 where it cannot be read).
int sm_count();

/// Once per kernel and device: whether the kernel's image is sm_90+ code compiled from sm_90+ source (TMA; see
/// kernels.cuh's sm90_image), and the shared-memory opt-in at
/// kMaxSmem (one value a kernel: every launch's layout stays below it, and one block of it fits an sm_90 SM).
template <class Kernel>
bool tma_ready(Kernel kernel) {
  return per_device_once(reinterpret_cast<const void*>(kernel), long(kMaxSmem), [&] {
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess || fa.binaryVersion < 90 || fa.ptxVersion < 90 ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmem) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return true;
  });
}

/// Whether `want` blocks of `smem` bytes fit an SM (registers allowing).
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

/// f(std::integral_constant<GemvMode, mode>{}): a launch templated on the mode, for the runtime mode.
template <class F>
Status dispatch_mode(GemvMode mode, F&& f) {
  switch (mode) {
    case GemvMode::plain: return f(std::integral_constant<GemvMode, GemvMode::plain>{});
    case GemvMode::silu: return f(std::integral_constant<GemvMode, GemvMode::silu>{});
    case GemvMode::residual: return f(std::integral_constant<GemvMode, GemvMode::residual>{});
    default: return f(std::integral_constant<GemvMode, GemvMode::rope>{});
  }
}

}  // namespace pixtral::cuda::qtma
