// SPDX-License-Identifier: Apache-2.0
// Row-wise and element-wise kernels: conversion, embedding gather, RMSNorm (plain and fused with the residual
// add), add, SiLU·mul, GELU (erf), row scatter, bias add, RoPE (1-D and 2-D through one kernel), im2col.
// All math in fp32; results rounded once to the output dtype (round to nearest even). Reductions use a fixed
// shuffle tree, so results are bit-identical run after run.
// CPU twins: engine/src/cpu (ops::make_cpu_backend). ref: llm.c llmc/layernorm.cuh, llmc/gelu.cuh.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "cuda/env_switch.h"
#include "cuda/kernels.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kBlock = 256;

inline int grid_for(std::int64_t n, int per_block = kBlock) {
  std::int64_t g = (n + per_block - 1) / per_block;
  return int(g < 65535 * 32 ? g : 65535 * 32);
}

template <class TO, class TI>
__global__ void convert_kernel(TO* dst, const TI* src, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<TO>(to_f32(src[i]));
}

template <class TO>
__global__ void embed_kernel(TO* out, const bf16* table, const int* ids, std::int64_t D, std::int64_t vocab) {
  const std::int64_t t = blockIdx.x;
  const int id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  for (std::int64_t d = threadIdx.x; d < D; d += blockDim.x)
    out[t * D + d] = from_f32<TO>(ok ? __bfloat162float(table[std::int64_t(id) * D + d]) : NAN);
}

