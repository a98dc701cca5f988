// SPDX-License-Identifier: Apache-2.0
// Weight-only int8 / int4 weights on the GPU (issue 6; formats in core/quant.h):
//  * quantize during upload: the bf16 weight is uploaded in row chunks into a scratch buffer and quantized there
//    (one block per int8 row, one warp per int4 group of 128) with the reference's exact operations (fp32 absmax,
//    IEEE division, rint), so the GPU's bytes equal quant::quantize_rows';
//  * batch-1 GEMV (T ≤ 4): one warp per output row, 16-byte streaming loads of packed values (16 int8 or 32 int4),
//    dequantized in registers with magic-number conversions (int8_byte, int4_word_scaled: LOP/PRMT + FADD instead
//    of the 16/clock I2F unit), fp32 accumulation, one fixed shuffle tree: deterministic; int4 with bf16 x instead
//    on the tensor cores (q4mma_kernel: mma.sync m16n8k16, 16 rows a block, fixed-order reduction);
//  * T > 4 (prefill): W dequantized to bf16 a tile of 256-row blocks at a time (~32 Mi values) into scratch
//    (16-byte stores, magic-number int→float conversion: no I2F) and multiplied by cuBLAS into the matching
//    output columns (ldc = N). A fused tensor-core kernel would avoid the round trip.
// Also the CudaBackend members for quantized weights (upload, matmul dispatch).
// ref: llama.cpp ggml-cuda/mmvq.cu (quantized matrix-vector), kernels_gemv.cu here (the bf16 twin).
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "cuda/cuda_backend.h"
#include "cuda/gemv_modes.cuh"
#include "cuda/kernels_quant.cuh"

