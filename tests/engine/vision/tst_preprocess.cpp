// SPDX-License-Identifier: Apache-2.0
// Vision preprocessing: mistral-common's patch-grid rule (spec §4.2, §4.5 table), banker's rounding, Pillow's
// composite on white, the uniform-grey normalisation check of §4.5, and refusal of bad image sizes.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <numeric>
#include <vector>

#include "vision/preprocess.h"

using namespace pixtral;
using namespace pixtral::vision;

namespace {

PatchGrid grid_ok(int w, int h, int p = 16, int m = 1024) {
  auto g = patch_grid(w, h, p, m);
  EXPECT_TRUE(g.ok()) << w << "x" << h << ": " << g.status().message();
  return g.ok() ? *g : PatchGrid{};
}

}  // namespace

// Spec §4.5 (mistral-common tests/test_image.py, P = 16, M = 1024): input → patch grid and decoder tokens.
TEST(PatchGrid, MistralCommonSizeTable) {
  struct Row {
    int w, h, wp, hp, tokens;
  };
  const Row rows[] = {{200, 311, 13, 20, 280},   {300, 212, 19, 14, 280},    {251, 1374, 12, 64, 832},
                      {1475, 477, 64, 21, 1365}, {1344, 1544, 56, 64, 3648}, {2133, 3422, 40, 64, 2624},
                      {1024, 1024, 64, 64, 4160}};
  for (const Row& r : rows) {
    const PatchGrid g = grid_ok(r.w, r.h);
    EXPECT_EQ(g.width, r.wp) << r.w << "x" << r.h;
    EXPECT_EQ(g.height, r.hp) << r.w << "x" << r.h;
    EXPECT_EQ((g.width + 1) * g.height, r.tokens) << r.w << "x" << r.h;
  }
}

TEST(PatchGrid, SmallImagesAreNeverUpscaledBeyondOnePatchMultiple) {
  EXPECT_EQ(grid_ok(1, 1).width, 1);
  EXPECT_EQ(grid_ok(1, 1).height, 1);
  EXPECT_EQ(grid_ok(16, 17).width, 1);
  EXPECT_EQ(grid_ok(16, 17).height, 2);
  EXPECT_EQ(grid_ok(1024, 1).width, 64);  // exactly M: no downscale
  EXPECT_EQ(grid_ok(1025, 1).width, 64);  // just above: ratio > 1, 1025 / ratio = 1024
}

// With P = 1 the grid is the rounded size itself, so half-way cases show the rounding rule: Python's round()
// is half-to-even (2.5 → 2, 3.5 → 4); half-up would give 3 and 4, floor 2 and 3, ceil 3 and 4.
TEST(PatchGrid, RoundsHalfToEven) {
  // h = 2048, M = 1024 → ratio exactly 2, so w / ratio = w / 2 exactly.
  EXPECT_EQ(grid_ok(3, 2048, 1).width, 2);  // 1.5 → 2
  EXPECT_EQ(grid_ok(5, 2048, 1).width, 2);  // 2.5 → 2 (half-up would say 3)
  EXPECT_EQ(grid_ok(7, 2048, 1).width, 4);  // 3.5 → 4
  EXPECT_EQ(grid_ok(9, 2048, 1).width, 4);  // 4.5 → 4
  EXPECT_EQ(grid_ok(2047, 2048, 1).width, 1024);  // 1023.5 → 1024
  EXPECT_EQ(grid_ok(2045, 2048, 1).width, 1022);  // 1022.5 → 1022
  EXPECT_EQ(grid_ok(2048, 2048, 1).height, 1024);
  // Not half-way: ordinary rounding both ways (1475×477: 477 / 1.4404296875 = 331.15 → 331).
  EXPECT_EQ(grid_ok(1475, 477, 1).height, 331);
  EXPECT_EQ(grid_ok(2133, 3422, 1).width, 638);  // 2133 / 3.341796875 = 638.28
}

TEST(PatchGrid, TooThinImagesAreAClearError) {
  // 1×100000: round(1 / 97.65625) = 0 → mistral-common would compute 0 patches and assert.
  auto g = patch_grid(1, 100000, 16, 1024);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), ErrorCode::invalid_argument);
  EXPECT_NE(g.status().message().find("1x100000 is too thin"), std::string::npos) << g.status().message();
  EXPECT_NE(g.status().message().find("width"), std::string::npos);
  auto g2 = patch_grid(100000, 1, 16, 1024);
  ASSERT_FALSE(g2.ok());
  EXPECT_NE(g2.status().message().find("height"), std::string::npos) << g2.status().message();
  // The boundary: 1×2048 gives w / ratio = 0.5 exactly, which rounds to even (0); 1×2047 still gives 1.
  EXPECT_FALSE(patch_grid(1, 2048, 16, 1024).ok());
  EXPECT_EQ(grid_ok(1, 2047).width, 1);
  EXPECT_EQ(grid_ok(1, 2047).height, 64);
}