// One block per row. Pass 1: sum of squares (fp32, fixed order); pass 2: scale. out may alias x: each element
// is read and written by the same thread, after the reduction.
template <class TO, class TX>
__global__ void rms_norm_kernel(TO* out, const TX* x, const bf16* w, std::int64_t D, float eps) {
  __shared__ float scratch[32];
  const std::int64_t row = blockIdx.x;
  const TX* xr = x + row * D;
  float ss = 0.f;
  for (std::int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const float v = to_f32(xr[d]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
  TO* orow = out + row * D;
  for (std::int64_t d = threadIdx.x; d < D; d += blockDim.x)
    orow[d] = from_f32<TO>(to_f32(xr[d]) * inv * __bfloat162float(w[d]));
}

template <class TH, class TD, class TO>
__global__ void add_rms_norm_kernel(TH* h, const TD* delta, TO* out, const bf16* w, std::int64_t D, float eps) {
  __shared__ float scratch[32];
  const std::int64_t row = blockIdx.x;
  TH* hr = h + row * D;
  const TD* dr = delta + row * D;
  float ss = 0.f;
  for (std::int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const TH nh = from_f32<TH>(to_f32(hr[d]) + to_f32(dr[d]));
    hr[d] = nh;
    const float v = to_f32(nh);  // the norm sees h as stored
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
  TO* orow = out + row * D;
  for (std::int64_t d = threadIdx.x; d < D; d += blockDim.x)
    orow[d] = from_f32<TO>(to_f32(hr[d]) * inv * __bfloat162float(w[d]));
}

// ---- register-resident rows (v2, decode): D % 8 == 0, 16-byte aligned rows ----------------------------------
// The scalar loops above issue one dependent L2 round trip per iteration (their stores may alias the next
// loads): 5.2 µs per add_rms_norm at D = 5120 on an H200, 80 of them per decode token. Here each thread loads
// its R pieces of 8 elements (16-byte loads) before any math and keeps them in registers: one round trip.
template <class T>
__device__ __forceinline__ void load8(const T* p, float f[8]);
template <>
__device__ __forceinline__ void load8<bf16>(const bf16* p, float f[8]) {
  bf16x8_to_f32(*reinterpret_cast<const uint4*>(p), f);
}
template <>
__device__ __forceinline__ void load8<float>(const float* p, float f[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
template <class T>
__device__ __forceinline__ void store8(T* p, const float f[8]);
template <>
__device__ __forceinline__ void store8<bf16>(bf16* p, const float f[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}
template <>
__device__ __forceinline__ void store8<float>(float* p, const float f[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}
template <class T>
__device__ __forceinline__ float rounded(float v) { return to_f32(from_f32<T>(v)); }

// One block per row; thread i owns pieces i, i + blockDim, ... (< D / 8), R of them at most.
// ADD: h += delta first (h rounded to TH as stored, the norm reads it so); else x = h is only read.
template <int R, bool ADD, class TH, class TD, class TO>
__global__ void row_norm_kernel(TH* h, const TD* delta, TO* out, const bf16* w, int D, float eps, bool late_trigger) {
  __shared__ float scratch[32];
  PIXTRAL_TIMELINE(kTlRowNorm);
  if (!late_trigger) allow_dependents_to_launch();
  const std::int64_t row = blockIdx.x;
  const int nv = D / 8;
  TH* hr = h + row * D;
  float v[R][8], wf[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r)  // the norm weight is immutable: loaded before waiting on the previous kernel
    if (const int p = threadIdx.x + r * blockDim.x; p < nv) load8(w + 8 * p, wf[r]);
  wait_for_previous_grid();  // h and delta come from the previous kernels
  float ss = 0.f;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int p = threadIdx.x + r * blockDim.x;
    if (p < nv) {
      load8(hr + 8 * p, v[r]);
      if constexpr (ADD) {
        float d[8];
        load8(delta + row * D + 8 * p, d);
#pragma unroll
        for (int i = 0; i < 8; ++i) v[r][i] = rounded<TH>(v[r][i] + d[i]);
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) ss += v[r][i] * v[r][i];
    }
  }
  PIXTRAL_TIMELINE_MARK(ss);  // the timeline's mark: the row is in
  if (late_trigger) allow_dependents_to_launch();  // the next kernel's weight stream after this row's loads
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int p = threadIdx.x + r * blockDim.x;
    if (p < nv) {
      if constexpr (ADD) store8(hr + 8 * p, v[r]);
      float o[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = v[r][i] * inv * wf[r][i];
      store8(out + row * D + 8 * p, o);
    }
  }
}

// grid (T, ceil(D / 8 / 256)): one 16-byte piece per thread.
template <class TO>
__global__ void embed_vec_kernel(TO* out, const bf16* table, const int* ids, int D, std::int64_t vocab) {
  PIXTRAL_TIMELINE(kTlEmbed);
  allow_dependents_to_launch();
  const std::int64_t t = blockIdx.x;
  const int p = blockIdx.y * blockDim.x + threadIdx.x;
  if (8 * p >= D) return;
  const int id = ids[t];
  float f[8];
  if (id >= 0 && id < vocab) {
    load8(table + std::int64_t(id) * D + 8 * p, f);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = NAN;
  }
  store8(out + t * D + 8 * p, f);
}

template <class TH, class TD>
__global__ void add_kernel(TH* h, const TD* delta, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    h[i] = from_f32<TH>(to_f32(h[i]) + to_f32(delta[i]));
}

template <class TO, class TG, class TU>
__global__ void silu_mul_kernel(TO* out, const TG* gate, const TU* up, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    out[i] = from_f32<TO>(silu_times(to_f32(gate[i]), to_f32(up[i])));
  }
}

// bf16 out/gate/up, n a multiple of 8, 16-byte aligned: 8 elements per thread with 16-byte loads and stores
// (the scalar kernel's 2-byte accesses ran at half the copy bandwidth on the [4193, 14336] prefill shape). Same
// float math per element as silu_mul_kernel.
__global__ void silu_mul_x8_kernel(bf16* out, const bf16* gate, const bf16* up, std::int64_t n8) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n8;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    float g[8], u[8];
    bf16x8_to_f32(reinterpret_cast<const uint4*>(gate)[i], g);
    bf16x8_to_f32(reinterpret_cast<const uint4*>(up)[i], u);
    uint4 r;
    __nv_bfloat162* rh = reinterpret_cast<__nv_bfloat162*>(&r);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      rh[j] = __halves2bfloat162(from_f32<bf16>(silu_times(g[2 * j], u[2 * j])),
                                 from_f32<bf16>(silu_times(g[2 * j + 1], u[2 * j + 1])));
    reinterpret_cast<uint4*>(out)[i] = r;
  }
}

template <class T>
__global__ void gelu_kernel(T* x, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float v = to_f32(x[i]);
    x[i] = from_f32<T>(0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)));
  }
}