namespace pixtral::cuda {
namespace {

using quant::Format;

constexpr int kWarpsPerBlock = 8;
constexpr int kUnroll = 4;
constexpr std::size_t kQuantUploadBytes = 64u << 20;  // bf16 rows per upload chunk
constexpr std::int64_t kDequantTileValues = std::int64_t(32) << 20;

// Of a and b the one of larger magnitude, on a tie the smaller (negative) one — quant.cpp's int4_extreme.
__device__ __forceinline__ float int4_extreme(float a, float b) {
  const float fa = fabsf(a), fb = fabsf(b);
  return fa > fb ? a : fb > fa ? b : fminf(a, b);
}

// q = clamp(rint(v / scale), lo, hi), 0 when scale == 0 — the same operations as quant.cpp's quantize_value.
__device__ __forceinline__ int quantize_value(float v, float scale, float lo, float hi) {
  if (scale == 0.0f) return 0;
  const float r = rintf(__fdiv_rn(v, scale));
  return int(fminf(hi, fmaxf(lo, r)));
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : 0.f;
  return warp_max(v);
}

// One block per row of K values.
__global__ void quantize_int8_kernel(std::uint8_t* __restrict__ q, float* __restrict__ scales,
                                     const bf16* __restrict__ w, int K) {
  __shared__ float red[32];
  const std::int64_t row = blockIdx.x;
  const bf16* wr = w + row * K;
  float m = 0.f;
  for (int k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, fabsf(__bfloat162float(wr[k])));
  m = block_max(m, red);
  const float s = __fdiv_rn(m, float(quant::kInt8Max));
  if (threadIdx.x == 0) scales[row] = s;
  std::uint8_t* qr = q + row * K;
  for (int k = threadIdx.x; k < K; k += blockDim.x)
    qr[k] = std::uint8_t(std::int8_t(quantize_value(__bfloat162float(wr[k]), s, -127.f, 127.f)));
}

// One warp per group of 128: lane l holds elements 4l..4l+3 and writes bytes 2l, 2l+1.
__global__ void quantize_int4_kernel(std::uint8_t* __restrict__ q, float* __restrict__ scales,
                                     const bf16* __restrict__ w, std::int64_t n_groups) {
  const std::int64_t g = std::int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (g >= n_groups) return;
  const int lane = threadIdx.x & 31;
  const bf16* wg = w + g * quant::kInt4Group + 4 * lane;
  float v[4];
  float m = 0.f;  // the value of largest magnitude, on a tie the negative one (as core/quant.cpp int4_extreme)
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[i] = __bfloat162float(wg[i]);
    m = int4_extreme(m, v[i]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = int4_extreme(m, __shfl_xor_sync(0xffffffffu, m, o));
  const float s = m == 0.0f ? 0.0f : __fdiv_rn(m, float(quant::kInt4Min));
  if (lane == 0) scales[g] = s;
  int qi[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) qi[i] = quantize_value(v[i], s, float(quant::kInt4Min), float(quant::kInt4Max));
  std::uint8_t* qg = q + g * (quant::kInt4Group / 2) + 2 * lane;
  qg[0] = std::uint8_t((qi[0] & 0xF) | ((qi[1] & 0xF) << 4));
  qg[1] = std::uint8_t((qi[2] & 0xF) | ((qi[3] & 0xF) << 4));
}

// Exact int → float without the I2F unit (16 conversions/clock/SM on Hopper, an eighth of the FMA rate: the
// bottleneck of a GEMV that converts every weight). A byte or nibble m in offset binary (the stored two's
// complement value XOR 0x80 / 0x8) is placed in the mantissa of 2^23: the float 2^23 + m·2^p is exact, and one
// FADD of −(2^23 + bias·2^p) leaves the signed value times 2^p.
constexpr float kMagic = 8388608.0f;  // 2^23

// Signed byte j (0..3) of word u as a float; `ux` is u ^ 0x80808080.
__device__ __forceinline__ float int8_byte(std::uint32_t ux, int j) {
  return __int_as_float(int(__byte_perm(ux, 0x4B000000u, 0x7440u + unsigned(j)))) - (kMagic + 128.0f);
}

// The 8 signed nibbles of word u (element e at bits 4e), each times 2^(4·(e mod 4)): f[e] = value_e · 2^(4(e&3)).
// Callers keep one accumulator per e mod 4 and scale it back by 2^(−4(e&3)) (exact: a power of two).
__device__ __forceinline__ void int4_word_scaled(std::uint32_t u, float f[8]) {
  const std::uint32_t lo = u ^ 0x88888888u, hi = lo >> 16;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const std::uint32_t mask = 0xFu << (4 * e);
    const float bias = kMagic + 8.0f * float(1u << (4 * e));
    f[e] = __int_as_float(int((lo & mask) | 0x4B000000u)) - bias;
    f[e + 4] = __int_as_float(int((hi & mask) | 0x4B000000u)) - bias;
  }
}

// out = q · scale as bf16 (the reference's float(q) · scale, rounded to nearest even). One thread per 16 stored
// bytes (int8: 16 values, int4: 32 values of one group), written as 16-byte stores; rows on grid y (strided).
template <bool INT4>
__global__ void dequantize_kernel(bf16* __restrict__ out, const std::uint8_t* __restrict__ q,
                                  const float* __restrict__ scales, std::int64_t n_rows, int K) {
  const int rb = INT4 ? K / 2 : K;
  const int chunks = rb / 16;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= chunks) return;
  for (std::int64_t row = blockIdx.y; row < n_rows; row += gridDim.y) {
    const uint4 v = load_stream(reinterpret_cast<const uint4*>(q + row * rb) + c);
    const std::uint32_t u[4] = {v.x, v.y, v.z, v.w};
    uint4* dst = reinterpret_cast<uint4*>(out + row * K);
    if constexpr (INT4) {
      const float s = scales[row * (K / quant::kInt4Group) + c / 4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float f[8];
        int4_word_scaled(u[i], f);
        __nv_bfloat162 h[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          // f[e] = value · 2^(4(e&3)): undo exactly before the reference's multiply
          const float a = f[2 * e] * (1.0f / float(1u << (4 * ((2 * e) & 3))));
          const float b = f[2 * e + 1] * (1.0f / float(1u << (4 * ((2 * e + 1) & 3))));
          h[e] = __floats2bfloat162_rn(a * s, b * s);
        }
        dst[4 * c + i] = *reinterpret_cast<const uint4*>(h);
      }
    } else {
      const float s = scales[row];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        __nv_bfloat162 h[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const std::uint32_t ux = u[2 * i + e / 2] ^ 0x80808080u;
          h[e] = __floats2bfloat162_rn(int8_byte(ux, 2 * (e & 1)) * s, int8_byte(ux, 2 * (e & 1) + 1) * s);
        }
        dst[2 * c + i] = *reinterpret_cast<const uint4*>(h);
      }
    }
  }
}


// The 4 values of 32-bit word `u` of an int8 chunk (magic-number conversion, see int8_byte).
__device__ __forceinline__ void unpack_int8_word(std::uint32_t u, float f[4]) {
  const std::uint32_t ux = u ^ 0x80808080u;
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = int8_byte(ux, j);
}

