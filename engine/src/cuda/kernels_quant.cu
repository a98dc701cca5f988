// SPDX-License-Identifier: Apache-2.0
// Weight-only int8 / int4 weights on the GPU (issue 6; formats in core/quant.h):
//  * quantize during upload: the bf16 weight is uploaded in row chunks into a scratch buffer and quantized there
//    (one block per int8 row, one warp per int4 group of 128) with the reference's exact operations (fp32 absmax,
//    IEEE division, rint), so the GPU's bytes equal quant::quantize_rows';
//  * batch-1 GEMV (T ≤ 4): one warp per output row (two for int8 wo: q8_pairs; for int8 rows of K ≥ 8192, i.e. w2,
//    two warps for two rows: kernels_q8split.cu), 16-byte streaming loads of packed values (16 int8 or 32 int4),
//    dequantized in registers with magic-number conversions (int8_byte, int4_word_scaled: LOP/PRMT + FADD instead
//    of the 16/clock I2F unit), fp32 accumulation, one fixed shuffle tree: deterministic; int4 with bf16 x instead
//    on the tensor cores (kernels_q4mma.cu);
//  * T > 4 (prefill): W dequantized to bf16 a tile of 256-row blocks at a time (~32 Mi values) into scratch
//    (16-byte stores, magic-number int→float conversion: no I2F) and multiplied by cuBLAS into the matching
//    output columns (ldc = N). A fused tensor-core kernel would avoid the round trip.
// Also the CudaBackend members for quantized weights (upload, matmul dispatch).
// ref: llama.cpp ggml-cuda/mmvq.cu (quantized matrix-vector), kernels_gemv.cu here (the bf16 twin).
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "cuda/cuda_backend.h"
#include "cuda/env_switch.h"
#include "cuda/gemv_modes.cuh"
#include "cuda/kernels_quant.cuh"
#include "cuda/q8_math.cuh"

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


// Chunk c of a row: 16 bytes. int8: elements 16c..16c+15 (x 8-chunks 2c, 2c+1), scale applied at the end.
// int4: elements 32c..32c+31 (x 8-chunks 4c..4c+3), all in group c/4, scale applied per chunk. The int4 values
// arrive times 2^(4(e&3)) (int4_word_scaled); four partial sums, one per power, are scaled back exactly.
template <int T, class TX, bool INT4>
__device__ __forceinline__ void accumulate(const uint4& wv, int c, const TX* x, int K,
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
// kPair (int8, one x row, residual mode: see q8_pairs): two items a warp, rows n and n + 1 sharing the warp's x
// loads, each row's products in the order of a one-item warp (the same bits); three blocks an SM. The explicit 1
// for the others is not the same as leaving it out: ptxas then gives the int8 one-row kernels more registers (rope
// 64 → 77, silu 58 → 70, plain 43 → 60: one block an SM fewer), which measured faster (H200 int8 decode, same run:
// 3.876 with 0 → 3.856 with 1; PERF_NOTES v21 4.).
template <int T, class TX, class TO, bool INT4, GemvMode M = GemvMode::plain, bool kPair = false>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, kPair ? 3 : 1)
qgemv_kernel(TO* __restrict__ out, const TX* x, const std::uint8_t* __restrict__ q,
             const float* __restrict__ scales, const bf16* __restrict__ bias, int N, int n_items, int K,
             RopeAppendArgs ra) {
  static_assert(!kPair || gemv_rows_per_item(M) == 1, "pairs of one-row items");
  constexpr int R = kPair ? 2 : gemv_rows_per_item(M);
  PIXTRAL_TIMELINE((INT4 ? kTlQgemv4 : kTlQgemv8) + unsigned(M));
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31;
  const int n = (blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5)) * (kPair ? 2 : 1);
  if (n >= n_items) return;
  const int rb = INT4 ? K / 2 : K;
  const int spr = INT4 ? K / quant::kInt4Group : 1;
  int rows[2];
  gemv_item_rows<M>(n, N, ra, rows);
  if constexpr (kPair) rows[1] = min(n + 1, n_items - 1);
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
  // int8, one bf16 x row (decode): the batch's x (2 × 16 bytes a chunk) is loaded with its W, not by accumulate once
  // W has arrived (a dependent L1/L2 round trip a batch); same products in the same order, the same bits.
  constexpr bool kPreX = !INT4 && T == 1 && std::is_same_v<TX, bf16>;
  uint4 xw[kPreX ? kUnroll : 1][2];
  const auto load_x_batch = [&] {
    if constexpr (kPreX) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int h = 0; h < 2; ++h) xw[u][h] = __ldca(reinterpret_cast<const uint4*>(x) + 2 * (c + 32 * u) + h);
    }
  };
  auto load_batch = [&] {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) wv[r][u] = load_stream(wrow[r] + c + 32 * u);
  };
  bool full = c + 32 * (kUnroll - 1) < n_chunks;
  if (full) load_batch();  // W is immutable: the first batch before waiting on the previous kernel
  GemvItemPre<TO> pre[T];  // the storing lane's epilogue inputs (gemv_modes.cuh): the rope mode's before the wait
  const int n_st = n + (kPair ? lane : 0);  // the item lane 0 (and lane 1 of a pair) stores
  const bool stores = lane == 0 || (kPair && lane == 1 && n_st < n_items);