template <class TD, class TS>
__global__ void scatter_rows_kernel(TD* dst, const TS* src, const int* rows, std::int64_t cols) {
  const std::int64_t i = blockIdx.x;
  TD* d = dst + std::int64_t(rows[i]) * cols;
  const TS* s = src + i * cols;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = from_f32<TD>(to_f32(s[c]));
}

template <class TO>
__global__ void bias_add_kernel(TO* out, const bf16* bias, std::int64_t n, std::int64_t N) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = from_f32<TO>(to_f32(out[i]) + __bfloat162float(bias[i % N]));
}

// One thread per (row, head, pair). The angle is float(pos) · freq[m] in fp32 (freq computed on the host with
// the CPU twin's formula); cos/sin are evaluated in double and rounded once to fp32, and the four products are
// rounded separately (no FMA contraction), exactly as the CPU twin (cpu/cpu_rope.cpp rope_apply) does.
template <class T>
__global__ void rope_kernel(T* x, std::int64_t n_items, int n_heads, int head_dim, const int* pos_a,
                            const int* pos_b, const float* freq, int split, bool halves) {
  // One thread per (row, pair index m): the angle and its sin/cos (double, rounded to float) are computed once
  // and applied to that pair of every head of the row — the same float math per element as one thread per pair,
  // with n_heads× fewer sincos calls; a warp's consecutive m touch consecutive pairs of a head (coalesced).
  // The heads go in batches of kBatch whose loads are all issued before the first store: one memory round trip
  // a batch instead of one a head (the loop was latency-bound: 32 dependent round trips a thread at 32 heads).
  constexpr int kBatch = 8;
  const int half = head_dim / 2;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n_items;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const int m = int(i % half);
    const std::int64_t t = i / half;
    const int pos = m < split ? pos_a[t] : pos_b[t];
    const int i0 = halves ? m : 2 * m;
    const int i1 = halves ? m + half : 2 * m + 1;
    T* row = x + t * n_heads * head_dim;
    float x0[kBatch], x1[kBatch];
    const int h_first = min(kBatch, n_heads);
#pragma unroll
    for (int j = 0; j < kBatch; ++j)
      if (j < h_first) {  // the first batch's loads go out before the sincos
        x0[j] = to_f32(row[std::int64_t(j) * head_dim + i0]);
        x1[j] = to_f32(row[std::int64_t(j) * head_dim + i1]);
      }
    const float angle = __fmul_rn(float(pos), freq[m]);
    double sd, cd;
    sincos(double(angle), &sd, &cd);
    const float sn = float(sd), cs = float(cd);
    for (int h0 = 0; h0 < n_heads; h0 += kBatch) {
      const int nb = min(kBatch, n_heads - h0);
      if (h0 > 0) {
#pragma unroll
        for (int j = 0; j < kBatch; ++j)
          if (j < nb) {
            x0[j] = to_f32(row[std::int64_t(h0 + j) * head_dim + i0]);
            x1[j] = to_f32(row[std::int64_t(h0 + j) * head_dim + i1]);
          }
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j)
        if (j < nb) {
          T* head = row + std::int64_t(h0 + j) * head_dim;
          head[i0] = from_f32<T>(__fsub_rn(__fmul_rn(x0[j], cs), __fmul_rn(x1[j], sn)));
          head[i1] = from_f32<T>(__fadd_rn(__fmul_rn(x0[j], sn), __fmul_rn(x1[j], cs)));
        }
    }
  }
}