TEST(PatchGrid, BadArguments) {
  for (auto [w, h] : {std::pair{0, 0}, {0, 5}, {5, 0}, {-1, 10}, {10, -7}}) {
    auto g = patch_grid(w, h, 16, 1024);
    ASSERT_FALSE(g.ok()) << w << "x" << h;
    EXPECT_EQ(g.status().code(), ErrorCode::invalid_argument);
  }
  EXPECT_FALSE(patch_grid(10, 10, 0, 1024).ok());
  EXPECT_FALSE(patch_grid(10, 10, 16, 0).ok());
  EXPECT_FALSE(patch_grid(10, 10, 16, 1 << 20).ok());
  // Sizes far beyond any real image still compute without overflow.
  const PatchGrid g = grid_ok(2147483647, 2147483647);
  EXPECT_EQ(g.width, 64);
  EXPECT_EQ(g.height, 64);
}

// Pillow's DIV255 blend equals exact rounding of (c·a + 255·(255 − a)) / 255 for every 8-bit pair.
TEST(Composite, PillowDiv255MatchesExactRounding) {
  for (int c = 0; c < 256; ++c)
    for (int a = 0; a < 256; ++a) {
      const int x = c * a + 255 * (255 - a);
      const int t = x + 128;
      const int pillow = ((t >> 8) + t) >> 8;
      ASSERT_EQ(int(composite_on_white(c, a)), pillow) << c << "," << a;
      ASSERT_EQ(pillow, int(std::lround(x / 255.0))) << c << "," << a;
    }
  EXPECT_EQ(composite_on_white(0, 0), 255);   // fully transparent → white
  EXPECT_EQ(composite_on_white(17, 255), 17);  // opaque → unchanged
}

TEST(Composite, FormatsToRgb8) {
  // RGBA: hand-chosen pixels, with a padded stride whose padding bytes must be ignored.
  const std::uint8_t rgba[] = {10, 200, 30, 255, 10, 200, 30, 0, 10, 200, 30, 128, 0, 0, 0, 1, 0xEE, 0xEE,
                               255, 0, 128, 77, 1, 2, 3, 254, 250, 5, 0, 200, 0, 0, 0, 0, 0xEE, 0xEE};
  ImageView v{rgba, 4, 2, 18, PixelFormat::rgba8};
  auto out = to_rgb8(v);
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out->pixels.size(), 4u * 2u * 3u);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) {
        const int s = rgba[y * 18 + x * 4 + c], a = rgba[y * 18 + x * 4 + 3];
        const int t = s * a + 255 * (255 - a) + 128;
        EXPECT_EQ(out->pixels[(y * 4 + x) * 3 + c], ((t >> 8) + t) >> 8) << x << "," << y << "," << c;
      }
  EXPECT_EQ(out->pixels[0], 10);  // opaque
  EXPECT_EQ(out->pixels[3], 255);  // transparent
  EXPECT_EQ(out->pixels[6], 132);  // 10·128 + 255·127 = 33665 → 132.02

  const std::uint8_t gray[] = {0, 77, 255};
  auto g = to_rgb8(ImageView{gray, 3, 1, 0, PixelFormat::gray8});
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->pixels, (std::vector<std::uint8_t>{0, 0, 0, 77, 77, 77, 255, 255, 255}));

  const std::uint8_t la[] = {0, 0, 100, 255, 100, 51};
  auto l = to_rgb8(ImageView{la, 3, 1, 0, PixelFormat::gray_alpha8});
  ASSERT_TRUE(l.ok());
  const int t = 100 * 51 + 255 * 204 + 128;
  const std::uint8_t mixed = std::uint8_t(((t >> 8) + t) >> 8);
  EXPECT_EQ(l->pixels, (std::vector<std::uint8_t>{255, 255, 255, 100, 100, 100, mixed, mixed, mixed}));

  const std::uint8_t rgb[] = {1, 2, 3, 9, 9, 4, 5, 6, 9, 9};  // stride 5 with 2 bytes of padding
  auto r = to_rgb8(ImageView{rgb, 1, 2, 5, PixelFormat::rgb8});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->pixels, (std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6}));
}

// Spec §4.5: a uniform (128,128,128) image normalises to (0.0763361, 0.1688972, 0.3399486) everywhere and
// sum(|x|) = 0.5851820 × pixels (mistral-common's test; 38949.71 for 208×320).
TEST(Preprocess, UniformGreyMatchesMistralCommonTest) {
  std::vector<std::uint8_t> grey(200 * 311 * 3, 128);
  auto px = preprocess(ImageView{grey.data(), 200, 311, 0, PixelFormat::rgb8}, 16, 1024);
  ASSERT_TRUE(px.ok()) << px.status().message();
  EXPECT_EQ(px->width, 208);
  EXPECT_EQ(px->height, 320);
  EXPECT_EQ(px->grid.width, 13);
  EXPECT_EQ(px->grid.height, 20);
  ASSERT_EQ(px->chw.size(), 3u * 208 * 320);
  const float expect[3] = {0.0763361f, 0.1688972f, 0.3399486f};
  double sum = 0;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 208 * 320; ++i) {
      const float v = px->chw[std::size_t(c) * 208 * 320 + i];
      ASSERT_NEAR(v, expect[c], 1e-6) << c << " " << i;
      sum += std::fabs(v);
    }
  // Relative 1e-6: the float32 cubic weights sum to 1 only within a few ulps, so the resized constant is
  // 128 ± 1e-5 (cv2 behaves the same); the exact float64 value is 38949.711.
  EXPECT_NEAR(sum, 0.5851820 * 208 * 320, 0.04);
  EXPECT_NEAR(sum, 38949.71, 0.04);
}

