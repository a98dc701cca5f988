// SPDX-License-Identifier: Apache-2.0
// core/quant: the int8 per-channel and int4 group-128 formats — round-trip error bounds (half a quantization step
// per element; int4: the clamped side within a step), int8 scales = absmax / 127, int4 scales = m / −8 (m the
// largest-magnitude value, the negative one on a tie), the documented int4 nibble packing, zero rows, dtype independence and the
// refusal of an int4 input dimension that is not a multiple of 128 (naming the tensor).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/quant.h"

namespace pixtral {
namespace {

using quant::Format;

std::vector<float> random_rows(std::int64_t N, std::int64_t K, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(std::size_t(N * K));
  for (std::int64_t n = 0; n < N; ++n) {
    const float row_scale = 0.01f * float(1 + n % 7);  // rows of different magnitude: per-row scales matter
    for (std::int64_t k = 0; k < K; ++k) v[std::size_t(n * K + k)] = row_scale * nd(g);
  }
  v[5] = 40.f * 0.01f;  // an outlier in row 0
  return v;
}

TEST(QuantFormat, Int8RoundTripWithinHalfStep) {
  const std::int64_t N = 37, K = 200;  // int8 takes any K
  const auto w = random_rows(N, K, 1);
  auto m = quant::quantize(w.data(), DType::f32, N, K, Format::int8_channel, "w");
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_EQ(m->scales.size(), std::size_t(N));
  ASSERT_EQ(m->q.size(), std::size_t(N * K));
  const auto d = quant::dequantize(*m);
  for (std::int64_t n = 0; n < N; ++n) {
    float amax = 0;
    for (std::int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(w[std::size_t(n * K + k)]));
    const float s = m->scales[std::size_t(n)];
    EXPECT_EQ(s, amax / 127.f) << "row " << n;
    bool hit_max = false;
    for (std::int64_t k = 0; k < K; ++k) {
      const std::size_t i = std::size_t(n * K + k);
      EXPECT_LE(std::fabs(d[i] - w[i]), 0.5f * s * (1 + 1e-5f)) << "row " << n << " col " << k;
      const int q = std::int8_t(m->q[i]);
      EXPECT_GE(q, -127);
      EXPECT_LE(q, 127);
      hit_max |= std::abs(q) == 127;
    }
    EXPECT_TRUE(hit_max) << "the absmax element of row " << n << " must map to ±127";
  }
}

TEST(QuantFormat, Int4RoundTripWithinItsStepsPerGroup) {
  const std::int64_t N = 9, K = 384;
  const auto w = random_rows(N, K, 2);
  auto m = quant::quantize(w.data(), DType::f32, N, K, Format::int4_g128, "w");
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_EQ(m->scales.size(), std::size_t(N * 3));
  ASSERT_EQ(m->q.size(), std::size_t(N * K / 2));
  const auto d = quant::dequantize(*m);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t g = 0; g < 3; ++g) {
      // scale = m / −8 for m the group's largest-magnitude value (the negative one on a tie): m is exactly −8
      // steps; values within 7.5 steps on the other side are within half a step, the rest (up to 8 steps, the
      // +7 clamp) within one step.
      float mval = 0;
      for (std::int64_t k = g * 128; k < (g + 1) * 128; ++k) {
        const float v = w[std::size_t(n * K + k)];
        if (std::fabs(v) > std::fabs(mval) || (std::fabs(v) == std::fabs(mval) && v < mval)) mval = v;
      }
      const float s = m->scales[std::size_t(n * 3 + g)];
      EXPECT_EQ(s, mval / -8.f);
      const float step = std::fabs(s);
      for (std::int64_t k = g * 128; k < (g + 1) * 128; ++k) {
        const std::size_t i = std::size_t(n * K + k);
        if (w[i] == mval) {
          EXPECT_EQ(d[i], w[i]) << "the extreme value maps to -8 exactly, row " << n << " col " << k;
        }
        const float bound = std::fabs(w[i] / s) <= 7.5f ? 0.5f * step : step;
        EXPECT_LE(std::fabs(d[i] - w[i]), bound * (1 + 1e-5f)) << "row " << n << " col " << k;
      }
    }
  // Relative error of the whole matrix: int4 with 128-groups of Gaussian data is ~10% RMS, int8 ~1%.
  double e = 0, r = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    e += double(d[i] - w[i]) * (d[i] - w[i]);
    r += double(w[i]) * w[i];
  }
  EXPECT_LT(std::sqrt(e / r), 0.2);
}