// rope_kernel for bf16 with two adjacent pair indices (m, m + 1) a thread: 4-byte accesses (halves: x0 of both
// pairs, then x1 of both) or one 8-byte access (interleaved: x0, x1, x0', x1'), the same float math per element.
// Needs head_dim % 4 == 0, an even split and an 8-byte aligned x (launch_rope checks).
__global__ void rope_bf16_x2_kernel(bf16* x, std::int64_t n_items, int n_heads, int head_dim, const int* pos_a,
                                    const int* pos_b, const float* freq, int split, bool halves) {
  constexpr int kBatch = 8;
  const int half = head_dim / 2, quarter = head_dim / 4;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n_items;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const int m = 2 * int(i % quarter);
    const std::int64_t t = i / quarter;
    const int pos = m < split ? pos_a[t] : pos_b[t];
    bf16* row = x + t * n_heads * head_dim;
    // element offsets in a head: halves x0 at m, x1 at m + half (two pairs each); interleaved all four at 2m
    const int o0 = halves ? m : 2 * m, o1 = halves ? m + half : 2 * m;
    float cs[2], sn[2];
    auto angles = [&] {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const float angle = __fmul_rn(float(pos), freq[m + j]);
        double sd, cd;
        sincos(double(angle), &sd, &cd);
        sn[j] = float(sd);
        cs[j] = float(cd);
      }
    };
    for (int h0 = 0; h0 < n_heads; h0 += kBatch) {
      const int nb = min(kBatch, n_heads - h0);
      float a[kBatch][2], b[kBatch][2];  // x0 and x1 of pairs m, m + 1
#pragma unroll
      for (int j = 0; j < kBatch; ++j)
        if (j < nb) {
          bf16* head = row + std::int64_t(h0 + j) * head_dim;
          if (halves) {
            const __nv_bfloat162 u = *reinterpret_cast<const __nv_bfloat162*>(head + o0);
            const __nv_bfloat162 w = *reinterpret_cast<const __nv_bfloat162*>(head + o1);
            a[j][0] = __low2float(u), a[j][1] = __high2float(u);
            b[j][0] = __low2float(w), b[j][1] = __high2float(w);
          } else {
            const uint2 r = *reinterpret_cast<const uint2*>(head + o0);
            const __nv_bfloat162 u = *reinterpret_cast<const __nv_bfloat162*>(&r.x);
            const __nv_bfloat162 w = *reinterpret_cast<const __nv_bfloat162*>(&r.y);
            a[j][0] = __low2float(u), b[j][0] = __high2float(u);
            a[j][1] = __low2float(w), b[j][1] = __high2float(w);
          }
        }
      if (h0 == 0) angles();  // after the first batch's loads are out
#pragma unroll
      for (int j = 0; j < kBatch; ++j)
        if (j < nb) {
          float r0[2], r1[2];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            r0[e] = __fsub_rn(__fmul_rn(a[j][e], cs[e]), __fmul_rn(b[j][e], sn[e]));
            r1[e] = __fadd_rn(__fmul_rn(a[j][e], sn[e]), __fmul_rn(b[j][e], cs[e]));
          }
          bf16* head = row + std::int64_t(h0 + j) * head_dim;
          if (halves) {
            *reinterpret_cast<__nv_bfloat162*>(head + o0) = __floats2bfloat162_rn(r0[0], r0[1]);
            *reinterpret_cast<__nv_bfloat162*>(head + o1) = __floats2bfloat162_rn(r1[0], r1[1]);
          } else {
            uint2 r;
            *reinterpret_cast<__nv_bfloat162*>(&r.x) = __floats2bfloat162_rn(r0[0], r1[0]);
            *reinterpret_cast<__nv_bfloat162*>(&r.y) = __floats2bfloat162_rn(r0[1], r1[1]);
            *reinterpret_cast<uint2*>(head + o0) = r;
          }
        }
    }
  }
}