TEST(Preprocess, SmallerThanOnePatchBecomesOnePatch) {
  const std::uint8_t px3[] = {0, 255, 0, 80, 80, 80};
  auto px = preprocess(ImageView{px3, 2, 1, 0, PixelFormat::rgb8}, 16, 1024);
  ASSERT_TRUE(px.ok()) << px.status().message();
  EXPECT_EQ(px->width, 16);
  EXPECT_EQ(px->height, 16);
  EXPECT_EQ(px->grid.width, 1);
  EXPECT_EQ(px->grid.height, 1);
  for (float v : px->chw) ASSERT_TRUE(std::isfinite(v));
}

// Gray, gray+alpha and RGBA inputs are composited first, so they preprocess exactly like the equivalent RGB.
TEST(Preprocess, FormatsAgreeWithTheirRgbEquivalent) {
  const int w = 37, h = 23;
  std::vector<std::uint8_t> la(w * h * 2), rgb(w * h * 3);
  for (int i = 0; i < w * h; ++i) {
    la[i * 2] = std::uint8_t(i * 37 % 256);
    la[i * 2 + 1] = std::uint8_t(i * 11 % 256);
    rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = composite_on_white(la[i * 2], la[i * 2 + 1]);
  }
  auto a = preprocess(ImageView{la.data(), w, h, 0, PixelFormat::gray_alpha8}, 16, 64);
  auto b = preprocess(ImageView{rgb.data(), w, h, 0, PixelFormat::rgb8}, 16, 64);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->chw, b->chw);
}

TEST(Preprocess, RefusesBadImagesBeforeTouchingPixels) {
  const std::uint8_t one[4] = {};
  struct Case {
    int w, h;
    const char* needle;
  };
  // The data pointer holds only 4 bytes: none of these may read pixels (ASan would catch it).
  for (const Case& c : {Case{0, 0, "empty"}, Case{-3, 4, "empty"}, Case{200000, 10, "too large"},
                        Case{20000, 20000, "too large"}, Case{1 << 17, 1 << 17, "too large"}}) {
    auto px = preprocess(ImageView{one, c.w, c.h, 0, PixelFormat::rgb8}, 16, 1024);
    ASSERT_FALSE(px.ok()) << c.w << "x" << c.h;
    EXPECT_EQ(px.status().code(), ErrorCode::invalid_argument);
    EXPECT_NE(px.status().message().find(c.needle), std::string::npos) << px.status().message();
  }
  std::vector<std::uint8_t> thin(100000, 0);
  auto px = preprocess(ImageView{thin.data(), 1, 100000, 0, PixelFormat::gray8}, 16, 1024);
  ASSERT_FALSE(px.ok());
  EXPECT_NE(px.status().message().find("too thin"), std::string::npos) << px.status().message();
  EXPECT_FALSE(preprocess(ImageView{nullptr, 4, 4, 0, PixelFormat::rgb8}, 16, 1024).ok());
  EXPECT_FALSE(preprocess(ImageView{one, 4, 1, 5, PixelFormat::rgb8}, 16, 1024).ok());  // stride < row
  EXPECT_FALSE(to_rgb8(ImageView{one, 20000, 20000, 0, PixelFormat::rgb8}).ok());
}

// A 4096×4096 photo-sized input must preprocess well under a second. Measured in CPU time (std::clock; the
// pipeline is single-threaded) so a loaded CI box does not make it flaky; wall time is printed too.
TEST(Preprocess, LargeImageIsFast) {
  const int n = 4096;
  std::vector<std::uint8_t> img(std::size_t(n) * n * 3);
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = std::uint8_t((i * 2654435761u) >> 24);
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  auto px = preprocess(ImageView{img.data(), n, n, 0, PixelFormat::rgb8}, 16, 1024);
  const double cpu_ms = 1000.0 * double(std::clock() - c0) / CLOCKS_PER_SEC;
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(px.ok());
  EXPECT_EQ(px->width, 1024);
  EXPECT_EQ(px->height, 1024);
  std::printf("preprocess 4096x4096 -> 1024x1024: %.1f ms CPU, %.1f ms wall\n", cpu_ms, ms);
  EXPECT_LT(cpu_ms, 1000.0);
}
