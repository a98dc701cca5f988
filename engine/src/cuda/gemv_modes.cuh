// SPDX-License-Identifier: Apache-2.0
// What a decode GEMV warp computes and writes (shared by the bf16 GEMV, kernels_gemv.cu, and the int8/int4 one,
// kernels_quant.cu). One warp = one work item = one or two W rows:
//   plain: item n = row n, out[t, n] = x[t]·W[n] (+ bias[n]).
//   silu:  W = [w1; w3] (2F rows); item f = rows f and F + f, out[t, f] = silu(g)·u with g and u rounded to the
//          output dtype first (the bits of a matmul into [g | u] followed by silu_mul).
//   rope:  W = [wq; wk; wv], one x row; item i < (nh + nkv)·hd/2 = the RoPE pair i of q | k (head i / (hd/2),
//          pair m = i % (hd/2): dims (m, m + hd/2) for halves, (2m, 2m + 1) interleaved), rotated by
//          float(pos)·freq[m] exactly as rope_append_kernel does (values rounded to the output dtype first, cos/sin
//          in double, four separately rounded products); q pairs go to out (qkv), k pairs to k_cache row pos;
//          the items after are pairs of v dims copied to v_cache row pos. qkv's k and v parts are not written.
//          The bits of matmul into qkv followed by rope_append_kv (k/v caches in the output dtype).
//   residual: item n = row n, out[t, n] = round(h[t, n] + round(x[t]·W[n] (+ bias[n]))) with out = h, both roundings
//          to h's dtype: the bits of a matmul into a tmp of h's dtype followed by add(h, tmp) (matmul_add). The
//          storing lane reads h[t, n] right after the dependent-launch wait (gemv_item_pre_late), so that L2 round
//          trip is not at the end of the kernel; h[t, n] is read and written by that lane alone, so in place is safe.
#pragma once

#include "cuda/common.cuh"