// rope_kernel over q | k of one decode row plus the KV append, in one launch: thread i < (nh + nkv)·half rotates
// one pair (q heads in place, k heads straight into the cache row, rounded to qkv's dtype first so the bits equal
// rope + scatter_rows); the threads after copy v's elements into its cache row.
template <class T, class TC>
__global__ void rope_append_kernel(T* qkv, TC* k_cache, TC* v_cache, const int* pos_p, int nh, int nkv,
                                   int head_dim, const float* freq, bool halves) {
  const int half = head_dim / 2;
  const std::int64_t n_rot = std::int64_t(nh + nkv) * half, kvd = std::int64_t(nkv) * head_dim;
  allow_dependents_to_launch();
  wait_for_previous_grid();  // qkv comes from the GEMV before
  const int pos = pos_p[0];
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i < n_rot) {
    const int m = int(i % half);
    const int hh = int(i / half);
    const float angle = __fmul_rn(float(pos), freq[m]);
    double sd, cd;
    sincos(double(angle), &sd, &cd);
    const float sn = float(sd), cs = float(cd);
    T* head = qkv + std::int64_t(hh) * head_dim;
    const int i0 = halves ? m : 2 * m;
    const int i1 = halves ? m + half : 2 * m + 1;
    const float x0 = to_f32(head[i0]), x1 = to_f32(head[i1]);
    const T r0 = from_f32<T>(__fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn)));
    const T r1 = from_f32<T>(__fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs)));
    if (hh < nh) {
      head[i0] = r0;
      head[i1] = r1;
    } else {
      TC* krow = k_cache + std::int64_t(pos) * kvd + std::int64_t(hh - nh) * head_dim;
      krow[i0] = from_f32<TC>(to_f32(r0));
      krow[i1] = from_f32<TC>(to_f32(r1));
    }
  } else if (i < n_rot + kvd) {
    const std::int64_t e = i - n_rot;
    v_cache[std::int64_t(pos) * kvd + e] = from_f32<TC>(to_f32(qkv[std::int64_t(nh + nkv) * head_dim + e]));
  }
}

// out[p, ch*P*P + ky*P + kx] = bf16(pixels[ch, r*P + ky, c*P + kx]) for patch p = r * (W/P) + c.
template <class TP>
__global__ void im2col_kernel(bf16* out, const TP* pixels, int C, int H, int W, int P, std::int64_t n) {
  const int cols_p = W / P;
  const int K = C * P * P;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t p = i / K;
    const int k = int(i % K);
    const int ch = k / (P * P), ky = (k / P) % P, kx = k % P;
    const int r = int(p / cols_p), c = int(p % cols_p);
    out[i] = from_f32<bf16>(to_f32(pixels[(std::int64_t(ch) * H + r * P + ky) * W + c * P + kx]));
  }
}

template <class F>
Status dispatch_src(DType t, F&& f) {  // f32, bf16 or f16 sources (weights at upload)
  if (t == DType::f16) return f(Tag<__half>{});
  return dispatch_act(t, f);
}

int norm_block(std::int64_t D) { return D >= 4096 ? 1024 : D >= 1024 ? 512 : D >= 256 ? 256 : 128; }

constexpr int kRowPiecesMax = 4;  // pieces of 8 per thread in row_norm_kernel: D ≤ 32768

// Rows of D elements can take the register-resident kernels: whole 16-byte pieces, 16-byte aligned buffers.
bool rows_vectorizable(std::int64_t D, std::initializer_list<const void*> ptrs) {
  if (D % 8 != 0 || D <= 0 || D > std::int64_t(8) * 1024 * kRowPiecesMax) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  return true;
}

