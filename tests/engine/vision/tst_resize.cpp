// SPDX-License-Identifier: Apache-2.0
// Bicubic resize: identity at equal sizes, constants stay constant, and agreement with an independent direct
// (non-separable, double precision) evaluation of the Keys kernel with A = −0.75 at OpenCV's sample positions.
// Bit-level parity with cv2 itself is checked against fixtures in tst_vision_fixtures.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "vision/preprocess.h"
#include "vision/resize.h"

using namespace pixtral::vision;

namespace {

std::vector<float> pattern(int w, int h, int cn, std::uint32_t seed) {
  std::vector<float> v(std::size_t(w) * h * cn);
  std::uint32_t s = seed;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = float(s >> 24);  // 0..255, like image data
  }
  return v;
}

// Keys' cubic convolution kernel, textbook form.
double keys(double x) {
  const double a = -0.75;
  x = std::fabs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// dst(x, y) = Σ_ij src(clamp(i), clamp(j)) · K(u − i) · K(v − j), u = (x + 0.5)·S/T − 0.5.
std::vector<double> direct(const std::vector<float>& src, int sw, int sh, int cn, int dw, int dh) {
  std::vector<double> out(std::size_t(dw) * dh * cn);
  for (int y = 0; y < dh; ++y) {
    const double v = (y + 0.5) * sh / dh - 0.5;
    const int j0 = int(std::floor(v));
    for (int x = 0; x < dw; ++x) {
      const double u = (x + 0.5) * sw / dw - 0.5;
      const int i0 = int(std::floor(u));
      for (int c = 0; c < cn; ++c) {
        double acc = 0;
        for (int j = j0 - 1; j <= j0 + 2; ++j)
          for (int i = i0 - 1; i <= i0 + 2; ++i) {
            const int ci = std::clamp(i, 0, sw - 1), cj = std::clamp(j, 0, sh - 1);
            acc += src[(std::size_t(cj) * sw + ci) * cn + c] * keys(u - i) * keys(v - j);
          }
        out[(std::size_t(y) * dw + x) * cn + c] = acc;
      }
    }
  }
  return out;
}

}  // namespace

TEST(Resize, EqualSizesCopy) {
  const auto src = pattern(23, 17, 3, 1);
  EXPECT_EQ(resize_bicubic(src.data(), 23, 17, 3, 23, 17), src);
}

// One axis at scale 1 gets weights (0, 1, 0, 0), so a pure vertical resize leaves every column's values where
// the same resize of that column alone puts them.
TEST(Resize, UnitScaleAxisIsExact) {
  const auto src = pattern(9, 14, 1, 2);
  const auto out = resize_bicubic(src.data(), 9, 14, 1, 9, 31);
  for (int x = 0; x < 9; ++x) {
    std::vector<float> col(14);
    for (int y = 0; y < 14; ++y) col[y] = src[y * 9 + x];
    const auto c = resize_bicubic(col.data(), 1, 14, 1, 1, 31);
    for (int y = 0; y < 31; ++y) ASSERT_EQ(out[y * 9 + x], c[y]) << x << "," << y;
  }
}

TEST(Resize, ConstantStaysConstant) {
  for (auto [dw, dh] : {std::pair{31, 64}, {250, 91}, {1, 1}, {100, 37}, {7, 300}}) {
    std::vector<float> src(100 * 37 * 3, 77.25f);
    const auto out = resize_bicubic(src.data(), 100, 37, 3, dw, dh);
    ASSERT_EQ(out.size(), std::size_t(dw) * dh * 3);
    for (float v : out) ASSERT_NEAR(v, 77.25f, 1e-4f) << dw << "x" << dh;
  }
}