#pragma unroll
  for (int t = 0; t < T; ++t)
    if (stores) gemv_item_pre_early<M>(pre[t], n_st, ra);
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  if (full) load_x_batch();
#pragma unroll
  for (int t = 0; t < T; ++t)
    if (stores) gemv_item_pre_late<M>(pre[t], out, t, n_st, N);
  while (full) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if constexpr (kPreX)
          accumulate_int8_x(wv[r][u], xw[u], acc[r][0]);
        else
          accumulate<T, TX, INT4>(wv[r][u], c + 32 * u, x, K, srow[r], acc[r]);
      }
    if (c == lane) PIXTRAL_TIMELINE_MARK(acc[0][0]);  // the timeline's mark: the first batch is in
    c += 32 * kUnroll;
    full = c + 32 * (kUnroll - 1) < n_chunks;
    if (full) {
      load_batch();
      load_x_batch();
    }
  }
  if constexpr (INT4) {  // (the scalar int4 kernel runs where q4mma does not fit; the batch below costs registers)
    for (; c < n_chunks; c += 32)
#pragma unroll
      for (int r = 0; r < R; ++r) accumulate<T, TX, INT4>(load_stream(wrow[r] + c), c, x, K, srow[r], acc[r]);
  } else if (c < n_chunks) {  // the last, partial batch (a 5120-wide int8 row: 2 of 10 chunks a lane): its loads
                              // at once, one round trip instead of one a chunk; the chunks in the same order
#pragma unroll
    for (int u = 0; u < kUnroll - 1; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (c + 32 * u < n_chunks) wv[r][u] = load_stream(wrow[r] + c + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll - 1; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (c + 32 * u < n_chunks) accumulate<T, TX, INT4>(wv[r][u], c + 32 * u, x, K, srow[r], acc[r]);
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) {
      v[r] = warp_sum(acc[r][t]);
      if (!INT4) v[r] *= srow[r][0];
    }
    if constexpr (kPair) {
      const float vl[2] = {lane == 0 ? v[0] : v[1], 0.f};
      if (stores) gemv_item_store<M>(out, t, n_st, N, vl, bias, ra, pre[t]);
    } else if (lane == 0) {
      gemv_item_store<M>(out, t, n, N, v, bias, ra, pre[t]);
    }
  }
}