template <bool ADD, class TH, class TD, class TO>
Status launch_row_norm(TH* h, const TD* delta, TO* out, const bf16* w, std::int64_t T, std::int64_t D, float eps,
                       cudaStream_t s) {
  const int nv = int(D / 8);
  const int threads = std::min(1024, (nv + 31) / 32 * 32);
  const int R = ceil_div(nv, threads);
  const int d = int(D);
  const dim3 grid{unsigned(T)}, block{unsigned(threads)};
  // The next kernel launches only after the row's loads (PERF_NOTES v25 2.; a block triggers when its first warp
  // gets there): launched at the norm's start, the bf16 decode GEMV after it loads its rows' first batches before
  // its wait and the norm's row read queues behind them. H200, same run: bf16 decode 6.193 -> 5.993 ms/token; int8
  // 3.692 / 3.688 (no change). After block_sum's barrier instead (every warp's loads in): int8 3.616 -> 3.632
  // (PERF_NOTES v26 2.). The prefill's norms (T > 1) are the same kernel. PIXTRAL_CUDA_NORM_LATE=0 (A/B): at its
  // start, as before.
  const bool late = !env_zero("PIXTRAL_CUDA_NORM_LATE");
  const auto go = [&](auto kernel) { launch_dependent(kernel, grid, block, s, h, delta, out, w, d, eps, late); };
  switch (R) {  // programmatic dependents of the previous kernel (the GEMV whose output they add)
    case 1: go(row_norm_kernel<1, ADD, TH, TD, TO>); break;
    case 2: go(row_norm_kernel<2, ADD, TH, TD, TO>); break;
    case 3: go(row_norm_kernel<3, ADD, TH, TD, TO>); break;
    default: go(row_norm_kernel<4, ADD, TH, TD, TO>); break;
  }
  PIXTRAL_CUDA_LAUNCH_CHECK(row_norm_kernel);
  return {};
}

}  // namespace

Status launch_convert(void* dst, DType dst_t, const void* src, DType src_t, std::int64_t n, cudaStream_t s) {
  if (n == 0) return {};
  return dispatch_act(dst_t, [&](auto to) {
    return dispatch_src(src_t, [&](auto ti) {
      using TO = typename decltype(to)::type;
      using TI = typename decltype(ti)::type;
      convert_kernel<<<grid_for(n), kBlock, 0, s>>>(static_cast<TO*>(dst), static_cast<const TI*>(src), n);
      PIXTRAL_CUDA_LAUNCH_CHECK(convert_kernel);
      return Status{};
    });
  });
}

Status launch_embed(void* out, DType out_t, const bf16* table, const int* ids, std::int64_t T, std::int64_t D,
                    std::int64_t vocab, cudaStream_t s) {
  if (T == 0) return {};
  return dispatch_act(out_t, [&](auto to) {
    using TO = typename decltype(to)::type;
    if (rows_vectorizable(D, {out, table}) && T <= 65535) {
      const dim3 grid(unsigned(T), unsigned(ceil_div(D / 8, kBlock)));
      embed_vec_kernel<<<grid, kBlock, 0, s>>>(static_cast<TO*>(out), table, ids, int(D), vocab);
      PIXTRAL_CUDA_LAUNCH_CHECK(embed_vec_kernel);
      return Status{};
    }
    embed_kernel<<<unsigned(T), kBlock, 0, s>>>(static_cast<TO*>(out), table, ids, D, vocab);
    PIXTRAL_CUDA_LAUNCH_CHECK(embed_kernel);
    return Status{};
  });
}

Status launch_rms_norm(void* out, DType out_t, const void* x, DType x_t, const bf16* w, std::int64_t T,
                       std::int64_t D, float eps, cudaStream_t s) {
  if (T == 0) return {};
  return dispatch_act(out_t, [&](auto to) {
    return dispatch_act(x_t, [&](auto tx) {
      using TO = typename decltype(to)::type;
      using TX = typename decltype(tx)::type;
      if (rows_vectorizable(D, {out, x, w}))
        return launch_row_norm<false>(static_cast<TX*>(const_cast<void*>(x)), static_cast<const TX*>(nullptr),
                                      static_cast<TO*>(out), w, T, D, eps, s);
      rms_norm_kernel<<<unsigned(T), norm_block(D), 0, s>>>(static_cast<TO*>(out), static_cast<const TX*>(x), w,
                                                            D, eps);
      PIXTRAL_CUDA_LAUNCH_CHECK(rms_norm_kernel);
      return Status{};
    });
  });
}

