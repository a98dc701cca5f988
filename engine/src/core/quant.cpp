// SPDX-License-Identifier: Apache-2.0
// Reference quantize/dequantize of the weight-only formats (see quant.h for the definitions).
#include "core/quant.h"

#include <algorithm>
#include <cmath>

namespace pixtral::quant {

const char* format_name(Format f) {
  switch (f) {
    case Format::dense: return "dense";
    case Format::int8_channel: return "int8";
    case Format::int4_g128: return "int4-g128";
  }
  return "?";
}

std::int64_t row_bytes(Format f, std::int64_t K) {
  switch (f) {
    case Format::int8_channel: return K;
    case Format::int4_g128: return K / 2;
    case Format::dense: break;
  }
  return 0;
}

std::int64_t scales_per_row(Format f, std::int64_t K) {
  switch (f) {
    case Format::int8_channel: return 1;
    case Format::int4_g128: return K / kInt4Group;
    case Format::dense: break;
  }
  return 0;
}

Status check_shape(Format f, std::int64_t N, std::int64_t K, const std::string& name) {
  if (f == Format::dense) return {};
  if (N <= 0 || K <= 0)
    return Status(ErrorCode::invalid_argument, "cannot quantize '" + name + "': empty shape");
  if (f == Format::int4_g128 && K % kInt4Group != 0)
    return Status(ErrorCode::unsupported, "cannot quantize '" + name + "' [" + std::to_string(N) + ", " +
                                              std::to_string(K) + "] to int4: its input dimension " +
                                              std::to_string(K) + " is not a multiple of the group size " +
                                              std::to_string(kInt4Group));
  return {};
}

namespace {

// int4_g128's scale source: of a and b the one of larger magnitude, on a tie the smaller (negative) one. Mirrored by
// kernels_quant.cu (a warp tree): the result does not depend on the order of the values.
inline float int4_extreme(float a, float b) {
  const float fa = std::fabs(a), fb = std::fabs(b);
  return fa > fb ? a : fb > fa ? b : std::min(a, b);
}

// q = clamp(rint(v / scale), lo, hi); 0 when scale == 0. Mirrored exactly by kernels_quant.cu.
inline int quantize_value(float v, float scale, int lo, int hi) {
  if (scale == 0.0f) return 0;
  const float r = std::rint(v / scale);
  return int(std::min(float(hi), std::max(float(lo), r)));
}

}  // namespace

void quantize_rows(const void* w, DType dtype, std::int64_t n0, std::int64_t n, std::int64_t K, Format f,
                   std::uint8_t* q, float* scales) {
  std::vector<float> row(static_cast<std::size_t>(K));
  const std::int64_t rb = row_bytes(f, K), spr = scales_per_row(f, K);
  for (std::int64_t i = 0; i < n; ++i) {
    convert_to_f32(static_cast<const char*>(w) + std::size_t((n0 + i) * K) * dtype_size(dtype), dtype,
                   std::size_t(K), row.data());
    std::uint8_t* qr = q + i * rb;
    float* sr = scales + i * spr;
    if (f == Format::int8_channel) {
      float m = 0;
      for (float v : row) m = std::max(m, std::fabs(v));
      const float s = m / float(kInt8Max);
      sr[0] = s;
      for (std::int64_t k = 0; k < K; ++k)
        qr[k] = std::uint8_t(std::int8_t(quantize_value(row[std::size_t(k)], s, -kInt8Max, kInt8Max)));
    } else if (f == Format::int4_g128) {
      for (std::int64_t g = 0; g < spr; ++g) {
        const float* v = row.data() + g * kInt4Group;
        float m = 0;  // the value of largest magnitude; on a tie the negative one (any scan order gives the same)
        for (int j = 0; j < kInt4Group; ++j) m = int4_extreme(m, v[j]);
        const float s = m == 0.0f ? 0.0f : m / float(kInt4Min);
        sr[g] = s;
        std::uint8_t* qg = qr + g * (kInt4Group / 2);
        for (int j = 0; j < kInt4Group / 2; ++j) {
          const int lo = quantize_value(v[2 * j], s, kInt4Min, kInt4Max);
          const int hi = quantize_value(v[2 * j + 1], s, kInt4Min, kInt4Max);
          qg[j] = std::uint8_t((lo & 0xF) | ((hi & 0xF) << 4));
        }
      }
    }
  }
}

void dequantize_row(const std::uint8_t* q, const float* scales, std::int64_t K, Format f, float* out) {
  if (f == Format::int8_channel) {
    const float s = scales[0];
    for (std::int64_t k = 0; k < K; ++k) out[k] = float(std::int8_t(q[k])) * s;
  } else if (f == Format::int4_g128) {
    for (std::int64_t k = 0; k < K; k += 2) {
      const float s = scales[k / kInt4Group];
      const std::uint8_t b = q[k / 2];
      out[k] = float(int4_lo(b)) * s;
      out[k + 1] = float(int4_hi(b)) * s;
    }
  }
}

Result<Matrix> quantize(const void* w, DType dtype, std::int64_t N, std::int64_t K, Format f,
                        const std::string& name) {
  PIXTRAL_RETURN_IF_ERROR(check_shape(f, N, K, name));
  if (f == Format::dense) return Status(ErrorCode::invalid_argument, "quantize '" + name + "': dense format");
  Matrix m;
  m.format = f;
  m.rows = N;
  m.cols = K;
  m.q.resize(std::size_t(N * row_bytes(f, K)));
  m.scales.resize(std::size_t(N * scales_per_row(f, K)));
  quantize_rows(w, dtype, 0, N, K, f, m.q.data(), m.scales.data());
  return m;
}

std::vector<float> dequantize(const Matrix& m) {
  std::vector<float> out(std::size_t(m.rows * m.cols));
  const std::int64_t rb = row_bytes(m.format, m.cols), spr = scales_per_row(m.format, m.cols);
  for (std::int64_t n = 0; n < m.rows; ++n)
    dequantize_row(m.q.data() + n * rb, m.scales.data() + n * spr, m.cols, m.format, out.data() + n * m.cols);
  return out;
}

}  // namespace pixtral::quant
