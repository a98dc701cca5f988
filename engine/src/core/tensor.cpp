// SPDX-License-Identifier: Apache-2.0
// fp16 conversion (IEEE binary16, round to nearest even) and bulk conversion of stored tensors to fp32.
#include <cmath>

#include "core/tensor.h"
#include "ops/backend.h"

namespace pixtral {

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      u = sign | std::uint32_t(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::uint16_t f32_to_f16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;            // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;           // overflow (≥ 65520 rounds to inf)
  if (abs < 0x38800000u) {                                  // subnormal or zero in f16
    // value = abs as float; f16 subnormal unit = 2^-24
    const float a = std::fabs(f);
    const float scaled = a * 16777216.0f;  // a / 2^-24, exact (power of two)
    const float r = std::nearbyint(scaled);  // FE_TONEAREST: half to even
    return sign | std::uint16_t(r);
  }
  std::uint32_t e = (abs >> 23) - 127 + 15;
  std::uint32_t m = abs & 0x7fffffu;
  std::uint32_t h = (e << 10) | (m >> 13);
  const std::uint32_t rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carries into exponent correctly
  return sign | std::uint16_t(h);
}

void convert_to_f32(const void* src, DType t, std::size_t n, float* dst) {
  const auto* b = static_cast<const unsigned char*>(src);
  switch (t) {
    case DType::f32:
      std::memcpy(dst, src, n * 4);
      break;
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      break;
    case DType::f16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      break;
  }
}

namespace ops {
void Backend::trace(std::string_view name, const Tensor& t) {
  if (!trace_) return;
  std::vector<float> host(std::size_t(t.rows * t.cols));
  if (download(t, host.data()).ok()) trace_(name, host, t.rows, t.cols);
}
}  // namespace ops

}  // namespace pixtral