// The int8 one-row residual GEMV with rows of at most 4096 bytes (wo) runs two rows a warp: wo's 5120 rows are then
// 320 blocks, one wave at three blocks an SM, where one row a warp (640 blocks, four an SM at 64 registers) left
// 112 blocks for a second wave that started as the first ended. H200 int8 decode, same run: 3.951 -> 3.919 ms/token,
// confirmed 3.876 -> 3.836 in four rounds; for every residual GEMV (w2's 14336-byte rows too) 3.908 -> 3.923, in
// blocks of 4 warps 3.951 -> 3.973 (PERF_NOTES v21). PIXTRAL_CUDA_Q8_PAIRS=0 turns it off (A/B).
constexpr int kPairMaxK = 4096;
bool q8_pairs(GemvMode m, int T, int K) {
  static const bool on = [] {
    return !env_zero("PIXTRAL_CUDA_Q8_PAIRS");
  }();
  return on && m == GemvMode::residual && T == 1 && K <= kPairMaxK;
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
        if (int4) {  // the TMA GEMV (one row) or the cp.async one where they run, else the scalar kernel below
          bool launched = false;
          PIXTRAL_RETURN_IF_ERROR(launch_q4tma(o, out_t, xx, q, scales, bias, T, N, items, K, M, ra, s, &launched));
          if (launched) return Status{};
          PIXTRAL_RETURN_IF_ERROR(launch_q4mma(o, out_t, xx, q, scales, bias, T, N, items, K, M, ra, s, &launched));
          if (launched) return Status{};
        } else {  // int8: the TMA-fed twin of the scalar kernel below (one row), where it runs
          bool launched = false;
          PIXTRAL_RETURN_IF_ERROR(launch_q8tma(o, out_t, xx, q, scales, bias, T, N, items, K, M, ra, s, &launched));
          if (launched) return Status{};
          if (T == 1 && (M == GemvMode::plain || M == GemvMode::residual)) {  // long rows (w2): kernels_q8split.cu
            PIXTRAL_RETURN_IF_ERROR(launch_q8split(o, out_t, xx, q, scales, bias, N, K, M, s, &launched));
            if (launched) return Status{};
          }
        }
      }
      if (int4)
        launch_dependent(qgemv_kernel<T, TX, TO, true, M>, grid, block, s, o, xx, q, scales, bias, N, items, K, ra);
      else if (q8_pairs(M, T, K))
        launch_dependent(qgemv_kernel<T, TX, TO, false, M, M == GemvMode::residual && T == 1>,
                         dim3(unsigned(ceil_div(items, 2 * kWarpsPerBlock))), block, s, o, xx, q, scales, bias, N,
                         items, K, ra);
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