TEST(Resize, MatchesDirectKeysEvaluation) {
  struct Case {
    int sw, sh, cn, dw, dh;
  };
  // Up, down, mixed, non-integer ratios, 1-pixel sources and destinations, 1..4 channels.
  for (const Case& c : {Case{37, 23, 3, 48, 32}, Case{147, 47, 3, 64, 32}, Case{50, 70, 1, 48, 64},
                        Case{5, 3, 3, 16, 16}, Case{1, 1, 3, 16, 16}, Case{64, 64, 2, 7, 5}, Case{30, 1, 4, 17, 3},
                        Case{300, 200, 3, 16, 48}}) {
    const auto src = pattern(c.sw, c.sh, c.cn, std::uint32_t(c.sw * 131 + c.dh));
    const auto got = resize_bicubic(src.data(), c.sw, c.sh, c.cn, c.dw, c.dh);
    const auto want = direct(src, c.sw, c.sh, c.cn, c.dw, c.dh);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    // float32 weights and sums on 0..255 data: errors of a few 1e-5 are float rounding, 1e-3 would be a bug.
    EXPECT_LT(worst, 2e-3) << c.sw << "x" << c.sh << " -> " << c.dw << "x" << c.dh << " cn " << c.cn;
  }
}

// The tap table itself: OpenCV's sample positions and Keys weights summing to 1, taps clamped.
TEST(Resize, AxisTable) {
  const CubicAxis ax = cubic_axis(10, 4);  // scale 2.5: f = 0.75, 3.25, 5.75, 8.25
  const int want_s[4] = {0, 3, 5, 8};
  for (int d = 0; d < 4; ++d) {
    float sum = 0;
    for (int k = 0; k < 4; ++k) {
      sum += ax.weight[d * 4 + k];
      EXPECT_EQ(ax.index[d * 4 + k], std::clamp(want_s[d] - 1 + k, 0, 9));
    }
    EXPECT_NEAR(sum, 1.0f, 1e-6f);
  }
  EXPECT_FLOAT_EQ(ax.weight[0 * 4 + 1], float(keys(0.75)));
  EXPECT_FLOAT_EQ(ax.weight[1 * 4 + 2], float(keys(0.75)));
  EXPECT_TRUE(resize_bicubic(nullptr, 1, 1, 3, 2, 2).empty());
  std::vector<float> one(3, 1.f);
  EXPECT_TRUE(resize_bicubic(one.data(), 1, 1, 3, 0, 2).empty());
}

// Row bands on threads compute every destination row with the single-thread code: the same bits for any thread
// count (down- and up-scaling, equal sizes, odd sizes, bands of one row).
TEST(Resize, ThreadedBandsEqualOneThread) {
  struct Case { int sw, sh, dw, dh; };
  for (const Case c : {Case{1000, 701, 517, 333}, Case{97, 61, 300, 211}, Case{640, 480, 640, 480}, Case{50, 9, 23, 5}}) {
    std::vector<float> src(std::size_t(c.sw) * c.sh * 3);
    std::uint32_t h = 12345u + std::uint32_t(c.sw);
    for (float& v : src) {
      h = h * 1664525u + 1013904223u;
      v = float(h >> 24);
    }
    const std::size_t row = std::size_t(c.sw) * 3;
    auto run = [&](int threads) {
      std::vector<float> dst(std::size_t(c.dw) * c.dh * 3, -1.f);
      bool in_range = true;
      resize_cubic_rows(
          c.sw, c.sh, 3, c.dw, c.dh,
          [&](int sy, float* out) {
            if (sy < 0 || sy >= c.sh) in_range = false;
            std::copy(src.begin() + std::ptrdiff_t(sy * row), src.begin() + std::ptrdiff_t((sy + 1) * row), out);
          },
          dst.data(), threads);
      EXPECT_TRUE(in_range);
      return dst;
    };
    const auto one = run(1);
    EXPECT_TRUE(std::none_of(one.begin(), one.end(), [](float v) { return v == -1.f; })) << "rows left unwritten";
    for (int threads : {2, 3, 7, 8}) {
      const auto many = run(threads);
      ASSERT_EQ(many.size(), one.size());
      EXPECT_EQ(std::memcmp(many.data(), one.data(), one.size() * sizeof(float)), 0)
          << c.sw << "x" << c.sh << " -> " << c.dw << "x" << c.dh << " with " << threads << " threads";
    }
  }
}