// Chunk c of a row: 16 bytes. int8: elements 16c..16c+15 (x 8-chunks 2c, 2c+1), scale applied at the end.
// int4: elements 32c..32c+31 (x 8-chunks 4c..4c+3), all in group c/4, scale applied per chunk. The int4 values
// arrive times 2^(4(e&3)) (int4_word_scaled); four partial sums, one per power, are scaled back exactly.
template <int T, class TX, bool INT4>
__device__ __forceinline__ void accumulate(const uint4& wv, int c, const TX* __restrict__ x, int K,
                                          const float* __restrict__ srow, float acc[T]) {
  const std::uint32_t u[4] = {wv.x, wv.y, wv.z, wv.w};
  if constexpr (INT4) {
    const float s = srow[c >> 2];
    float part[T][4];
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
      for (int k = 0; k < 4; ++k) part[t][k] = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float wf[8];
      int4_word_scaled(u[i], wf);
#pragma unroll
      for (int t = 0; t < T; ++t) {
        float xf[8];
        load_x8(x + std::int64_t(t) * K, 4 * std::int64_t(c) + i, xf);
#pragma unroll
        for (int e = 0; e < 8; ++e) part[t][e & 3] = fmaf(wf[e], xf[e], part[t][e & 3]);
      }
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float p = part[t][0] + part[t][1] * 0.0625f + part[t][2] * 0.00390625f + part[t][3] * 0.000244140625f;
      acc[t] = fmaf(p, s, acc[t]);
    }
  } else {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float wf[8];
      unpack_int8_word(u[2 * h], wf);
      unpack_int8_word(u[2 * h + 1], wf + 4);
#pragma unroll
      for (int t = 0; t < T; ++t) {
        float xf[8];
        load_x8(x + std::int64_t(t) * K, 2 * std::int64_t(c) + h, xf);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[t] = fmaf(wf[e], xf[e], acc[t]);
      }
    }
  }
}

// One warp per work item (gemv_modes.cuh: one output row, or the two rows of a SiLU·mul feature or a RoPE pair).
template <int T, class TX, class TO, bool INT4, GemvMode M = GemvMode::plain>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
qgemv_kernel(TO* __restrict__ out, const TX* __restrict__ x, const std::uint8_t* __restrict__ q,
             const float* __restrict__ scales, const bf16* __restrict__ bias, int N, int n_items, int K,
             RopeAppendArgs ra) {
  constexpr int R = gemv_rows_per_item(M);
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (n >= n_items) return;
  const int rb = INT4 ? K / 2 : K;
  const int spr = INT4 ? K / quant::kInt4Group : 1;
  int rows[2];
  gemv_item_rows<M>(n, N, ra, rows);
  const uint4* wrow[R];
  const float* srow[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    wrow[r] = reinterpret_cast<const uint4*>(q + std::int64_t(rows[r]) * rb);
    srow[r] = scales + std::int64_t(rows[r]) * spr;
  }
  const int n_chunks = rb / 16;
  float acc[R][T];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.f;
  int c = lane;
  uint4 wv[R][kUnroll];
  auto load_batch = [&] {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) wv[r][u] = load_stream(wrow[r] + c + 32 * u);
  };
  bool full = c + 32 * (kUnroll - 1) < n_chunks;
  if (full) load_batch();  // W is immutable: the first batch before waiting on the previous kernel
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  while (full) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) accumulate<T, TX, INT4>(wv[r][u], c + 32 * u, x, K, srow[r], acc[r]);
    c += 32 * kUnroll;
    full = c + 32 * (kUnroll - 1) < n_chunks;
    if (full) load_batch();
  }
  for (; c < n_chunks; c += 32)
#pragma unroll
    for (int r = 0; r < R; ++r) accumulate<T, TX, INT4>(load_stream(wrow[r] + c), c, x, K, srow[r], acc[r]);
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) {
      v[r] = warp_sum(acc[r][t]);
      if (!INT4) v[r] *= srow[r][0];
    }
    if (lane == 0) gemv_item_store<M>(out, t, n, N, v, bias, ra);
  }
}

// ---- int4 × bf16 decode GEMV on the tensor cores ---------------------------------------------------------------
// The scalar qgemv_kernel spends ~5-6 instructions a weight (nibble unpack, bf16 → f32 of x, FFMA, partial sums):
// issue-bound at 34-44 % of copy bandwidth. Here one mma.sync.m16n8k16 (bf16 in, f32 accumulate) multiplies a
// 16-row × 16-k tile of dequantized W by x (B columns = x rows, T ≤ 4 of 8 used): ~1.9 instructions a weight
// (per 8 weights: 3 shifts, 4 LOP3, 4 bf16x2 subtractions, 1 MMA; x's fragments shared by the R tiles).
//
// Block = 16 work items (the MMA's M) × all of K; its W warps (kMmaWarps = 8) split the K
// groups of 128 into W contiguous ranges. Each thread streams its W bytes and scales through a cp.async ring in
// shared memory (kRingGroups consecutive groups in flight, refilled one group at a time; the first before
// griddepcontrol.wait: W and scales are immutable) — in flight without holding registers.
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
// c2,c3 row g+8 at cols 2t, 2t+1.) Nibbles (s, s+4) of a word become a bf16x2 of exact values with one shift, one
// LOP3 ((u >> 4s) & 0x000f000f) ^ 0x43084308 = bf16 (128 + (n ^ 8)) = 136 + v, and one bf16x2 subtraction of 136.
// Per group: fresh D accumulators, one chain of 2 dependent MMAs per word (4 chains, in every mode), over the 8
// k-steps, then acc += scale(row, G) · D, one D after the other (fp32 FMA). The W warps' partial sums meet in shared
// memory and are added in warp order: deterministic, and a row's value does not depend on its place in the tile,
// its tile, nor on T (fused silu/rope modes keep the bits of the plain matmul + epilogue).
// ref: Marlin (IST-DASLab/marlin) dequant (LOP3 with 0x43004300 magic, bf16 variant), PTX ISA mma fragments.
constexpr int kMmaItems = 16;  // work items per block: the MMA's M
constexpr int kMmaWarps = 8;  // warps a block, splitting K's groups (measured against 4 and 2: see PERF_NOTES)
// Groups of 128 a thread keeps in flight in the q4mma kernel's shared-memory ring, for one row pair (R = 1; half as
// many for two): 6 groups = 192 bytes of W a thread, 61 KB a block, 3 blocks (24 warps) an SM. Measured on an H200
// (int4 page-QA decode): 10 groups at 2 blocks an SM 3.71 ms/token, 6 groups 3.60; W held in registers
// (128 bytes a thread) 4.05; the scalar kernel 4.45.
constexpr int kRingGroups = 6;

