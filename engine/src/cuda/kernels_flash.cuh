// SPDX-License-Identifier: Apache-2.0
// Shared by the tensor-core prefill kernels (kernels_flash.cu: v1, 64 query rows a block, Q in registers;
// kernels_flash3.cu: v3, 128 query rows a block, two m16 tiles a warp, a lean softmax; kernels_flash4.cu: v4, wgmma
// on sm_90a; kernels_flash5.cu: v5, wgmma with TMA and warp specialization): launch parameters, the per-row key
// ranges, the swizzled cp.async tile copy, the paired output store.
// Private to libpixtral_cuda.so. (v2 — v3's tiling with v1's softmax — was superseded by v3 and removed.)
// ref: FlashAttention-2 (Dao 2023); flash-attention csrc/flash_attn/src/flash_fwd_kernel.h.
#pragma once

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>

#include "cuda/kernels.cuh"
#include "cuda/mma.cuh"

namespace pixtral::cuda::flash {

constexpr float kLog2e = 1.4426950408889634f;

struct FlashParams {
  void* out;
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const int2* key_range;  // [n_q] or null with dev_state
  const int* dev_state;   // decode state (kDecodeStatePosition = first row's position) or null
  int n_q, H, Hkv, n_qblocks;
  float scale_log2;  // scale · log2(e): the softmax runs in base 2
};

inline FlashParams make_params(const AttentionLaunch& a, int rows_per_block) {
  FlashParams p;
  p.out = a.out;
  p.q = static_cast<const bf16*>(a.q);
  p.k = static_cast<const bf16*>(a.k);
  p.v = static_cast<const bf16*>(a.v);
  p.key_range = a.key_range;
  p.dev_state = a.dev_state;
  p.n_q = int(a.n_q);
  p.H = a.n_heads;
  p.Hkv = a.n_kv_heads;
  p.n_qblocks = ceil_div(a.n_q, rows_per_block);
  p.scale_log2 = a.scale * kLog2e;
  return p;
}

/// Keys [x, y) query row `row` (of the launch) may see.
__device__ __forceinline__ int2 row_range(const FlashParams& p, int row) {
  if (p.dev_state) return make_int2(0, p.dev_state[kDecodeStatePosition] + row + 1);
  return p.key_range[row];
}

/// Where a block of kRows query rows of head h works: its KV head, first row r0 and row count nr (the last block
/// may be partial), the row strides and the global pointers to its Q rows and its KV head's K and V.
struct BlockRows {
  int kvh, r0, nr;
  std::int64_t q_stride, kv_stride;
  const bf16 *qg, *kg, *vg;
};
template <int D, int kRows>
__device__ __forceinline__ BlockRows block_rows(const FlashParams& p, int h, int qb) {
  BlockRows b;
  b.kvh = h / (p.H / p.Hkv);
  b.r0 = qb * kRows;
  b.nr = min(kRows, p.n_q - b.r0);
  b.q_stride = std::int64_t(p.H) * D;
  b.kv_stride = std::int64_t(p.Hkv) * D;
  b.qg = p.q + std::int64_t(b.r0) * b.q_stride + std::int64_t(h) * D;
  b.kg = p.k + std::int64_t(b.kvh) * D;
  b.vg = p.v + std::int64_t(b.kvh) * D;
  return b;
}

/// The key ranges of a 128-row block's rows: thread tid (< 128) owns block row tid — its range [x, y) into s_rng[tid]
/// (rows past nr get an empty range that widens nothing) — and lane 0 of each warp writes the union [lo, hi) and the
/// intersection [maxlo, minhi) of its 32 rows' ranges to s_wrng[warp] as (lo, hi, maxlo, minhi).
__device__ __forceinline__ void block_row_ranges(const FlashParams& p, int r0, int nr, int tid, int2* s_rng,
                                                 int4* s_wrng) {
  const bool valid = tid < nr;
  const int2 rr = valid ? row_range(p, r0 + tid) : make_int2(INT_MAX, INT_MIN);
  s_rng[tid] = rr;
  int lo = valid ? rr.x : INT_MAX, hi = valid ? rr.y : INT_MIN;
  int maxlo = valid ? rr.x : INT_MIN, minhi = valid ? rr.y : INT_MAX;
#pragma unroll
  for (int o_ = 16; o_ > 0; o_ >>= 1) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o_));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o_));
    maxlo = max(maxlo, __shfl_xor_sync(0xffffffffu, maxlo, o_));
    minhi = min(minhi, __shfl_xor_sync(0xffffffffu, minhi, o_));
  }
  if ((tid & 31) == 0) s_wrng[tid >> 5] = make_int4(lo, hi, maxlo, minhi);
}

