// SPDX-License-Identifier: Apache-2.0
// Decode attention (one query row, or a few), split-KV: the key range is cut into chunks of 128 keys and one
// block handles one (chunk, KV head, query row) for all G query heads of the group, so each K/V row is read from
// device memory once per row and 8 KV heads × many chunks fill the GPU (4193 keys: 33 × 8 = 264 blocks, all
// resident at 3 blocks/SM). Each block streams its 128 K and V rows with 16-byte loads (all issued before the
// first use: 64 KB in flight per block at head_dim 128), computes
// the G score vectors with a deterministic shuffle reduction, a chunk-local max and sum (base-2 softmax), and
// P·V in fp32 registers; it writes the unnormalised (O, M, L) of its chunk. A second kernel merges the chunks in
// index order (no atomics: bit-identical run after run). A single chunk writes the output directly.
// Masks: a key range per row (host ranges or the device decode state, for CUDA-graph replay).
// ref: FlashDecoding (Dao, Haziza, Massa, Sizov 2023) split-KV + log-sum-exp combine; vLLM paged_attention_v2.
#include <cmath>
#include <cstdint>

#include "cuda/kernels.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kKeysPerWarp = 32;
constexpr int kChunk = kWarps * kKeysPerWarp;  // 128 keys per block
constexpr float kLog2e = 1.4426950408889634f;

struct DecodeParams {
  void* out;
  float* partial;  // O [n_chunks][n_q*H][D], M [n_chunks][n_q*H], L [n_chunks][n_q*H]
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const int2* key_range;
  const int* dev_state;
  int n_q, H, Hkv, key_lo, n_chunks;
  float scale_log2;
};

