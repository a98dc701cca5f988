// SPDX-License-Identifier: Apache-2.0
// Parity with mistral-common's image pipeline as the reference computes it (Pillow composite, the sizing rule,
// cv2.resize(float32, INTER_CUBIC), CLIP normalise), from fixtures written by
// tests/fixtures/vision/make_reference.py on a machine with numpy, OpenCV and Pillow. Inputs are PNGs read with
// the CLI's reader; the composite must match exactly, the resize and the normalised pixels within tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "png_io.h"
#include "vision/preprocess.h"

using namespace pixtral;
using namespace pixtral::vision;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(QUIRE_FIXTURES_DIR) / "vision";

template <class T>
std::vector<T> read_bin(const std::string& name) {
  std::ifstream f(kDir / name, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> out(raw.size() / sizeof(T));
  std::memcpy(out.data(), raw.data(), out.size() * sizeof(T));  // little-endian on every machine we build for
  return out;
}

PixelFormat format_of(const std::string& s) {
  if (s == "rgba8") return PixelFormat::rgba8;
  if (s == "gray8") return PixelFormat::gray8;
  if (s == "gray_alpha8") return PixelFormat::gray_alpha8;
  return PixelFormat::rgb8;
}

nlohmann::json load_index() {
  std::ifstream f(kDir / "index.json");
  return nlohmann::json::parse(f);
}

}  // namespace

TEST(VisionFixtures, MatchMistralCommonReference) {
  if (!fs::exists(kDir / "index.json"))
    GTEST_SKIP() << "no reference fixtures: run `python3 tests/fixtures/vision/make_reference.py` on a machine "
                    "with numpy, opencv-python and Pillow, then commit tests/fixtures/vision/";
  const nlohmann::json index = load_index();
  ASSERT_FALSE(index["cases"].empty());
  for (const auto& c : index["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    auto img = read_png((kDir / std::string(c["input"])).string());
    ASSERT_TRUE(img.ok()) << img.status().message();
    ASSERT_EQ(img->width, int(c["width"]));
    ASSERT_EQ(img->height, int(c["height"]));
    EXPECT_EQ(int(img->format), int(format_of(c["format"])));
    const int patch = c["patch"], max_size = c["max"];

    // 1. Composite on white: exact.
    auto rgb = to_rgb8(img->view());
    ASSERT_TRUE(rgb.ok()) << rgb.status().message();
    if (c.contains("rgb") && !c["rgb"].is_null()) {
      const auto want = read_bin<std::uint8_t>(c["rgb"]);
      ASSERT_EQ(want.size(), rgb->pixels.size());
      std::size_t bad = 0;
      for (std::size_t i = 0; i < want.size(); ++i) bad += want[i] != rgb->pixels[i];
      EXPECT_EQ(bad, 0u) << "composited bytes differing from Pillow";
    }

    // 2. Patch grid.
    auto grid = patch_grid(img->width, img->height, patch, max_size);
    ASSERT_TRUE(grid.ok()) << grid.status().message();
    EXPECT_EQ(grid->width, int(c["grid"][0]));
    EXPECT_EQ(grid->height, int(c["grid"][1]));
    const int tw = c["target"][0], th = c["target"][1];

    // 3. Resize alone (0..255 scale): cv2 on the same float32 input.
    if (c.contains("resized") && !c["resized"].is_null()) {
      std::vector<float> f(rgb->pixels.begin(), rgb->pixels.end());
      const auto got = resize_bicubic(f.data(), img->width, img->height, 3, tw, th);
      const auto want = read_bin<float>(c["resized"]);
      ASSERT_EQ(got.size(), want.size());
      double worst = 0;
      for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::fabs(got[i] - want[i])));
      std::printf("%-16s resize max |diff| = %.3g (0..255 scale)\n", name.c_str(), worst);
      EXPECT_LT(worst, 2e-3);
    }

    // 4. The whole pipeline, normalised CHW (possibly stored every `step` rows and columns).
    auto px = preprocess(img->view(), patch, max_size);
    ASSERT_TRUE(px.ok()) << px.status().message();
    ASSERT_EQ(px->width, tw);
    ASSERT_EQ(px->height, th);
    const int step = c.value("step", 1);
    const int sw = (tw + step - 1) / step, sh = (th + step - 1) / step;
    const auto want = read_bin<float>(c["pixels"]);
    ASSERT_EQ(want.size(), std::size_t(3) * sw * sh);
    double worst = 0;
    for (int ch = 0; ch < 3; ++ch)
      for (int y = 0; y < sh; ++y)
        for (int x = 0; x < sw; ++x) {
          const float g = px->chw[(std::size_t(ch) * th + y * step) * tw + x * step];
          ASSERT_TRUE(std::isfinite(g));
          worst = std::max(worst, double(std::fabs(g - want[(std::size_t(ch) * sh + y) * sw + x])));
        }
    std::printf("%-16s pixels max |diff| = %.3g (normalised)\n", name.c_str(), worst);
    EXPECT_LT(worst, 1e-4);
  }
}