// PIXTRAL_CUDA_INT4_MMA=0 sends int4 × bf16 GEMVs to the scalar kernel (A/B); read once.
bool int4_mma_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("PIXTRAL_CUDA_INT4_MMA");
    return !(e && e[0] == '0');
  }();
  return on;
}

constexpr int q4mma_ring_groups(int R) { return kRingGroups / R; }
/// Dynamic shared memory of the q4mma kernel: the ring (16 bytes of W and a 4-byte scale per slot, tile, row half).
template <int R>
constexpr std::size_t q4mma_smem_bytes() {
  return std::size_t(q4mma_ring_groups(R)) * R * 2 * kMmaWarps * 32 * (16 + 4);
}
// 4-byte cp.async (scales), through L1 (.ca: the only form for fewer than 16 bytes).
__device__ __forceinline__ void cp_async4(std::uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src));
}

// 16-byte load through L1 (x: read by every block), volatile so that the compiler keeps it in program order with
// load_stream (hoisting the x of later groups ahead costs 16 registers a group).
__device__ __forceinline__ uint4 load_cached(const uint4* p) {
  uint4 r;  // not .nc: under PDL the previous kernel wrote x during this kernel's lifetime (plain loads use L1 too)
  asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

// d += A · B, m16n8k16, bf16 × bf16 → f32.
__device__ __forceinline__ void mma_bf16_16816(float d[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                               std::uint32_t a3, std::uint32_t b0, std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  __trap();  // the MMA path is only launched on sm_80+ builds (bf16 mma.sync)
#endif
}

// Nibbles s and s + 4 of word u (two's complement) as an exact bf16x2 (low half: nibble s).
__device__ __forceinline__ std::uint32_t int4_pair_bf16(std::uint32_t u, int s) {
  const std::uint32_t biased = ((u >> (4 * s)) & 0x000f000fu) ^ 0x43084308u;  // bf16 136 + v, v in -8..7
  const __nv_bfloat162 h = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&biased),
                                   __nv_bfloat162(__ushort_as_bfloat16(0x4308), __ushort_as_bfloat16(0x4308)));
  return *reinterpret_cast<const std::uint32_t*>(&h);
}

template <int T, class TO, GemvMode M, int W = kMmaWarps>
__global__ void __launch_bounds__(W * 32, 3)  // ≤ 85 registers: 3 blocks (24 warps) an SM in every mode
q4mma_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const std::uint8_t* __restrict__ q,
             const float* __restrict__ scales, const bf16* __restrict__ bias, int N, int n_items, int K,
             RopeAppendArgs ra) {
  constexpr int R = gemv_rows_per_item(M);
  constexpr int S = q4mma_ring_groups(R);  // groups in flight a thread (cp.async ring in shared memory)
  __shared__ float red[W][R][kMmaItems][4];  // [warp][tile][item][x row]
  // The ring: slot s holds, for each tile r and row half h, this thread's 16 bytes of W (then its scale), laid out
  // [s][r][h][thread] so that a warp's accesses are 512 contiguous bytes (no bank conflict).
  extern __shared__ __align__(16) unsigned char q4_ring[];
  uint4* ring_w = reinterpret_cast<uint4*>(q4_ring);
  float* ring_s = reinterpret_cast<float*>(ring_w + S * R * 2 * W * 32);
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * kMmaItems;
  const std::int64_t rb = K / 2;
  const int n_groups = K / quant::kInt4Group;
  // A rows g (h = 0) and g + 8 (h = 1) of each tile; items past the end read the last item's rows, never stored.
  const uint4* wp[R][2];
  const float* sp[R][2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    int rows[2];
    gemv_item_rows<M>(min(n0 + g + 8 * h, n_items - 1), N, ra, rows);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      wp[r][h] = reinterpret_cast<const uint4*>(q + std::int64_t(rows[r]) * rb) + t;
      sp[r][h] = scales + std::int64_t(rows[r]) * n_groups;
    }
  }
  // Warp w takes the contiguous groups [g_lo, g_hi): its NB loads in flight cover 64·NB consecutive bytes of each
  // row (whole 128-byte lines, in order) instead of 64-byte pieces W groups apart.
  const int g_lo = warp * n_groups / W, my_groups = (warp + 1) * n_groups / W - g_lo;  // warp-uniform
  const auto slot_of = [&](int sl, int r, int h) { return ((sl * R + r) * 2 + h) * W * 32 + int(threadIdx.x); };
  // Copies group G's W bytes and scales of this thread's rows into ring slot sl (no registers held in flight).
  const auto issue = [&](int G, int sl) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        cp_async16(smem_addr(ring_w + slot_of(sl, r, h)), wp[r][h] + 4 * G, true);
        cp_async4(smem_addr(ring_s + slot_of(sl, r, h)), sp[r][h] + G);
      }
  };