__device__ __forceinline__ void bf16x8_to_f32(const uint4& u, float (&f)[8]) {
  const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __bfloat1622float2(b[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

__device__ __forceinline__ uint4 ld_stream(const bf16* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

template <int D, int G, class TO>
__global__ void __launch_bounds__(kThreads, 3) decode_attention_kernel(const DecodeParams p) {
  constexpr int kLanesPerKey = D / 8;             // 16-byte pieces of one row
  constexpr int kKeysPerStep = 32 / kLanesPerKey;  // keys one warp-wide load covers
  constexpr int kSteps = kKeysPerWarp / kKeysPerStep;
  __shared__ float red_m[kWarps][G], red_l[kWarps][G];
  __shared__ __align__(16) float red_o[kWarps][G][D];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int sub = lane / kLanesPerKey, dl = lane % kLanesPerKey;
  const int chunk = blockIdx.x, kvh = blockIdx.y, row = blockIdx.z;
  const std::int64_t n_vec = std::int64_t(p.n_q) * p.H;
  const std::int64_t q_stride = std::int64_t(p.H) * D, kv_stride = std::int64_t(p.Hkv) * D;
  const int2 rr = p.dev_state ? make_int2(0, p.dev_state[kDecodeStatePosition] + row + 1) : p.key_range[row];
  const int c0 = p.key_lo + chunk * kChunk;
  const int klo = max(c0, rr.x), khi = min(c0 + kChunk, rr.y);
  const bool direct = p.n_chunks == 1;

  if (klo >= khi) {  // nothing of this row in this chunk (device-state capacity, or a short row)
    if (direct) {
      TO* out = static_cast<TO*>(p.out) + std::int64_t(row) * q_stride + std::int64_t(kvh) * G * D;
      for (int i = tid; i < G * D; i += kThreads) out[i] = from_f32<TO>(0.f);
    } else if (tid < G) {
      const std::int64_t vec = std::int64_t(row) * p.H + kvh * G + tid;
      p.partial[std::int64_t(p.n_chunks) * n_vec * D + chunk * n_vec + vec] = -INFINITY;
      p.partial[std::int64_t(p.n_chunks) * n_vec * (D + 1) + chunk * n_vec + vec] = 0.f;
    }
    return;
  }

  // Issue every K and V load of this warp before using any.
  const int key0 = c0 + warp * kKeysPerWarp + sub;
  uint4 kr[kSteps], vr[kSteps];
  const bf16* kbase = p.k + std::int64_t(kvh) * D + dl * 8;
  const bf16* vbase = p.v + std::int64_t(kvh) * D + dl * 8;
#pragma unroll
  for (int st = 0; st < kSteps; ++st) {
    const int key = key0 + st * kKeysPerStep;
    const bool ok = key >= klo && key < khi;
    kr[st] = ok ? ld_stream(kbase + std::int64_t(key) * kv_stride) : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int st = 0; st < kSteps; ++st) {
    const int key = key0 + st * kKeysPerStep;
    const bool ok = key >= klo && key < khi;
    vr[st] = ok ? ld_stream(vbase + std::int64_t(key) * kv_stride) : make_uint4(0, 0, 0, 0);
  }
  float qf[G][8];
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
    const uint4 u = *reinterpret_cast<const uint4*>(p.q + std::int64_t(row) * q_stride +
                                                    std::int64_t(kvh * G + hh) * D + dl * 8);
    bf16x8_to_f32(u, qf[hh]);
#pragma unroll
    for (int i = 0; i < 8; ++i) qf[hh][i] *= p.scale_log2;
  }

  // Scores (base 2), masked to -inf outside [klo, khi).
  float sc[kSteps][G];
  float mx[G];
#pragma unroll
  for (int hh = 0; hh < G; ++hh) mx[hh] = -INFINITY;
#pragma unroll
  for (int st = 0; st < kSteps; ++st) {
    float kf[8];
    bf16x8_to_f32(kr[st], kf);
    const int key = key0 + st * kKeysPerStep;
    const bool ok = key >= klo && key < khi;
#pragma unroll
    for (int hh = 0; hh < G; ++hh) {
      float d = 0.f;
#pragma unroll
      for (int i = 0; i < 8; ++i) d = fmaf(qf[hh][i], kf[i], d);
#pragma unroll
      for (int o = 1; o < kLanesPerKey; o <<= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      sc[st][hh] = ok ? d : -INFINITY;
      mx[hh] = fmaxf(mx[hh], sc[st][hh]);
    }
  }
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
#pragma unroll
    for (int o = kLanesPerKey; o < 32; o <<= 1) mx[hh] = fmaxf(mx[hh], __shfl_xor_sync(0xffffffffu, mx[hh], o));
    if (lane == 0) red_m[warp][hh] = mx[hh];
  }
  __syncthreads();
  float m[G];
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
    m[hh] = red_m[0][hh];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) m[hh] = fmaxf(m[hh], red_m[w][hh]);  // finite: the chunk has a key
  }

  // P·V in registers: lane (sub, dl) accumulates dims dl*8 .. dl*8+7 over its keys.
  float acc[G][8], lsum[G];
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
    lsum[hh] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[hh][i] = 0.f;
  }
#pragma unroll
  for (int st = 0; st < kSteps; ++st) {
    float vf[8];
    bf16x8_to_f32(vr[st], vf);
#pragma unroll
    for (int hh = 0; hh < G; ++hh) {
      const float pr = exp2f(sc[st][hh] - m[hh]);  // 0 for masked keys (-inf)
      lsum[hh] += pr;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[hh][i] = fmaf(pr, vf[i], acc[hh][i]);
    }
  }
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
#pragma unroll
    for (int o = kLanesPerKey; o < 32; o <<= 1) {
      lsum[hh] += __shfl_xor_sync(0xffffffffu, lsum[hh], o);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[hh][i] += __shfl_xor_sync(0xffffffffu, acc[hh][i], o);
    }
    if (sub == 0) {
      float4* dst = reinterpret_cast<float4*>(&red_o[warp][hh][dl * 8]);
      dst[0] = make_float4(acc[hh][0], acc[hh][1], acc[hh][2], acc[hh][3]);
      dst[1] = make_float4(acc[hh][4], acc[hh][5], acc[hh][6], acc[hh][7]);
    }
    if (lane == 0) red_l[warp][hh] = lsum[hh];
  }
  __syncthreads();

  // Merge the warps in a fixed order and write.
  for (int i = tid; i < G * D; i += kThreads) {
    const int hh = i / D, d = i % D;
    float o = 0.f, l = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      o += red_o[w][hh][d];
      l += red_l[w][hh];
    }
    const int h = kvh * G + hh;
    const std::int64_t vec = std::int64_t(row) * p.H + h;
    if (direct) {
      static_cast<TO*>(p.out)[std::int64_t(row) * q_stride + std::int64_t(h) * D + d] = from_f32<TO>(o / l);
    } else {
      p.partial[(std::int64_t(chunk) * n_vec + vec) * D + d] = o;
      if (d == 0) {
        float mm = red_m[0][hh];  // m[hh] again, without indexing a register array at run time
#pragma unroll
        for (int w = 1; w < kWarps; ++w) mm = fmaxf(mm, red_m[w][hh]);
        p.partial[std::int64_t(p.n_chunks) * n_vec * D + chunk * n_vec + vec] = mm;
        p.partial[std::int64_t(p.n_chunks) * n_vec * (D + 1) + chunk * n_vec + vec] = l;
      }
    }
  }
}