namespace pixtral::cuda {

enum class GemvMode { plain, silu, rope, residual };

/// The rope mode's extra arguments (ignored by the other modes), and q4mma's precomputed corrections (x_corr).
struct RopeAppendArgs {
  void* k_cache = nullptr;  // [capacity, nkv·hd] in the output dtype; row *pos written
  void* v_cache = nullptr;
  const int* pos = nullptr;     // device: the position (host-staged or the decode state)
  const float* freq = nullptr;  // [hd/2]
  int nh = 0, nkv = 0, hd = 0;
  bool halves = false;
  // q4mma with T > 1 (kernels_q4mma.cu): -136 · Σx of each x row and group of 128, [T][K / 128], computed once for
  // every block by q4mma_corrections (null: each warp computes its own).
  const float* x_corr = nullptr;
};

constexpr int gemv_rows_per_item(GemvMode m) {
  return m == GemvMode::plain || m == GemvMode::residual ? 1 : 2;
}

/// Work items of a launch: N output features (plain, residual), F (silu), or the rope mode's pairs.
inline int gemv_items(GemvMode m, int N, const RopeAppendArgs& ra) {
  if (m != GemvMode::rope) return N;
  return (ra.nh + ra.nkv) * (ra.hd / 2) + ra.nkv * ra.hd / 2;
}

/// The W rows of item n (N: plain/silu output count).
template <GemvMode M>
__device__ __forceinline__ void gemv_item_rows(int n, int N, const RopeAppendArgs& ra, int rows[2]) {
  if constexpr (M == GemvMode::plain || M == GemvMode::residual) {
    rows[0] = n;
  } else if constexpr (M == GemvMode::silu) {
    rows[0] = n;
    rows[1] = N + n;
  } else {
    const int half = ra.hd / 2, n_rot = (ra.nh + ra.nkv) * half;
    if (n < n_rot) {
      const int hh = n / half, m = n % half;
      rows[0] = hh * ra.hd + (ra.halves ? m : 2 * m);
      rows[1] = hh * ra.hd + (ra.halves ? m + half : 2 * m + 1);
    } else {  // v dims 2j, 2j + 1
      const int base = (ra.nh + ra.nkv) * ra.hd + 2 * (n - n_rot);
      rows[0] = base;
      rows[1] = base + 1;
    }
  }
}

/// What the storing thread of (item n, x row t) needs besides the dot products, read or computed before its main
/// loop so that no dependent load or long computation sits at the end of every warp:
///   rope mode (gemv_item_pre_early, BEFORE the dependent-launch wait): the position and, for a q | k pair, cos/sin
///   of float(pos)·freq[m] (double sincos, ~100 dependent fp64 instructions, and freq[m] an L2 round trip). No
///   kernel of the decode step writes them — the position is the host's (staged by a copy, which a kernel never
///   overlaps) or the decode state's (written by the host before the step), freq is constant — so they are read
///   while the previous kernel drains instead of after it;
///   residual mode (gemv_item_pre_late, after the wait): h[t, n] as it was before this kernel (in place is safe:
///   that thread alone reads and writes it), kept as loaded and converted only at the store, so that the thread does
///   not stall on the load before its main loop.
template <class TO>
struct GemvItemPre {
  TO prior{};
  float cs = 0.f, sn = 0.f;
  int pos = 0;
};

template <GemvMode M, class TO>
__device__ __forceinline__ void gemv_item_pre_early(GemvItemPre<TO>& pre, int n, const RopeAppendArgs& ra) {
  if constexpr (M == GemvMode::rope) {
    const int half = ra.hd / 2, n_rot = (ra.nh + ra.nkv) * half;
    pre.pos = *ra.pos;
    if (n < n_rot) {
      const float angle = __fmul_rn(float(pre.pos), ra.freq[n % half]);
      double sd, cd;
      sincos(double(angle), &sd, &cd);
      pre.sn = float(sd);
      pre.cs = float(cd);
    }
  }
}

template <GemvMode M, class TO>
__device__ __forceinline__ void gemv_item_pre_late(GemvItemPre<TO>& pre, const TO* out, int t, int n, int N) {
  if constexpr (M == GemvMode::residual) pre.prior = out[std::int64_t(t) * N + n];
}

/// Lane 0's write of item n for x row t; v holds the item's fp32 dot products (scales applied); pre: what
/// gemv_item_pre_early / _late read and computed.
template <GemvMode M, class TO>
__device__ __forceinline__ void gemv_item_store(TO* out, int t, int n, int N, const float v[2], const bf16* bias,
                                                const RopeAppendArgs& ra, const GemvItemPre<TO>& pre) {
  if constexpr (M == GemvMode::plain) {
    const float b = bias ? __bfloat162float(bias[n]) : 0.f;
    out[std::int64_t(t) * N + n] = from_f32<TO>(v[0] + b);
  } else if constexpr (M == GemvMode::residual) {
    const float b = bias ? __bfloat162float(bias[n]) : 0.f;
    out[std::int64_t(t) * N + n] = from_f32<TO>(to_f32(pre.prior) + to_f32(from_f32<TO>(v[0] + b)));
  } else if constexpr (M == GemvMode::silu) {
    out[std::int64_t(t) * N + n] = silu_mul_rounded<TO>(v[0], v[1]);
  } else {
    const int half = ra.hd / 2, n_rot = (ra.nh + ra.nkv) * half;
    const std::int64_t kvd = std::int64_t(ra.nkv) * ra.hd, row0 = std::int64_t(pre.pos) * kvd;
    if (n < n_rot) {
      const int hh = n / half, m = n % half;
      const float x0 = to_f32(from_f32<TO>(v[0])), x1 = to_f32(from_f32<TO>(v[1]));
      const float sn = pre.sn, cs = pre.cs;
      const TO r0 = from_f32<TO>(__fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn)));
      const TO r1 = from_f32<TO>(__fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs)));
      const int i0 = ra.halves ? m : 2 * m, i1 = ra.halves ? m + half : 2 * m + 1;
      if (hh < ra.nh) {
        out[std::int64_t(hh) * ra.hd + i0] = r0;
        out[std::int64_t(hh) * ra.hd + i1] = r1;
      } else {
        TO* krow = static_cast<TO*>(ra.k_cache) + row0 + std::int64_t(hh - ra.nh) * ra.hd;
        krow[i0] = r0;
        krow[i1] = r1;
      }
    } else {
      const std::int64_t e = 2 * std::int64_t(n - n_rot);
      static_cast<TO*>(ra.v_cache)[row0 + e] = from_f32<TO>(v[0]);
      static_cast<TO*>(ra.v_cache)[row0 + e + 1] = from_f32<TO>(v[1]);
    }
  }
}

}  // namespace pixtral::cuda
