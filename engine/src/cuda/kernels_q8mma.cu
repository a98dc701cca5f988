// SPDX-License-Identifier: Apache-2.0
// The int8 × bf16 decode GEMV on the tensor cores (issue 6): launch_q8mma, called by kernels_quant.cu's GEMV
// dispatch for int8 weights (per-output-channel scales) with one bf16 row of x (plain / silu / rope modes).
// Formats in core/quant.h.
//
// Why: the scalar int8 kernel (qgemv_kernel) spends ~4.4 instructions a weight (byte → float by PRMT + FADD, bf16 x
// → float, FFMA). ncu on an H200 (page-QA decode): 0.52-0.65 warps issued per scheduler and cycle at 35-68 % of DRAM
// bandwidth — it would need more issue slots than the SMs have to stream at the copy rate. Here 16 rows × 16 k of W
// are one mma.sync.m16n8k16 A tile in f16: per 4 weights of a row one XOR, two PRMTs (bytes into the 0x64 magic
// exponent: f16 1024 + 128 + v) and two f16x2 subtractions of 1152 give the exact values v in -128..127.
//
// x in f16, exactly: x is bf16 (8 significant bits); each 64-wide chunk of it is scaled by a power of two 2^s
// that puts the chunk's largest magnitude in [2^14, 2^15) and rounded to f16 (11 significant bits, normal down to
// 2^-14): every value within 2^28 of the chunk's largest is exact, smaller ones (whose products are below the
// fp32 accumulation's own rounding) keep f16-subnormal precision. The chunk's MMA results are multiplied by 2^-s
// (exact) before they enter the fp32 accumulator. Inf/NaN in x propagate (s is clamped, never overflows).
//
// Block = 16 work items (the MMA's M) × all of K; its 8 warps split K's 64-wide chunks into contiguous ranges.
// Lane = 4g + t. For tile r (R = 1 plain, 2 silu/rope) the A rows g and g + 8 are W rows gemv_item_rows(n0 + g)[r]
// and gemv_item_rows(n0 + g + 8)[r]; thread t reads the 16 bytes 16t..16t+15 of a row's 64-byte chunk (the 4
// threads of a row read it whole) through a cp.async ring in shared memory (kRing chunks in flight, the first
// before griddepcontrol.wait: W is immutable). Its word w holds k = 64C + 16t + 4w + b (b = 0..3); k-step w takes
//   A reg0 = row g (b0, b1) [k' 2t, 2t+1]   reg2 = row g (b2, b3) [k' 2t+8, 2t+9]   (reg1 / reg3: row g + 8)
//   B b0 = (x[k0], x[k0 + 1]), b1 = (x[k0 + 2], x[k0 + 3]), k0 = 64C + 16t + 4w, column g (only column 0 = the one
//   x row is read; the other columns see the same values and are ignored).
// Lane L converts x[64C + 2L], x[64C + 2L + 1] into an f16x2 and the B fragments are shuffled from lanes 8t + 2w
// and 8t + 2w + 1. Per chunk two chains of two MMAs (k-steps 0, 2 and 1, 3) into fresh accumulators, then
// acc += D · 2^-s. The warps' sums meet in shared memory and are added in warp order; × the row's scale at the end
// (as the scalar kernel): deterministic, and a row's bits do not depend on its place in the tile or on the mode (the
// fused silu/rope modes keep the bits of the plain matmul + epilogue).
// ref: kernels_q4mma.cu (the int4 twin), PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type",
//      FasterTransformer / Marlin's 0x64 f16 magic-number dequantization.
#include <cuda_fp16.h>

#include <cstdlib>

#include "cuda/gemv_modes.cuh"
#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kItems = 16;  // work items per block: the MMA's M
constexpr int kWarps = 8;   // warps a block, splitting K's chunks
constexpr int kChunk = 64;  // k per chunk: 16 bytes a thread, 4 threads a row
// Chunks a thread keeps in flight in the ring: 4 for one row pair (R = 1: 128 bytes of W a thread, 32 KB a block),
// 3 for two (48 KB); with x staged (up to 29 KB at K = 14336) 3 blocks (24 warps) fit an SM.

// Opt-in (PIXTRAL_CUDA_INT8_MMA=1): slower than the scalar kernel on an H200 (see PERF_NOTES, v8). Read per launch.
bool int8_mma_enabled() {
  const char* e = std::getenv("PIXTRAL_CUDA_INT8_MMA");
  return e && e[0] == '1';
}

constexpr int kXBatch = 16;  // x chunks loaded at once in the prologue (28 a warp at K = 14336: two round trips)
constexpr int kMaxK = 32768;  // x staged in shared memory: 66 KB at most
constexpr int ring_chunks(int R) { return R == 1 ? 4 : 3; }
/// Dynamic shared memory: the ring, then x of all K/64 chunks as f16 (128 bytes each) and their 2^-s factors.
template <int R>
constexpr std::size_t q8mma_smem_bytes(int K) {
  return std::size_t(ring_chunks(R)) * R * 2 * kWarps * 32 * 16 + std::size_t(K / kChunk) * (128 + 4);
}