// One block per (row, head): chunks merged in index order; empty chunks (M = -inf) are skipped unread.
template <class TO>
__global__ void decode_combine_kernel(TO* __restrict__ out, const float* __restrict__ partial, int n_vec, int D,
                                      int n_chunks) {
  const std::int64_t vec = blockIdx.x;
  const float* Mp = partial + std::int64_t(n_chunks) * n_vec * D;
  const float* Lp = Mp + std::int64_t(n_chunks) * n_vec;
  float m = -INFINITY;
  for (int c = 0; c < n_chunks; ++c) m = fmaxf(m, Mp[c * std::int64_t(n_vec) + vec]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float l = 0.f, acc = 0.f;
    for (int c = 0; c < n_chunks; ++c) {
      const float mc = Mp[c * std::int64_t(n_vec) + vec];
      if (mc == -INFINITY) continue;
      const float w = exp2f(mc - m);
      l = fmaf(Lp[c * std::int64_t(n_vec) + vec], w, l);
      acc = fmaf(partial[(c * std::int64_t(n_vec) + vec) * D + d], w, acc);
    }
    out[vec * D + d] = from_f32<TO>(l > 0.f ? acc / l : 0.f);
  }
}

int n_chunks_of(const AttentionLaunch& a) {
  const int span = std::max(0, a.key_hi_max - a.key_lo_min);
  return std::max(1, ceil_div(span, kChunk));
}

template <int D, int G, class TO>
Status launch_decode_typed(const AttentionLaunch& a, cudaStream_t s) {
  DecodeParams p;
  p.out = a.out;
  p.partial = a.partial;
  p.q = static_cast<const bf16*>(a.q);
  p.k = static_cast<const bf16*>(a.k);
  p.v = static_cast<const bf16*>(a.v);
  p.key_range = a.key_range;
  p.dev_state = a.dev_state;
  p.n_q = int(a.n_q);
  p.H = a.n_heads;
  p.Hkv = a.n_kv_heads;
  p.key_lo = a.key_lo_min;
  p.n_chunks = n_chunks_of(a);
  p.scale_log2 = a.scale * kLog2e;
  const dim3 grid(unsigned(p.n_chunks), unsigned(a.n_kv_heads), unsigned(a.n_q));
  decode_attention_kernel<D, G, TO><<<grid, kThreads, 0, s>>>(p);
  PIXTRAL_CUDA_LAUNCH_CHECK(decode_attention_kernel);
  if (p.n_chunks > 1) {
    decode_combine_kernel<TO><<<unsigned(a.n_q * a.n_heads), D, 0, s>>>(static_cast<TO*>(a.out), a.partial,
                                                                      int(a.n_q * a.n_heads), D, p.n_chunks);
    PIXTRAL_CUDA_LAUNCH_CHECK(decode_combine_kernel);
  }
  return {};
}

template <int D, int G>
Status launch_decode_out(const AttentionLaunch& a, cudaStream_t s) {
  return a.out_t == DType::f32 ? launch_decode_typed<D, G, float>(a, s) : launch_decode_typed<D, G, bf16>(a, s);
}

template <int D>
Status launch_decode_g(const AttentionLaunch& a, cudaStream_t s) {
  switch (a.n_heads / a.n_kv_heads) {
    case 1: return launch_decode_out<D, 1>(a, s);
    case 2: return launch_decode_out<D, 2>(a, s);
    default: return launch_decode_out<D, 4>(a, s);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }

}  // namespace

bool decode_attention_supported(const AttentionLaunch& a) {
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0) return false;
  const int G = a.n_heads / a.n_kv_heads;
  return a.n_q >= 1 && a.n_q <= kDecodeAttentionMaxRows && (a.head_dim == 64 || a.head_dim == 128) &&
         (G == 1 || G == 2 || G == 4) && a.q_t == DType::bf16 && a.k_t == DType::bf16 && a.v_t == DType::bf16 &&
         (a.out_t == DType::bf16 || a.out_t == DType::f32) && aligned16(a.q) && aligned16(a.k) && aligned16(a.v) &&
         (a.key_range || a.dev_state);
}

std::int64_t decode_attention_workspace_floats(const AttentionLaunch& a) {
  const int n = n_chunks_of(a);
  if (n == 1) return 0;
  return std::int64_t(n) * a.n_q * a.n_heads * (a.head_dim + 2);
}

Status launch_decode_attention(const AttentionLaunch& a, cudaStream_t s) {
  if (!decode_attention_supported(a))
    return Status(ErrorCode::internal, "cuda decode attention: unsupported launch");
  if (a.n_q == 0) return {};
  if (n_chunks_of(a) > 1 && a.partial_floats < decode_attention_workspace_floats(a))
    return Status(ErrorCode::internal, "cuda decode attention: split-KV workspace too small");
  return a.head_dim == 64 ? launch_decode_g<64>(a, s) : launch_decode_g<128>(a, s);
}

}  // namespace pixtral::cuda