TEST(QuantFormat, Int4PackingLowNibbleIsEvenElement) {
  // Values that are exact multiples of the scale: q[k] chosen, w = q * 0.25 with −8 in the group (the
  // largest-magnitude value, so the scale is −2 / −8 = 0.25).
  const std::int64_t K = 128;
  std::vector<float> w(K);
  std::vector<int> q(K);
  for (int k = 0; k < K; ++k) {
    q[std::size_t(k)] = (k * 5) % 16 - 8;  // −8..7
    w[std::size_t(k)] = float(q[std::size_t(k)]) * 0.25f;
  }
  auto m = quant::quantize(w.data(), DType::f32, 1, K, Format::int4_g128, "w");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->scales[0], 0.25f);
  for (int j = 0; j < K / 2; ++j) {
    const std::uint8_t b = m->q[std::size_t(j)];
    EXPECT_EQ(b & 0xF, q[std::size_t(2 * j)] & 0xF) << "byte " << j;
    EXPECT_EQ(b >> 4, q[std::size_t(2 * j + 1)] & 0xF) << "byte " << j;
    EXPECT_EQ(quant::int4_lo(b), q[std::size_t(2 * j)]);
    EXPECT_EQ(quant::int4_hi(b), q[std::size_t(2 * j + 1)]);
  }
  const auto d = quant::dequantize(*m);
  for (int k = 0; k < K; ++k) EXPECT_EQ(d[std::size_t(k)], w[std::size_t(k)]);
}

TEST(QuantFormat, Int4ScaleFollowsTheLargestMagnitudeNegativeOnATie) {
  const std::int64_t K = 128;
  std::vector<float> w(std::size_t(2 * K), 0.01f);
  w[5] = 0.8f;  // row 0: the extreme is positive → negative scale, 0.8 ↦ −8
  w[7] = -0.3f;
  w[K + 3] = 0.6f;  // row 1: +0.6 and −0.6 tie → the negative one sets the scale, −0.6 ↦ −8, +0.6 clamps to 7
  w[K + 90] = -0.6f;
  auto m = quant::quantize(w.data(), DType::f32, 2, K, Format::int4_g128, "w");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->scales[0], 0.8f / -8.f);
  EXPECT_EQ(m->scales[1], 0.6f / 8.f);
  const auto d = quant::dequantize(*m);
  EXPECT_EQ(d[5], 0.8f);
  EXPECT_EQ(d[std::size_t(K + 90)], -0.6f);
  EXPECT_FLOAT_EQ(d[std::size_t(K + 3)], 7 * 0.6f / 8.f);
  // The same values in another order give the same scale (the GPU reduces them as a tree).
  std::vector<float> r(w.rbegin() + K, w.rend());
  auto mr = quant::quantize(r.data(), DType::f32, 1, K, Format::int4_g128, "w");
  ASSERT_TRUE(mr.ok());
  EXPECT_EQ(mr->scales[0], m->scales[0]);
}

TEST(QuantFormat, ZeroRowsAndGroupsGetZeroScale) {
  const std::int64_t N = 2, K = 256;
  std::vector<float> w(std::size_t(N * K), 0.f);
  for (std::int64_t k = 128; k < K; ++k) w[std::size_t(K + k)] = 0.5f;  // row 1, group 1 only
  for (Format f : {Format::int8_channel, Format::int4_g128}) {
    auto m = quant::quantize(w.data(), DType::f32, N, K, f, "w");
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->scales[0], 0.f) << quant::format_name(f);
    const auto d = quant::dequantize(*m);
    for (std::size_t i = 0; i < d.size(); ++i) {
      EXPECT_FALSE(std::isnan(d[i]));
      EXPECT_EQ(d[i], w[i]) << quant::format_name(f) << " element " << i;  // 0 and 0.5 = ±max are exact
    }
  }
}

TEST(QuantFormat, SourceDtypeOnlyMattersThroughItsValues) {
  const std::int64_t N = 4, K = 256;
  auto w = random_rows(N, K, 3);
  std::vector<std::uint16_t> b(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    b[i] = f32_to_bf16(w[i]);
    w[i] = bf16_to_f32(b[i]);  // the same values in f32
  }
  for (Format f : {Format::int8_channel, Format::int4_g128}) {
    auto a = quant::quantize(w.data(), DType::f32, N, K, f, "w");
    auto c = quant::quantize(b.data(), DType::bf16, N, K, f, "w");
    ASSERT_TRUE(a.ok() && c.ok());
    EXPECT_EQ(a->q, c->q);
    EXPECT_EQ(a->scales, c->scales);
  }
}

TEST(QuantFormat, Int4RefusesInputDimensionNotMultipleOf128) {
  std::vector<float> w(5 * 200, 1.f);
  auto m = quant::quantize(w.data(), DType::f32, 5, 200, Format::int4_g128, "layers.3.attention.wo.weight");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), ErrorCode::unsupported);
  EXPECT_NE(m.status().message().find("layers.3.attention.wo.weight"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("128"), std::string::npos);
  EXPECT_TRUE(quant::check_shape(Format::int8_channel, 5, 200, "w").ok());
}

}  // namespace
}  // namespace pixtral