__device__ __forceinline__ std::uint32_t load_x_pair(const bf16* p) {
  std::uint32_t r;  // not .nc: under PDL the previous kernel wrote x during this kernel's lifetime
  asm volatile("ld.global.u32 %0, [%1];" : "=r"(r) : "l"(p));
  return r;
}

// d += A · B, m16n8k16, f16 × f16 → f32.
__device__ __forceinline__ void mma_f16_16816(float d[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                              std::uint32_t a3, std::uint32_t b0, std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  __trap();  // launched only on sm_80+ builds
#endif
}

// Two signed bytes of ux = u ^ 0x80808080 (selector 0x4140: bytes 0, 1; 0x4342: bytes 2, 3) as an exact f16x2.
__device__ __forceinline__ std::uint32_t int8_pair_f16(std::uint32_t ux, unsigned sel) {
  const std::uint32_t biased = __byte_perm(ux, 0x64646464u, sel);  // f16 1024 + (v + 128)
  const __half2 h = __hsub2(*reinterpret_cast<const __half2*>(&biased),
                            __half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480)));  // − 1152
  return *reinterpret_cast<const std::uint32_t*>(&h);
}

template <class TO, GemvMode M>
__global__ void __launch_bounds__(kWarps * 32, 3)
q8mma_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const std::uint8_t* __restrict__ q,
             const float* __restrict__ scales, const bf16* __restrict__ bias, int N, int n_items, int K,
             RopeAppendArgs ra) {
  constexpr int R = gemv_rows_per_item(M);
  constexpr int S = ring_chunks(R);
  __shared__ float red[kWarps][R][kItems];
  extern __shared__ __align__(16) unsigned char q8_ring[];
  uint4* ring = reinterpret_cast<uint4*>(q8_ring);
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * kItems;
  const uint4* wp[R][2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    int rows[2];
    gemv_item_rows<M>(min(n0 + g + 8 * h, n_items - 1), N, ra, rows);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      wp[r][h] = reinterpret_cast<const uint4*>(q + std::int64_t(rows[r]) * K) + t;
    }
  }
  const int n_chunks = K / kChunk;
  const int c_lo = warp * n_chunks / kWarps, my_chunks = (warp + 1) * n_chunks / kWarps - c_lo;  // warp-uniform
  const auto slot_of = [&](int sl, int r, int h) { return ((sl * R + r) * 2 + h) * kWarps * 32 + int(threadIdx.x); };
  const auto issue = [&](int C, int sl) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) cp_async16(smem_addr(ring + slot_of(sl, r, h)), wp[r][h] + 4 * C, true);
  };