Status launch_add_rms_norm(void* h, DType h_t, const void* delta, DType delta_t, void* out, DType out_t,
                           const bf16* w, std::int64_t T, std::int64_t D, float eps, cudaStream_t s) {
  if (T == 0) return {};
  return dispatch_act(h_t, [&](auto th) {
    return dispatch_act(delta_t, [&](auto td) {
      return dispatch_act(out_t, [&](auto to) {
        using TH = typename decltype(th)::type;
        using TD = typename decltype(td)::type;
        using TO = typename decltype(to)::type;
        if (rows_vectorizable(D, {h, delta, out, w}))
          return launch_row_norm<true>(static_cast<TH*>(h), static_cast<const TD*>(delta), static_cast<TO*>(out), w,
                                       T, D, eps, s);
        add_rms_norm_kernel<<<unsigned(T), norm_block(D), 0, s>>>(static_cast<TH*>(h), static_cast<const TD*>(delta),
                                                                  static_cast<TO*>(out), w, D, eps);
        PIXTRAL_CUDA_LAUNCH_CHECK(add_rms_norm_kernel);
        return Status{};
      });
    });
  });
}

Status launch_add(void* h, DType h_t, const void* delta, DType delta_t, std::int64_t n, cudaStream_t s) {
  if (n == 0) return {};
  return dispatch_act(h_t, [&](auto th) {
    return dispatch_act(delta_t, [&](auto td) {
      using TH = typename decltype(th)::type;
      using TD = typename decltype(td)::type;
      add_kernel<<<grid_for(n), kBlock, 0, s>>>(static_cast<TH*>(h), static_cast<const TD*>(delta), n);
      PIXTRAL_CUDA_LAUNCH_CHECK(add_kernel);
      return Status{};
    });
  });
}

Status launch_silu_mul(void* out, DType out_t, const void* gate, DType gate_t, const void* up, DType up_t,
                       std::int64_t n, cudaStream_t s) {
  if (n == 0) return {};
  if (out_t == DType::bf16 && gate_t == DType::bf16 && up_t == DType::bf16 && n % 8 == 0 &&
      rows_vectorizable(8, {out, gate, up})) {
    silu_mul_x8_kernel<<<grid_for(n / 8), kBlock, 0, s>>>(static_cast<bf16*>(out), static_cast<const bf16*>(gate),
                                                          static_cast<const bf16*>(up), n / 8);
    PIXTRAL_CUDA_LAUNCH_CHECK(silu_mul_x8_kernel);
    return Status{};
  }
  return dispatch_act(out_t, [&](auto to) {
    return dispatch_act(gate_t, [&](auto tg) {
      return dispatch_act(up_t, [&](auto tu) {
        using TO = typename decltype(to)::type;
        using TG = typename decltype(tg)::type;
        using TU = typename decltype(tu)::type;
        silu_mul_kernel<<<grid_for(n), kBlock, 0, s>>>(static_cast<TO*>(out), static_cast<const TG*>(gate),
                                                       static_cast<const TU*>(up), n);
        PIXTRAL_CUDA_LAUNCH_CHECK(silu_mul_kernel);
        return Status{};
      });
    });
  });
}

Status launch_gelu(void* x, DType t, std::int64_t n, cudaStream_t s) {
  if (n == 0) return {};
  return dispatch_act(t, [&](auto tx) {
    using T = typename decltype(tx)::type;
    gelu_kernel<<<grid_for(n), kBlock, 0, s>>>(static_cast<T*>(x), n);
    PIXTRAL_CUDA_LAUNCH_CHECK(gelu_kernel);
    return Status{};
  });
}