#pragma unroll
  for (int j = 0; j < S; ++j) {  // W and scales are immutable: the first S groups before waiting
    if (j < my_groups) issue(g_lo + j, j);
    cp_async_commit();
  }
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  // B column g = x row g (g < T; the other columns multiply zeros and are never read).
  const uint4* xp = reinterpret_cast<const uint4*>(x + std::int64_t(g < T ? g : 0) * K + 32 * t);
  float acc[R][4];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[r][e] = 0.f;
  int sl = 0;
  for (int i = 0; i < my_groups; ++i) {
    {
      const int G = g_lo + i;
      cp_async_wait<S - 1>();  // group i's copies (this thread's own: no barrier needed) have landed
      uint4 w[R][2];
      float s[R][2];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          w[r][h] = ring_w[slot_of(sl, r, h)];
          s[r][h] = ring_s[slot_of(sl, r, h)];
        }
      uint4 xv[4];
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) xv[ww] = g < T ? load_cached(xp + 16 * G + ww) : make_uint4(0u, 0u, 0u, 0u);
      // Independent MMA chains, one per word: the kernel is latency-bound, a chain of dependent MMAs is what a warp
      // waits on. The same for every mode: a row's bits must not depend on the mode (fused silu/rope = plain).
      constexpr int kChains = 4;
      float d[R][kChains][4];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int e = 0; e < 4 * kChains; ++e) d[r][e / 4][e % 4] = 0.f;
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) {
        // x[k .. k + 7], k = 128G + 32t + 8ww: b for k-step h = (x[k+2h], x[k+2h+4]), (x[k+2h+1], x[k+2h+5])
        const std::uint32_t b00 = __byte_perm(xv[ww].x, xv[ww].z, 0x5410), b01 = __byte_perm(xv[ww].x, xv[ww].z, 0x7632);
        const std::uint32_t b10 = __byte_perm(xv[ww].y, xv[ww].w, 0x5410), b11 = __byte_perm(xv[ww].y, xv[ww].w, 0x7632);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const std::uint32_t u0 = (&w[r][0].x)[ww], u1 = (&w[r][1].x)[ww];  // rows g, g + 8
          mma_bf16_16816(d[r][ww % kChains], int4_pair_bf16(u0, 0), int4_pair_bf16(u1, 0), int4_pair_bf16(u0, 1),
                         int4_pair_bf16(u1, 1), b00, b01);
          mma_bf16_16816(d[r][ww % kChains], int4_pair_bf16(u0, 2), int4_pair_bf16(u1, 2), int4_pair_bf16(u0, 3),
                         int4_pair_bf16(u1, 3), b10, b11);
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c2 = 0; c2 < kChains; ++c2) {
          acc[r][0] = fmaf(s[r][0], d[r][c2][0], acc[r][0]);  // row g,     col 2t
          acc[r][1] = fmaf(s[r][0], d[r][c2][1], acc[r][1]);  // row g,     col 2t + 1
          acc[r][2] = fmaf(s[r][1], d[r][c2][2], acc[r][2]);  // row g + 8, col 2t
          acc[r][3] = fmaf(s[r][1], d[r][c2][3], acc[r][3]);  // row g + 8, col 2t + 1
        }
      // Refill the slot only now: the FMAs above consumed w and s (data dependence), so the shared loads are done
      // before the cp.async that overwrites them is issued (PTX does not order an ld.shared before a later cp.async
      // to the same address by the same thread).
      if (i + S < my_groups) issue(G + S, sl);  // S - 1 groups in flight during the math, S after
      cp_async_commit();
      sl = sl + 1 == S ? 0 : sl + 1;
    }
  }
  if (t < 2) {  // columns 0..3 = x rows (T ≤ 4)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      red[warp][r][g][2 * t] = acc[r][0];
      red[warp][r][g][2 * t + 1] = acc[r][1];
      red[warp][r][g + 8][2 * t] = acc[r][2];
      red[warp][r][g + 8][2 * t + 1] = acc[r][3];
    }
  }
  __syncthreads();
  const int item = threadIdx.x >> 2, c = threadIdx.x & 3;
  if (threadIdx.x < kMmaItems * 4 && c < T && n0 + item < n_items) {
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float sum = red[0][r][item][c];
#pragma unroll
      for (int ww = 1; ww < W; ++ww) sum += red[ww][r][item][c];
      v[r] = sum;
    }
    gemv_item_store<M>(out, c, n0 + item, N, v, bias, ra);
  }
}