Status launch_qgemv_add(void* h, DType h_t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                        Format f, std::int64_t T, std::int64_t N, std::int64_t K, cudaStream_t s) {
  if (!qgemv_supported(T, K, x, x_t, q, f))
    return Status(ErrorCode::internal, "launch_qgemv_add: unsupported shape/alignment (caller must check)");
  const bool int4 = f == Format::int4_g128;
  constexpr GemvMode A = GemvMode::residual;
  switch (T) {
    case 1: return launch_rows<1, A>(h, h_t, x, x_t, q, scales, int4, nullptr, int(N), int(K), s);
    case 2: return launch_rows<2, A>(h, h_t, x, x_t, q, scales, int4, nullptr, int(N), int(K), s);
    case 3: return launch_rows<3, A>(h, h_t, x, x_t, q, scales, int4, nullptr, int(N), int(K), s);
    default: return launch_rows<4, A>(h, h_t, x, x_t, q, scales, int4, nullptr, int(N), int(K), s);
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
                                     const ops::Weight* bias, float beta) {
  const std::int64_t T = x.rows, K = x.cols, N = w.rows;
  if (T == 0 || N == 0) return {};
  if (!w.data || !w.scales)
    return Status(ErrorCode::invalid_argument, "cuda matmul: quantized weight " + w.name + " has no data");
  const auto* q = static_cast<const std::uint8_t*>(w.data);
  const bf16* b = bias ? static_cast<const bf16*>(bias->data) : nullptr;
  if (qgemv_supported(T, K, x.data, x.dtype, q, w.format))
    return launch_qgemv(out.data, out.dtype, x.data, x.dtype, q, w.scales, w.format, b, T, N, K, stream_);
  // A few rows (a follow-up turn's prefill): each weight read once for all the rows (kernels_qrows.cu).
  if (qrows_supported(T, N, K, x.data, x.dtype, out.dtype, w.format) &&
      reinterpret_cast<std::uintptr_t>(q) % 16 == 0) {
    const float* corr = nullptr;
    const bf16* xq = static_cast<const bf16*>(x.data);
    if (w.format == Format::int4_g128) {
      PIXTRAL_RETURN_IF_ERROR(
          ensure(q4corr_, std::size_t(T * (K / quant::kInt4Group)) * sizeof(float), "int4 prefill corrections"));
      PIXTRAL_RETURN_IF_ERROR(ensure(qrows_xb_, std::size_t(T * K) * sizeof(bf16), "int4 short prefill x"));
      auto* c = static_cast<float*>(q4corr_.ptr);
      auto* xb = static_cast<bf16*>(qrows_xb_.ptr);
      PIXTRAL_RETURN_IF_ERROR(launch_q4_corrections(xq, T, int(K), c, stream_, xb));
      corr = c;
      xq = xb;
    }
    PIXTRAL_RETURN_IF_ERROR(ensure(qrows_ws_, qrows_workspace_bytes(T, N, K, w.format), "short prefill workspace"));
    bool launched = false;
    PIXTRAL_RETURN_IF_ERROR(launch_qrows(out.data, out.dtype, xq, q, w.scales, w.format, b, corr, T, N, K, beta != 0.f,
                                         qrows_ws_.ptr, qrows_ws_.cap, stream_, &launched));
    if (launched) return {};
  }
  // A few rows (a follow-up turn's prefill) with int4 weights: passes of ≤ 8 rows on the tensor-core GEMV.
  if (w.format == Format::int4_g128 && x.dtype == DType::bf16 && T <= kQ4PassMaxRows && K % quant::kInt4Group == 0 &&
      (out.dtype == DType::bf16 || out.dtype == DType::f32) && reinterpret_cast<std::uintptr_t>(x.data) % 16 == 0) {
    PIXTRAL_RETURN_IF_ERROR(
        ensure(q4corr_, std::size_t(T * (K / quant::kInt4Group)) * sizeof(float), "int4 prefill corrections"));
    bool launched = false;
    PIXTRAL_RETURN_IF_ERROR(launch_q4mma_rows(out.data, out.dtype, static_cast<const bf16*>(x.data), q, w.scales, b,
                                              T, int(N), int(K), beta != 0.f, static_cast<float*>(q4corr_.ptr),
                                              stream_, &launched));
    if (launched) return {};
  }
  // Prefill: dequantize a tile of W rows to bf16, cuBLAS into out[:, n0 .. n0 + m) (ldc = N).
  auto xb = as_bf16(x, convert_, "matmul input conversion buffer");
  if (!xb.ok()) return xb.status();
  // Tiles of whole 256-row blocks: the output column offset n0 stays 16-byte aligned (an unaligned C pointer
  // sends cuBLAS to slow generic kernels — measured 4x slower prefill with 6553-row tiles at K = 5120).
  const std::int64_t tile = std::min<std::int64_t>(N, std::max<std::int64_t>(256, kDequantTileValues / K / 256 * 256));
  PIXTRAL_RETURN_IF_ERROR(ensure(dequant_, std::size_t(tile * K) * 2, "quantized weight dequantization tile"));
  const std::int64_t rb = quant::row_bytes(w.format, K), spr = quant::scales_per_row(w.format, K);
  const std::size_t osz = dtype_size(out.dtype);
  const float alpha = 1.f;  // beta 1: out += the product (matmul_add)
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