/// Copies rows [row0, row0 + kRows) of a [*, stride] bf16 matrix (D columns from `base`) into a swizzled tile
/// (swz<D>) with kThreads threads; rows at or past row_end are zero-filled and never read.
template <int D, int kRows, int kThreads>
__device__ __forceinline__ void load_tile(std::uint32_t tile, const bf16* base, std::int64_t stride, int row0,
                                          int row_end, int tid) {
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int i = tid; i < kRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int row = row0 + r;
    const bool valid = row < row_end;
    const bf16* src = valid ? base + std::int64_t(row) * stride + c * 8 : base;
    cp_async16(tile + swz<D>(r, c), src, valid);
  }
}

/// Two adjacent output elements (8-byte aligned for f32, 4-byte for bf16), rounded as from_f32.
__device__ __forceinline__ void store2(float* d, float a, float b) {
  *reinterpret_cast<float2*>(d) = make_float2(a, b);
}
__device__ __forceinline__ void store2(bf16* d, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(d) = __floats2bfloat162_rn(a, b);
}

/// Whether the current device has compute capability 9.0 and runs the sm_90a image of `kernel` (a file built with
/// PIXTRAL_CUDA_SM90A gives its other images a static shared-memory marker word) and `accept` takes the loaded
/// image's attributes. Remembered per device (up to 64) in `known` (0 unknown, 1 yes, -1 no).
template <class Accept>
bool device_runs_sm90a_image(const void* kernel, std::atomic<signed char> (&known)[64], Accept accept) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    (void)cudaGetLastError();
    return false;
  }
  if (const signed char k = known[dev].load(std::memory_order_relaxed); k != 0) return k > 0;
  bool ok = false;
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    (void)cudaGetLastError();  // ours: not left for the next launch check
  } else if (major == 9 && minor == 0) {
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, kernel) == cudaSuccess)
      ok = fa.sharedSizeBytes == 0 && accept(fa);
    else
      (void)cudaGetLastError();
  }
  known[dev].store(ok ? 1 : -1, std::memory_order_relaxed);
  return ok;
}

/// The end of a v4/v5 consumer warpgroup: its O rows (wgmma m64nD accumulator layout: the thread's rows row_a and
/// row_a + 8, column pairs 2·t4 + 8j) divided by their softmax sums — summed over the quad here; a row that saw no
/// key gives 0 — and stored; block rows ≥ nr are not stored. `out` points at the block's first row of this head.
template <int kO, class TO>
__device__ __forceinline__ void store_o_rows(TO* out, std::int64_t q_stride, int row_a, int t4, int nr, float (&l)[2],
                                             const float (&o)[kO]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int o_ = 1; o_ <= 2; o_ <<= 1) l[i] += __shfl_xor_sync(0xffffffffu, l[i], o_);
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    const int row = row_a + 8 * i;
    if (row < nr) {
      TO* dst = out + std::int64_t(row) * q_stride + 2 * t4;
#pragma unroll
      for (int j = 0; j < kO / 4; ++j) store2(dst + j * 8, o[4 * j + 2 * i] * inv, o[4 * j + 2 * i + 1] * inv);
    }
  }
}

/// v3, v4 and v5 mask with −inf before the scale is applied (one FFMA per score): a scale ≤ 0 or not finite would
/// give NaN (−inf · 0) or a wrong maximum; such launches take v1.
inline bool scale_folds(const AttentionLaunch& a) { return a.scale > 0.f && a.scale < INFINITY; }

/// v3 (kernels_flash3.cu): whether it can run `a` (on top of flash_attention_supported: its block's shared memory
/// fits, 8-byte aligned output, grid limits) and the launch; `config` is the PIXTRAL_CUDA_FLASH suffix after '3'
/// ('\0' the default; 'e', 'm': the A/B configurations listed in kernels_flash3.cu).
bool flash3_supported(const AttentionLaunch& a);
Status launch_flash3(const AttentionLaunch& a, char config, cudaStream_t s);

/// v4 (kernels_flash4.cu): 128 rows a block on Hopper's warpgroup MMA (wgmma); supported only where the device is
/// compute capability 9.0 and runs the file's sm_90a image (built when 90 is among CMAKE_CUDA_ARCHITECTURES).
/// `config`: the PIXTRAL_CUDA_FLASH suffix after '4' ('\0' the default, 's' P·V in 64-column halves at head_dim 128).
bool flash4_supported(const AttentionLaunch& a);
Status launch_flash4(const AttentionLaunch& a, char config, cudaStream_t s);

/// v5 (kernels_flash5.cu): v4's semantics in the FlashAttention-3 design (TMA loads by a producer warpgroup into an
/// mbarrier ring, setmaxnreg, 128-key tiles, S_{t+1} on the tensor cores during the softmax of S_t); per-row key
/// ranges only (no device decode state); same device requirement as v4. `config`: the PIXTRAL_CUDA_FLASH suffix
/// after '5' ('\0' the default, 'p' ping-pong between the consumer warpgroups, 'n' 64-key tiles).
bool flash5_supported(const AttentionLaunch& a);
Status launch_flash5(const AttentionLaunch& a, char config, cudaStream_t s);

}  // namespace pixtral::cuda::flash
