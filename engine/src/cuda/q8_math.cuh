// SPDX-License-Identifier: Apache-2.0
// The int8 (and the int4 scalar path's) magic-number conversions and the one-row int8 × bf16 chunk arithmetic,
// shared by the scalar quantized GEMV (kernels_quant.cu) and the TMA-fed int8 GEMV (kernels_q8tma.cu): a row's
// products and sums in the same order in both, so the two kernels give the same bits.
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace pixtral::cuda {

// Exact int → float without the I2F unit (16 conversions/clock/SM on Hopper, an eighth of the FMA rate: the
// bottleneck of a GEMV that converts every weight). A byte or nibble m in offset binary (the stored two's
// complement value XOR 0x80 / 0x8) is placed in the mantissa of 2^23: the float 2^23 + m·2^p is exact, and one
// FADD of −(2^23 + bias·2^p) leaves the signed value times 2^p.
constexpr float kMagic = 8388608.0f;  // 2^23

// Signed byte j (0..3) of word u as a float; `ux` is u ^ 0x80808080.
__device__ __forceinline__ float int8_byte(std::uint32_t ux, int j) {
  return __int_as_float(int(__byte_perm(ux, 0x4B000000u, 0x7440u + unsigned(j)))) - (kMagic + 128.0f);
}

// The 4 values of 32-bit word `u` of an int8 chunk (magic-number conversion, see int8_byte).
__device__ __forceinline__ void unpack_int8_word(std::uint32_t u, float f[4]) {
  const std::uint32_t ux = u ^ 0x80808080u;
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = int8_byte(ux, j);
}

// kernels_quant.cu's accumulate, int8 path, for one x row already loaded (the chunk's 16 bf16 as two 16-byte words):
// the same FMAs in the same order.
__device__ __forceinline__ void accumulate_int8_x(const uint4& wv, const uint4 xw[2], float& acc) {
  const std::uint32_t u[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float wf[8], xf[8];
    unpack_int8_word(u[2 * h], wf);
    unpack_int8_word(u[2 * h + 1], wf + 4);
    bf16x8_to_f32(xw[h], xf);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc = fmaf(wf[e], xf[e], acc);
  }
}

}  // namespace pixtral::cuda
