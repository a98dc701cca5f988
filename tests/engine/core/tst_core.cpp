// SPDX-License-Identifier: Apache-2.0
// Core: dtype conversion matches IEEE rounding (round to nearest even), Status composition.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/tensor.h"
#include "pixtral/status.h"

using namespace pixtral;

TEST(Bf16, RoundsToNearestEven) {
  // 1 + 2^-8 is exactly half-way between bf16 1.0 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  // 1 + 3·2^-8 is half-way between 1+2^-7 (odd) and 1+2^-6 (even): rounds up to 1+2^-6.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
}

TEST(F16, RoundTripAndRounding) {
  for (float v : {0.0f, 1.0f, -1.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333333f}) {
    const float r = f16_to_f32(f32_to_f16(v));
    EXPECT_NEAR(r, v, std::fabs(v) * 1e-3f + 1e-7f) << v;
  }
  EXPECT_EQ(f16_to_f32(f32_to_f16(65520.0f)), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + std::ldexp(1.0f, -11))), 1.0f);  // tie → even
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11))), 1.0f + std::ldexp(1.0f, -9));
  // Subnormal half-way case: 1.5 · 2^-24 rounds to 2 · 2^-24 (even).
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.5f * std::ldexp(1.0f, -24))), std::ldexp(1.0f, -23));
}

TEST(Status, ContextAndNames) {
  Status s(ErrorCode::format, "bad header");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.with_context("model.safetensors").message(), "model.safetensors: bad header");
  EXPECT_EQ(s.to_string(), "format: bad header");
  Result<int> r(ErrorCode::not_found, "x");
  EXPECT_FALSE(r.ok());
  Result<int> v(3);
  EXPECT_EQ(*v, 3);
}
