// SPDX-License-Identifier: Apache-2.0
// Weight-only quantization formats (issue 6) and their reference quantize/dequantize. The formats are what the
// backends store after a quantized upload (ops::Weight::format); the CPU backend's matmul and the CUDA kernels
// both read exactly these bytes, so the definitions here are the single source of truth.
//
// int8_channel — per-output-channel symmetric int8:
//   W[N, K] → q[N, K] int8 (row-major, one byte per value) and scale[N] fp32,
//   scale[n] = max_k |W[n, k]| / 127, q = clamp(rint(W / scale), −127, 127); W ≈ q · scale[n].
// int4_g128 — symmetric int4 in groups of 128 along the input dimension (K % 128 == 0, else `unsupported`):
//   W[N, K] → packed[N, K/2] bytes and scale[N, K/128] fp32 (may be negative),
//   scale[n, g] = m / −8 where m is the group's value of largest magnitude (on a tie the negative one), so that
//   m itself is exactly −8 and all 16 levels are used; q = clamp(rint(W / scale), −8, 7). Measured against
//   absmax / 7 (format version 1) and against zero points (tests/bench/int4_zero_point.py): relative MSE of
//   Gaussian groups 0.0106 vs 0.0138 (zero points 0.0101), heavy-tailed (Student-t 4) 0.029 vs 0.037 (0.021) —
//   most of the zero points' gain at no cost in the kernels (no zero point per group to subtract).
//   packing: byte j of row n holds element 2j in its LOW nibble and element 2j+1 in its HIGH nibble, each as a
//   4-bit two's-complement value (0x0..0x7 → 0..7, 0x8..0xF → −8..−1). A group is 64 consecutive bytes.
// All-zero rows/groups get scale 0 and q 0. Rounding: rint (nearest, ties to even) of the IEEE fp32 quotient
// W / scale, with W first converted to fp32 — the CUDA quantize kernel does the identical operations, so GPU and
// CPU quantized bytes are bit-identical.
// ref: llama.cpp ggml-quants.c (quantize_row_q8_0 / q4_0: symmetric absmax scales), GPTQ/AWQ's group size 128.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "pixtral/status.h"

namespace pixtral::quant {

enum class Format { dense, int8_channel, int4_g128 };
const char* format_name(Format f);  ///< "dense", "int8", "int4-g128"

inline constexpr int kInt4Group = 128;
inline constexpr int kInt8Max = 127;
inline constexpr int kInt4Max = 7;
inline constexpr int kInt4Min = -8;  ///< the level the group's largest-magnitude value maps to (scale = m / −8)

/// Bytes of quantized values of one row of K inputs (int8: K; int4: K/2).
std::int64_t row_bytes(Format f, std::int64_t K);
/// fp32 scales per row (int8: 1; int4: K/128).
std::int64_t scales_per_row(Format f, std::int64_t K);
/// Check that W [N, K] named `name` can be stored as `f` (int4 needs K % 128 == 0); `unsupported` names it.
Status check_shape(Format f, std::int64_t N, std::int64_t K, const std::string& name);

/// Quantize rows [n0, n0 + n) of W (stored as `dtype`, K values a row): q gets n·row_bytes, scales n·spr.
void quantize_rows(const void* w, DType dtype, std::int64_t n0, std::int64_t n, std::int64_t K, Format f,
                   std::uint8_t* q, float* scales);
/// Dequantize one row (q: row_bytes bytes, scales: spr values) to fp32 out[K]. The definition of the format.
void dequantize_row(const std::uint8_t* q, const float* scales, std::int64_t K, Format f, float* out);

/// One value of int4 byte b: low (element 2j) or high (element 2j+1) nibble as a signed value.
inline int int4_lo(std::uint8_t b) { return int(std::int8_t(std::uint8_t(b << 4)) >> 4); }
inline int int4_hi(std::uint8_t b) { return int(std::int8_t(b) >> 4); }

/// A whole quantized matrix on the host (tests, CPU backend).
struct Matrix {
  Format format = Format::dense;
  std::int64_t rows = 0, cols = 0;
  std::vector<std::uint8_t> q;  // rows · row_bytes
  std::vector<float> scales;    // rows · scales_per_row
};
Result<Matrix> quantize(const void* w, DType dtype, std::int64_t N, std::int64_t K, Format f,
                        const std::string& name);
std::vector<float> dequantize(const Matrix& m);  ///< [rows, cols] fp32

}  // namespace pixtral::quant
