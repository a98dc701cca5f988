// SPDX-License-Identifier: Apache-2.0
// The CPU backend's compute kernels on raw fp32 pointers (cpu_backend.cpp validates shapes and calls these).
// All of them are deterministic: an output element is computed by one worker, in an order that does not depend
// on the number of threads (see thread_pool.h, cpu_simd.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "cpu/thread_pool.h"
#include "pixtral/status.h"

namespace pixtral::cpu {

/// Per-worker scratch buffers, grown on demand (outside the parallel region) and then reused, so steady-state
/// calls allocate nothing.
struct Workspace {
  std::vector<std::vector<float>> per_worker;  // [n_workers][floats]
  std::vector<std::int64_t> tag;               // per worker: which weight tile its buffer currently holds
  std::vector<float> bias;                     // [N] a matmul's bias in fp32

  /// Make every worker's buffer at least `floats` long; out_of_memory names `what`.
  Status reserve(int n_workers, std::size_t floats, std::string_view what);
};

/// out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias[N]); W stored as `w_dtype` at `w` (any alignment). fp32 accumulation.
/// T ≤ kSmallT: dot products reading W directly (GEMV); larger T: W converted to fp32 in tiles of whole rows,
/// each tile multiplied by OpenBLAS sgemm (single-threaded per tile) or the blocked fallback kernel.
struct MatmulArgs {
  float* out = nullptr;      // [T, N]
  const float* x = nullptr;  // [T, K]
  std::int64_t T = 0, K = 0, N = 0;
  const void* w = nullptr;   // [N, K] as w_dtype
  DType w_dtype = DType::f32;
  const void* bias = nullptr;  // [N] as bias_dtype, or null
  DType bias_dtype = DType::f32;
};
Status matmul(ThreadPool& pool, Workspace& ws, const MatmulArgs& a);

/// Rows of x at or below this count use the GEMV path.
inline constexpr std::int64_t kSmallT = 8;

/// Use BLAS for prefill tiles (default when built with it) or the in-house blocked kernel (tests, and the
/// environment variable PIXTRAL_CPU_NO_BLAS=1). Returns false when asked for BLAS in a build without it.
bool set_blas_enabled(bool on);
bool blas_enabled();

/// Configure BLAS for our use (single-threaded calls; we parallelise over tiles). Returns a description
/// ("OpenBLAS 0.3.21" or "no BLAS").
std::string blas_init();

/// Attention (see ops::AttentionParams): q [Tq, H*D], k/v [Tk, Hkv*D], out [Tq, H*D]. With BLAS, the two
/// products of each (head, query block) item go through sgemm (single-threaded, fixed shapes); without, through
/// the in-house kernel. Either way deterministic.
struct AttentionArgs {
  float* out = nullptr;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  std::int64_t Tq = 0, Tk = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 0;
  bool causal = false;
  int q_offset = 0;
  std::span<const int> segments;  // empty = one segment
};
Status attention(ThreadPool& pool, Workspace& ws, const AttentionArgs& a);

}  // namespace pixtral::cpu

namespace pixtral::cpu {

/// Rotate pairs of every head of x[T, n_heads * head_dim] in place: pair m of row t by angles[t * D/2 + m].
/// Interleaved pairs are dims (2m, 2m+1); halves pairs are (m, m + D/2).
/// x' = x_a cos − x_b sin, x_b' = x_a sin + x_b cos in fp32, with cos/sin of the fp32 angle evaluated in double
/// and rounded to fp32 (what torch's fp32 cos/sin give, to the last bit in almost every case).
void rope_apply(ThreadPool& pool, float* x, std::int64_t T, int n_heads, int head_dim, bool halves,
                const float* angles);

/// f[m] = 1 / theta^(2m / head_dim) in fp32, m < head_dim / 2 — torch's
/// `1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim))` (ref: mistral_inference/rope.py).
void rope_inv_freq(float theta, int head_dim, float* f);

}  // namespace pixtral::cpu