// Once per kernel (first, eager launch; not a stream operation): the shared-memory opt-in, and whether 2 or more
// blocks fit an SM — on GPUs with 100 KB of shared memory an SM (sm_86/89) one 8-warp block would be latency-bound:
// the scalar kernel runs there.
template <int T, class TO, GemvMode M>
bool q4mma_fits() {
  static const bool fits = [] {
    constexpr std::size_t smem = q4mma_smem_bytes<gemv_rows_per_item(M)>();
    auto kernel = q4mma_kernel<T, TO, M>;
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
  }();
  return fits;
}

template <int T, GemvMode M = GemvMode::plain>
Status launch_rows(void* out, DType out_t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                   bool int4, const bf16* bias, int N, int K, cudaStream_t s, const RopeAppendArgs& ra = {}) {
  return dispatch_act(out_t, [&](auto to) {
    return dispatch_act(x_t, [&](auto tx) {
      using TO = typename decltype(to)::type;
      using TX = typename decltype(tx)::type;
      const int items = gemv_items(M, N, ra);
      const dim3 grid{unsigned(ceil_div(items, kWarpsPerBlock))}, block{kWarpsPerBlock * 32};
      TO* o = static_cast<TO*>(out);
      const TX* xx = static_cast<const TX*>(x);
      if constexpr (std::is_same_v<TX, bf16>) {
        constexpr std::size_t smem = q4mma_smem_bytes<gemv_rows_per_item(M)>();
        if (int4 && int4_mma_enabled() && q4mma_fits<T, TO, M>()) {
          const dim3 mgrid{unsigned(ceil_div(items, kMmaItems))};
          launch_dependent_smem(q4mma_kernel<T, TO, M>, mgrid, dim3{kMmaWarps * 32}, smem, s, o, xx, q, scales, bias,
                                N, items, K, ra);
          PIXTRAL_CUDA_LAUNCH_CHECK(q4mma_kernel);
          return Status{};
        }
      }
      if (int4)
        launch_dependent(qgemv_kernel<T, TX, TO, true, M>, grid, block, s, o, xx, q, scales, bias, N, items, K, ra);
      else
        launch_dependent(qgemv_kernel<T, TX, TO, false, M>, grid, block, s, o, xx, q, scales, bias, N, items, K, ra);
      PIXTRAL_CUDA_LAUNCH_CHECK(qgemv_kernel);
      return Status{};
    });
  });
}

}  // namespace

std::size_t quantized_values_bytes(Format f, std::int64_t rows, std::int64_t cols) {
  return (std::size_t(rows * quant::row_bytes(f, cols)) + 255) / 256 * 256;
}
std::size_t quantized_alloc_bytes(Format f, std::int64_t rows, std::int64_t cols) {
  return quantized_values_bytes(f, rows, cols) + std::size_t(rows * quant::scales_per_row(f, cols)) * sizeof(float);
}

Status launch_quantize(std::uint8_t* q, float* scales, const bf16* w, std::int64_t n, std::int64_t K, Format f,
                       cudaStream_t s) {
  if (n <= 0) return {};
  if (f == Format::int8_channel) {
    quantize_int8_kernel<<<unsigned(n), 256, 0, s>>>(q, scales, w, int(K));
    PIXTRAL_CUDA_LAUNCH_CHECK(quantize_int8_kernel);
    return {};
  }
  if (f == Format::int4_g128) {
    const std::int64_t groups = n * (K / quant::kInt4Group);
    quantize_int4_kernel<<<ceil_div(groups, kWarpsPerBlock), kWarpsPerBlock * 32, 0, s>>>(q, scales, w, groups);
    PIXTRAL_CUDA_LAUNCH_CHECK(quantize_int4_kernel);
    return {};
  }
  return Status(ErrorCode::invalid_argument, "launch_quantize: dense format");
}

Status launch_dequantize(bf16* out, const std::uint8_t* q, const float* scales, std::int64_t n, std::int64_t K,
                         Format f, cudaStream_t s) {
  if (n <= 0) return {};
  const std::int64_t chunks = quant::row_bytes(f, K) / 16;  // K % 16 == 0 (int8) / % 128 == 0 (int4): whole
  if (chunks * 16 != quant::row_bytes(f, K))
    return Status(ErrorCode::invalid_argument, "launch_dequantize: a row must be a multiple of 16 bytes");
  const dim3 grid(unsigned(ceil_div(chunks, 128)), unsigned(std::min<std::int64_t>(n, 65535)));
  if (f == Format::int4_g128)
    dequantize_kernel<true><<<grid, 128, 0, s>>>(out, q, scales, n, int(K));
  else
    dequantize_kernel<false><<<grid, 128, 0, s>>>(out, q, scales, n, int(K));
  PIXTRAL_CUDA_LAUNCH_CHECK(dequantize_kernel);
  return {};
}