Status launch_scatter_rows(void* dst, DType dst_t, const void* src, DType src_t, const int* rows, std::int64_t n,
                           std::int64_t cols, cudaStream_t s) {
  if (n == 0) return {};
  return dispatch_act(dst_t, [&](auto td) {
    return dispatch_act(src_t, [&](auto ts) {
      using TD = typename decltype(td)::type;
      using TS = typename decltype(ts)::type;
      scatter_rows_kernel<<<unsigned(n), kBlock, 0, s>>>(static_cast<TD*>(dst), static_cast<const TS*>(src), rows,
                                                         cols);
      PIXTRAL_CUDA_LAUNCH_CHECK(scatter_rows_kernel);
      return Status{};
    });
  });
}

Status launch_bias_add(void* out, DType out_t, const bf16* bias, std::int64_t T, std::int64_t N, cudaStream_t s) {
  if (T * N == 0) return {};
  return dispatch_act(out_t, [&](auto to) {
    using TO = typename decltype(to)::type;
    bias_add_kernel<<<grid_for(T * N), kBlock, 0, s>>>(static_cast<TO*>(out), bias, T * N, N);
    PIXTRAL_CUDA_LAUNCH_CHECK(bias_add_kernel);
    return Status{};
  });
}

Status launch_rope(void* x, DType t, std::int64_t T, int n_heads, int head_dim, const int* pos_a, const int* pos_b,
                   const float* freq, int split, bool halves, cudaStream_t s) {
  const std::int64_t n = T * (head_dim / 2);  // (row, pair index) items; each covers every head
  if (n == 0 || n_heads == 0) return {};
  if (t == DType::bf16 && head_dim % 4 == 0 && split % 2 == 0 && (reinterpret_cast<std::uintptr_t>(x) & 7) == 0) {
    const std::int64_t n2 = n / 2;  // (row, pair-index pair) items
    rope_bf16_x2_kernel<<<grid_for(n2), kBlock, 0, s>>>(static_cast<bf16*>(x), n2, n_heads, head_dim, pos_a, pos_b,
                                                        freq, split, halves);
    PIXTRAL_CUDA_LAUNCH_CHECK(rope_bf16_x2_kernel);
    return {};
  }
  return dispatch_act(t, [&](auto tx) {
    using TX = typename decltype(tx)::type;
    rope_kernel<<<grid_for(n), kBlock, 0, s>>>(static_cast<TX*>(x), n, n_heads, head_dim, pos_a, pos_b, freq, split,
                                               halves);
    PIXTRAL_CUDA_LAUNCH_CHECK(rope_kernel);
    return Status{};
  });
}

Status launch_rope_append(void* qkv, DType t, void* k_cache, void* v_cache, DType cache_t, const int* pos, int nh,
                          int nkv, int head_dim, const float* freq, bool halves, cudaStream_t s) {
  const std::int64_t n = std::int64_t(nh + nkv) * (head_dim / 2) + std::int64_t(nkv) * head_dim;
  return dispatch_act(t, [&](auto tx) {
    return dispatch_act(cache_t, [&](auto tc) {
      using TX = typename decltype(tx)::type;
      using TC = typename decltype(tc)::type;
      launch_dependent(rope_append_kernel<TX, TC>, dim3(unsigned(ceil_div(n, kBlock))), dim3(kBlock), s,
                       static_cast<TX*>(qkv), static_cast<TC*>(k_cache), static_cast<TC*>(v_cache), pos, nh, nkv,
                       head_dim, freq, halves);
      PIXTRAL_CUDA_LAUNCH_CHECK(rope_append_kernel);
      return Status{};
    });
  });
}

Status launch_im2col(bf16* out, const void* pixels, DType pixels_t, int C, int H, int W, int P, cudaStream_t s) {
  const std::int64_t n = std::int64_t(H / P) * (W / P) * C * P * P;
  if (n == 0) return {};
  return dispatch_act(pixels_t, [&](auto tp) {
    using TP = typename decltype(tp)::type;
    im2col_kernel<<<grid_for(n), kBlock, 0, s>>>(out, static_cast<const TP*>(pixels), C, H, W, P, n);
    PIXTRAL_CUDA_LAUNCH_CHECK(im2col_kernel);
    return Status{};
  });
}

}  // namespace pixtral::cuda
