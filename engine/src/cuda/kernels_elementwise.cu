// SPDX-License-Identifier: Apache-2.0
// Row-wise and element-wise kernels: conversion, embedding gather, RMSNorm (plain and fused with the residual
// add), add, SiLU·mul, GELU (erf), row scatter, bias add, RoPE (1-D and 2-D through one kernel), im2col.
// All math in fp32; results rounded once to the output dtype (round to nearest even). Reductions use a fixed
// shuffle tree, so results are bit-identical run after run.
// CPU twins: engine/src/cpu (ops::make_cpu_backend). ref: llm.c llmc/layernorm.cuh, llmc/gelu.cuh.
#include <cmath>

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
    const float g = to_f32(gate[i]);
    const float silu = g / (1.0f + expf(-g));
    out[i] = from_f32<TO>(silu * to_f32(up[i]));
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
__global__ void rope_kernel(T* x, std::int64_t n_pairs_total, int n_heads, int head_dim, const int* pos_a,
                            const int* pos_b, const float* freq, int split, bool halves) {
  const int half = head_dim / 2;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n_pairs_total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const int m = int(i % half);
    const std::int64_t th = i / half;  // row * n_heads + head
    const std::int64_t t = th / n_heads;
    const int pos = m < split ? pos_a[t] : pos_b[t];
    const float angle = __fmul_rn(float(pos), freq[m]);
    double sd, cd;
    sincos(double(angle), &sd, &cd);
    const float sn = float(sd), cs = float(cd);
    T* head = x + th * head_dim;
    const int i0 = halves ? m : 2 * m;
    const int i1 = halves ? m + half : 2 * m + 1;
    const float x0 = to_f32(head[i0]), x1 = to_f32(head[i1]);
    head[i0] = from_f32<T>(__fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn)));
    head[i1] = from_f32<T>(__fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs)));
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
__global__ void im2col_kernel(bf16* out, const float* pixels, int C, int H, int W, int P, std::int64_t n) {
  const int cols_p = W / P;
  const int K = C * P * P;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t p = i / K;
    const int k = int(i % K);
    const int ch = k / (P * P), ky = (k / P) % P, kx = k % P;
    const int r = int(p / cols_p), c = int(p % cols_p);
    out[i] = __float2bfloat16_rn(pixels[(std::int64_t(ch) * H + r * P + ky) * W + c * P + kx]);
  }
}

template <class F>
Status dispatch_src(DType t, F&& f) {  // f32, bf16 or f16 sources (weights at upload)
  if (t == DType::f16) return f(Tag<__half>{});
  return dispatch_act(t, f);
}

int norm_block(std::int64_t D) { return D >= 4096 ? 1024 : D >= 1024 ? 512 : D >= 256 ? 256 : 128; }

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
  const std::int64_t n = T * n_heads * (head_dim / 2);
  if (n == 0) return {};
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
      rope_append_kernel<<<ceil_div(n, kBlock), kBlock, 0, s>>>(static_cast<TX*>(qkv), static_cast<TC*>(k_cache),
                                                                static_cast<TC*>(v_cache), pos, nh, nkv, head_dim,
                                                                freq, halves);
      PIXTRAL_CUDA_LAUNCH_CHECK(rope_append_kernel);
      return Status{};
    });
  });
}

Status launch_im2col(bf16* out, const float* pixels, int C, int H, int W, int P, cudaStream_t s) {
  const std::int64_t n = std::int64_t(H / P) * (W / P) * C * P * P;
  if (n == 0) return {};
  im2col_kernel<<<grid_for(n), kBlock, 0, s>>>(out, pixels, C, H, W, P, n);
  PIXTRAL_CUDA_LAUNCH_CHECK(im2col_kernel);
  return {};
}

}  // namespace pixtral::cuda