bool qgemv_supported(std::int64_t T, std::int64_t K, const void* x, DType x_t, const void* q, Format f) {
  if (T < 1 || T > kQGemvMaxRows || K > (std::int64_t(1) << 30)) return false;
  if (f == Format::int8_channel ? K % 16 != 0 : (f != Format::int4_g128 || K % quant::kInt4Group != 0)) return false;
  if (x_t != DType::f32 && x_t != DType::bf16) return false;
  return reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && reinterpret_cast<std::uintptr_t>(q) % 16 == 0;
}

Status launch_qgemv(void* out, DType out_t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                    Format f, const bf16* bias, std::int64_t T, std::int64_t N, std::int64_t K, cudaStream_t s) {
  if (!qgemv_supported(T, K, x, x_t, q, f))
    return Status(ErrorCode::internal, "launch_qgemv: unsupported shape/alignment (caller must check)");
  const bool int4 = f == Format::int4_g128;
  switch (T) {
    case 1: return launch_rows<1>(out, out_t, x, x_t, q, scales, int4, bias, int(N), int(K), s);
    case 2: return launch_rows<2>(out, out_t, x, x_t, q, scales, int4, bias, int(N), int(K), s);
    case 3: return launch_rows<3>(out, out_t, x, x_t, q, scales, int4, bias, int(N), int(K), s);
    default: return launch_rows<4>(out, out_t, x, x_t, q, scales, int4, bias, int(N), int(K), s);
  }
}

Status launch_qgemv_silu(void* out, DType out_t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                         Format f, std::int64_t T, std::int64_t F, std::int64_t K, cudaStream_t s) {
  if (!qgemv_supported(T, K, x, x_t, q, f))
    return Status(ErrorCode::internal, "launch_qgemv_silu: unsupported shape/alignment (caller must check)");
  const bool int4 = f == Format::int4_g128;
  switch (T) {
    case 1: return launch_rows<1, GemvMode::silu>(out, out_t, x, x_t, q, scales, int4, nullptr, int(F), int(K), s);
    case 2: return launch_rows<2, GemvMode::silu>(out, out_t, x, x_t, q, scales, int4, nullptr, int(F), int(K), s);
    case 3: return launch_rows<3, GemvMode::silu>(out, out_t, x, x_t, q, scales, int4, nullptr, int(F), int(K), s);
    default: return launch_rows<4, GemvMode::silu>(out, out_t, x, x_t, q, scales, int4, nullptr, int(F), int(K), s);
  }
}

Status launch_qgemv_rope(void* qkv, DType t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                         Format f, std::int64_t K, void* k_cache, void* v_cache, DType cache_t, const int* pos, int nh,
                         int nkv, int head_dim, const float* freq, bool halves, cudaStream_t s) {
  if (!qgemv_supported(1, K, x, x_t, q, f) || cache_t != t || head_dim % 2)
    return Status(ErrorCode::internal, "launch_qgemv_rope: unsupported shape/alignment (caller must check)");
  const RopeAppendArgs ra{k_cache, v_cache, pos, freq, nh, nkv, head_dim, halves};
  return launch_rows<1, GemvMode::rope>(qkv, t, x, x_t, q, scales, f == Format::int4_g128, nullptr,
                                        (nh + 2 * nkv) * head_dim, int(K), s, ra);
}

// ---- CudaBackend members for quantized weights -----------------------------------------------------------------

Result<ops::Weight> CudaBackend::upload_weight_quantized(const WeightView& w, ops::WeightFormat format) {
  if (format == ops::WeightFormat::dense) return upload_weight(w);
  const WeightView* one[1] = {&w};
  return upload_weight_stacked_quantized(one, w.name, format);
}

