// SPDX-License-Identifier: Apache-2.0
// Portable 8-lane fp32 vectors (GCC/Clang vector extensions) and the canonical dot-product order.
// Every dot product in the CPU backend sums the same way: 8 lane accumulators over k = 0, 8, 16, ... (k < K8),
// a fixed pairwise tree over the lanes, then the K % 8 tail added in index order. Kernels that compute several
// dots at once keep this per-element order, so an element's value never depends on how work was grouped.
// x86-64 kernels are compiled twice (generic SSE2 and AVX2+FMA) and chosen at run time (have_avx2()).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/tensor.h"

#if defined(__GNUC__) || defined(__clang__)
#define PIXTRAL_INLINE inline __attribute__((always_inline))
#else
#define PIXTRAL_INLINE inline
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PIXTRAL_X86_DISPATCH 1
#define PIXTRAL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define PIXTRAL_X86_DISPATCH 0
#define PIXTRAL_TARGET_AVX2
#endif

// The 32-byte vectors below never cross a non-inlined call boundary, so the ABI note does not apply.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace pixtral::cpu {

typedef float v8f __attribute__((vector_size(32)));
typedef std::uint16_t v8u16 __attribute__((vector_size(16)));
typedef std::uint32_t v8u32 __attribute__((vector_size(32)));

PIXTRAL_INLINE v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
PIXTRAL_INLINE void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }
/// 8 bf16 values (any alignment) → fp32 (exact: bf16 is the top half of an fp32).
PIXTRAL_INLINE v8f load8_bf16(const void* p) {
  v8u16 h;
  std::memcpy(&h, p, sizeof h);
  v8u32 u = __builtin_convertvector(h, v8u32) << 16;
  v8f f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
PIXTRAL_INLINE v8f splat8(float s) { return v8f{s, s, s, s, s, s, s, s}; }
/// The canonical lane reduction: ((0+4)+(2+6)) + ((1+5)+(3+7)).
PIXTRAL_INLINE float hsum8(v8f a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/// Is the AVX2+FMA code path usable on this CPU?
bool have_avx2();

/// fp32 value of every f16 bit pattern (built once).
const float* f16_table();

/// Convert rows [r0, r0 + n) of a [*, cols] matrix stored as `dtype` at `src` (any alignment) into dst[n, cols].
void convert_rows_f32(const void* src, DType dtype, std::int64_t r0, std::int64_t n, std::int64_t cols, float* dst);

/// The canonical fp32 dot product (see the file comment).
float dot_f32(const float* a, const float* b, std::int64_t n);

}  // namespace pixtral::cpu
