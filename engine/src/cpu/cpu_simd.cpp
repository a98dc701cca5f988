// SPDX-License-Identifier: Apache-2.0
// Run-time CPU feature check, dtype → fp32 row conversion and the canonical dot product (see cpu_simd.h).
#include "cpu/cpu_simd.h"

#include <memory>

namespace pixtral::cpu {

bool have_avx2() {
#if PIXTRAL_X86_DISPATCH
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

const float* f16_table() {
  static const std::unique_ptr<float[]> table = [] {
    auto t = std::make_unique<float[]>(65536);
    for (std::uint32_t h = 0; h < 65536; ++h) t[h] = f16_to_f32(std::uint16_t(h));
    return t;
  }();
  return table.get();
}

namespace {

PIXTRAL_INLINE void convert_body(const void* src, DType dtype, std::int64_t r0, std::int64_t n, std::int64_t cols,
                                 float* dst) {
  const std::int64_t count = n * cols;
  const auto* p = static_cast<const unsigned char*>(src) + std::size_t(r0 * cols) * dtype_size(dtype);
  if (dtype == DType::f32) {
    std::memcpy(dst, p, std::size_t(count) * 4);
  } else if (dtype == DType::bf16) {
    std::int64_t i = 0;
    for (; i + 8 <= count; i += 8) store8(dst + i, load8_bf16(p + 2 * i));
    for (; i < count; ++i) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      dst[i] = bf16_to_f32(h);
    }
  } else {
    const float* table = f16_table();
    for (std::int64_t i = 0; i < count; ++i) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      dst[i] = table[h];
    }
  }
}
void convert_generic(const void* src, DType dtype, std::int64_t r0, std::int64_t n, std::int64_t cols, float* dst) {
  convert_body(src, dtype, r0, n, cols, dst);
}
#if PIXTRAL_X86_DISPATCH
PIXTRAL_TARGET_AVX2 void convert_avx2(const void* src, DType dtype, std::int64_t r0, std::int64_t n,
                                      std::int64_t cols, float* dst) {
  convert_body(src, dtype, r0, n, cols, dst);
}
#endif

PIXTRAL_INLINE float dot_body(const float* a, const float* b, std::int64_t n) {
  const std::int64_t n8 = n & ~std::int64_t(7);
  v8f c = {};
  for (std::int64_t k = 0; k < n8; k += 8) c += load8(a + k) * load8(b + k);
  float s = hsum8(c);
  for (std::int64_t k = n8; k < n; ++k) s += a[k] * b[k];
  return s;
}
float dot_generic(const float* a, const float* b, std::int64_t n) { return dot_body(a, b, n); }
#if PIXTRAL_X86_DISPATCH
PIXTRAL_TARGET_AVX2 float dot_avx2(const float* a, const float* b, std::int64_t n) { return dot_body(a, b, n); }
#endif

}  // namespace

void convert_rows_f32(const void* src, DType dtype, std::int64_t r0, std::int64_t n, std::int64_t cols, float* dst) {
#if PIXTRAL_X86_DISPATCH
  if (have_avx2()) return convert_avx2(src, dtype, r0, n, cols, dst);
#endif
  convert_generic(src, dtype, r0, n, cols, dst);
}

float dot_f32(const float* a, const float* b, std::int64_t n) {
#if PIXTRAL_X86_DISPATCH
  if (have_avx2()) return dot_avx2(a, b, n);
#endif
  return dot_generic(a, b, n);
}

}  // namespace pixtral::cpu