Result<ops::Weight> CudaBackend::upload_weight_stacked_quantized(std::span<const WeightView* const> parts,
                                                                 const std::string& name, ops::WeightFormat f) {
  if (f == ops::WeightFormat::dense) return upload_weight_stacked(parts, name);
  if (parts.empty()) return Status(ErrorCode::invalid_argument, "cuda upload " + name + ": no parts");
  const std::int64_t cols = parts[0]->cols();
  std::int64_t rows = 0;
  for (const WeightView* p : parts) {
    if (p->cols() != cols)
      return Status(ErrorCode::invalid_argument, "cuda upload " + name + ": parts have different column counts");
    PIXTRAL_RETURN_IF_ERROR(quant::check_shape(f, p->rows(), cols, p->name));
    rows += p->rows();
  }
  const std::size_t total = quantized_alloc_bytes(f, rows, cols);
  auto mem = device_alloc(total, name);
  if (!mem.ok()) return mem.status();
  auto* q = static_cast<std::uint8_t*>(*mem);
  auto* scales = reinterpret_cast<float*>(q + quantized_values_bytes(f, rows, cols));
  const std::int64_t rb = quant::row_bytes(f, cols), spr = quant::scales_per_row(f, cols);
  const std::int64_t chunk_rows = std::max<std::int64_t>(1, std::int64_t(kQuantUploadBytes) / (cols * 2));
  auto run = [&]() -> Status {
    PIXTRAL_RETURN_IF_ERROR(ensure(quant_src_, std::size_t(std::min(chunk_rows, rows) * cols) * 2,
                                   "weight quantization buffer"));
    std::int64_t r_out = 0;
    for (const WeightView* p : parts) {
      const std::size_t esz = dtype_size(p->dtype);
      for (std::int64_t r = 0; r < p->rows(); r += chunk_rows) {
        const std::int64_t nr = std::min(chunk_rows, p->rows() - r);
        WeightView sub{p->name, static_cast<const char*>(p->data) + std::size_t(r * cols) * esz, p->dtype,
                       {nr, cols}};
        PIXTRAL_RETURN_IF_ERROR(upload_into(static_cast<bf16*>(quant_src_.ptr), sub));  // synchronises
        PIXTRAL_RETURN_IF_ERROR(launch_quantize(q + (r_out + r) * rb, scales + (r_out + r) * spr,
                                                static_cast<const bf16*>(quant_src_.ptr), nr, cols, f, stream_));
      }
      r_out += p->rows();
    }
    PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return {};
  };
  Status st = run();
  // The bf16 staging rows are only needed while loading: give them back (the next weight allocates again).
  if (quant_src_.ptr) {
    cudaStreamSynchronize(stream_);
    device_free(quant_src_.ptr, quant_src_.cap);
    quant_src_ = {};
  }
  if (!st.ok()) {
    device_free(q, total);
    return st;
  }
  return quantized_weight(q, scales, parts[0]->dtype, rows, cols, name, f);
}

Status CudaBackend::matmul_quantized(ops::Tensor out, const ops::Tensor& x, const ops::Weight& w,
                                     const ops::Weight* bias) {
  const std::int64_t T = x.rows, K = x.cols, N = w.rows;
  if (T == 0 || N == 0) return {};
  if (!w.data || !w.scales)
    return Status(ErrorCode::invalid_argument, "cuda matmul: quantized weight " + w.name + " has no data");
  const auto* q = static_cast<const std::uint8_t*>(w.data);
  const bf16* b = bias ? static_cast<const bf16*>(bias->data) : nullptr;
  if (qgemv_supported(T, K, x.data, x.dtype, q, w.format))
    return launch_qgemv(out.data, out.dtype, x.data, x.dtype, q, w.scales, w.format, b, T, N, K, stream_);
  // Prefill: dequantize a tile of W rows to bf16, cuBLAS into out[:, n0 .. n0 + m) (ldc = N).
  auto xb = as_bf16(x, convert_, "matmul input conversion buffer");
  if (!xb.ok()) return xb.status();
  // Tiles of whole 256-row blocks: the output column offset n0 stays 16-byte aligned (an unaligned C pointer
  // sends cuBLAS to slow generic kernels — measured 4x slower prefill with 6553-row tiles at K = 5120).
  const std::int64_t tile = std::min<std::int64_t>(N, std::max<std::int64_t>(256, kDequantTileValues / K / 256 * 256));
  PIXTRAL_RETURN_IF_ERROR(ensure(dequant_, std::size_t(tile * K) * 2, "quantized weight dequantization tile"));
  const std::int64_t rb = quant::row_bytes(w.format, K), spr = quant::scales_per_row(w.format, K);
  const std::size_t osz = dtype_size(out.dtype);
  const float alpha = 1.f, beta = 0.f;
  for (std::int64_t n0 = 0; n0 < N; n0 += tile) {
    const std::int64_t m = std::min(tile, N - n0);
    auto* dq = static_cast<bf16*>(dequant_.ptr);
    PIXTRAL_RETURN_IF_ERROR(launch_dequantize(dq, q + n0 * rb, w.scales + n0 * spr, m, K, w.format, stream_));
    PIXTRAL_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(T), int(K), &alpha, dq,
                                      CUDA_R_16BF, int(K), *xb, CUDA_R_16BF, int(K), &beta,
                                      static_cast<char*>(out.data) + std::size_t(n0) * osz,
                                      out.dtype == DType::f32 ? CUDA_R_32F : CUDA_R_16BF, int(N), CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
  }
  if (b) return launch_bias_add(out.data, out.dtype, b, T, N, stream_);
  return {};
}

}  // namespace pixtral::cuda