#pragma unroll
  for (int j = 0; j < S; ++j) {  // W is immutable: the first S chunks before waiting
    if (j < my_chunks) issue(c_lo + j, j);
    cp_async_commit();
  }
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  // This warp's chunks of x, converted once into shared memory before its main loop (no x latency inside it):
  // lane L converts elements 2L, 2L + 1 of a chunk; kXBatch chunks' loads in flight at a time.
  __half2* xs = reinterpret_cast<__half2*>(ring + S * R * 2 * kWarps * 32);  // [n_chunks][32]
  float* downs = reinterpret_cast<float*>(xs + std::size_t(n_chunks) * 32);   // [n_chunks]
  for (int j0 = 0; j0 < my_chunks; j0 += kXBatch) {
    std::uint32_t xb[kXBatch];
#pragma unroll
    for (int j = 0; j < kXBatch; ++j)
      xb[j] = j0 + j < my_chunks ? load_x_pair(x + std::int64_t(c_lo + j0 + j) * kChunk + 2 * lane) : 0u;
#pragma unroll
    for (int j = 0; j < kXBatch; ++j) {
      if (j0 + j >= my_chunks) break;  // warp-uniform
      const float x0 = __uint_as_float(xb[j] << 16), x1 = __uint_as_float(xb[j] & 0xffff0000u);
      float m = fmaxf(fabsf(x0), fabsf(x1));
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      // 2^s puts m in [2^14, 2^15): s = 14 − (E − 127); clamped so that 2^s and 2^-s are normal floats.
      const int e_biased = int((__float_as_uint(m) >> 23) & 0xffu);
      const int sc = max(-120, min(120, 141 - e_biased));
      const float up = __uint_as_float(std::uint32_t(127 + sc) << 23);
      xs[std::size_t(c_lo + j0 + j) * 32 + lane] = __floats2half2_rn(x0 * up, x1 * up);
      if (lane == 0) downs[c_lo + j0 + j] = __uint_as_float(std::uint32_t(127 - sc) << 23);
    }
  }
  __syncwarp();
  float acc[R][2];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = 0.f;
  int sl = 0;
  for (int i = 0; i < my_chunks; ++i) {
    const int C = c_lo + i;
    // B fragments: elements 16t .. 16t + 15 of the chunk (k-step w: b0 = 16t + 4w, +1; b1 = 16t + 4w + 2, +3).
    const uint4* xq = reinterpret_cast<const uint4*>(xs + std::size_t(C) * 32 + 8 * t);
    const uint4 xa = xq[0], xc = xq[1];
    const std::uint32_t b0[4] = {xa.x, xa.z, xc.x, xc.z}, b1[4] = {xa.y, xa.w, xc.y, xc.w};
    const float down = downs[C];
    cp_async_wait<S - 1>();  // chunk i's copies (this thread's own: no barrier needed) have landed
    uint4 wv[R][2];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) wv[r][h] = ring[slot_of(sl, r, h)];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float d[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const std::uint32_t u0 = (&wv[r][0].x)[w] ^ 0x80808080u, u1 = (&wv[r][1].x)[w] ^ 0x80808080u;
        mma_f16_16816(d[w & 1], int8_pair_f16(u0, 0x4140u), int8_pair_f16(u1, 0x4140u), int8_pair_f16(u0, 0x4342u),
                      int8_pair_f16(u1, 0x4342u), b0[w], b1[w]);
      }
      // Column 0 (the x row): d[.][0] = row g, d[.][2] = row g + 8.
      acc[r][0] = fmaf(d[0][0], down, acc[r][0]);
      acc[r][0] = fmaf(d[1][0], down, acc[r][0]);
      acc[r][1] = fmaf(d[0][2], down, acc[r][1]);
      acc[r][1] = fmaf(d[1][2], down, acc[r][1]);
    }
    // Refill the slot only after the MMAs consumed it (PTX does not order an ld.shared before a later cp.async to
    // the same address by the same thread; the data dependence through wv does).
    if (i + S < my_chunks) issue(C + S, sl);
    cp_async_commit();
    sl = sl + 1 == S ? 0 : sl + 1;
  }
  if (t == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      red[warp][r][g] = acc[r][0];
      red[warp][r][g + 8] = acc[r][1];
    }
  }
  __syncthreads();
  const int item = threadIdx.x;
  if (item < kItems && n0 + item < n_items) {
    int rows[2];
    gemv_item_rows<M>(n0 + item, N, ra, rows);
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float sum = red[0][r][item];
#pragma unroll
      for (int ww = 1; ww < kWarps; ++ww) sum += red[ww][r][item];
      v[r] = sum * scales[rows[r]];
    }
    gemv_item_store<M>(out, 0, n0 + item, N, v, bias, ra);
  }
}

// Once per kernel and device: the shared-memory opt-in, and whether 2 or more blocks fit an SM.
// The opt-in is set once to the largest size (kMaxK): a smaller later value would make larger launches fail.
template <class TO, GemvMode M>
bool q8mma_fits(std::size_t smem) {
  auto kernel = q8mma_kernel<TO, M>;
  constexpr std::size_t max_smem = q8mma_smem_bytes<gemv_rows_per_item(M)>(kMaxK);
  const bool opted = per_device_once(reinterpret_cast<const void*>(kernel), -1L, [&] {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(max_smem)) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return true;
  });
  if (!opted) return false;
  return per_device_once(reinterpret_cast<const void*>(kernel), long(smem), [&] {
    int blocks = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kWarps * 32, smem) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return blocks >= 2;
  });
}

template <class TO, GemvMode M>
Status launch_typed(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                    int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  const std::size_t smem = q8mma_smem_bytes<gemv_rows_per_item(M)>(K);
  if (!q8mma_fits<TO, M>(smem)) return {};
  const dim3 grid{unsigned(ceil_div(items, kItems))};
  launch_dependent_smem(q8mma_kernel<TO, M>, grid, dim3{kWarps * 32}, smem, s, out, x, q, scales, bias, N, items, K,
                        ra);
  PIXTRAL_CUDA_LAUNCH_CHECK(q8mma_kernel);
  *launched = true;
  return {};
}

template <class TO>
Status launch_mode(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                   int items, int K, GemvMode mode, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  switch (mode) {
    case GemvMode::plain: return launch_typed<TO, GemvMode::plain>(out, x, q, scales, bias, N, items, K, ra, s, launched);
    case GemvMode::silu: return launch_typed<TO, GemvMode::silu>(out, x, q, scales, bias, N, items, K, ra, s, launched);
    default: return launch_typed<TO, GemvMode::rope>(out, x, q, scales, bias, N, items, K, ra, s, launched);
  }
}

}  // namespace

Status launch_q8mma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched) {
  *launched = false;
  if (!int8_mma_enabled() || T != 1 || K % kChunk != 0 || K > kMaxK || items <= 0) return {};
  if ((reinterpret_cast<std::uintptr_t>(x) & 3) != 0) return {};
  if (out_t == DType::f32)
    return launch_mode(static_cast<float*>(out), x, q, scales, bias, N, items, K, mode, ra, s, launched);
  if (out_t == DType::bf16)
    return launch_mode(static_cast<bf16*>(out), x, q, scales, bias, N, items, K, mode, ra, s, launched);
  return {};
}

}  // namespace pixtral::cuda
