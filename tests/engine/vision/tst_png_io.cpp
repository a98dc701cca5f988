// SPDX-License-Identifier: Apache-2.0
// The CLI's PNG reader: round trips for every pixel format, palette / 16-bit / low-bit-depth / interlaced /
// tRNS files written here with libpng directly, and clear errors for other formats, missing, corrupt and
// oversized files (refused from the header, before pixels are allocated).
#include <gtest/gtest.h>
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "png_io.h"

using namespace pixtral;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  const fs::path dir = fs::path(QUIRE_BINARY_DIR) / "tst_vision_png";
  fs::create_directories(dir);
  return (dir / name).string();
}

// A PNG as libpng writes it, for formats write_png does not produce.
struct RawPng {
  int width = 0, height = 0, color = PNG_COLOR_TYPE_RGB, depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;
  std::vector<png_byte> trns_alpha;  // palette tRNS
  bool trns_color = false;           // gray / RGB tRNS key
  png_color_16 key{};
  std::vector<std::vector<png_byte>> rows;  // packed as the file stores them (big-endian 16-bit)
  bool header_only = false;                 // stop after the header chunks (for size checks)
};

bool write_raw_inner(std::FILE* fp, png_structp png, png_infop info, const RawPng* p, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, fp);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_set_IHDR(png, info, p->width, p->height, p->depth, p->color,
               p->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!p->palette.empty()) png_set_PLTE(png, info, p->palette.data(), int(p->palette.size()));
  if (!p->trns_alpha.empty())
    png_set_tRNS(png, info, p->trns_alpha.data(), int(p->trns_alpha.size()), nullptr);
  if (p->trns_color) png_set_tRNS(png, info, nullptr, 0, &p->key);
  png_write_info(png, info);
  if (p->header_only) return true;
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

void write_raw(const std::string& path, RawPng& p) {
  std::FILE* fp = std::fopen(path.c_str(), "wb");
  ASSERT_NE(fp, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> rows;
  for (auto& r : p.rows) rows.push_back(r.data());
  const bool ok = write_raw_inner(fp, png, info, &p, rows.data());
  png_destroy_write_struct(&png, &info);
  std::fclose(fp);
  ASSERT_TRUE(ok);
}

Image read_ok(const std::string& path) {
  auto r = read_png(path);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : Image{};
}

}  // namespace

TEST(Png, RoundTripEveryFormat) {
  for (PixelFormat f : {PixelFormat::rgb8, PixelFormat::rgba8, PixelFormat::gray8, PixelFormat::gray_alpha8}) {
    const int w = 13, h = 7, bpp = bytes_per_pixel(f);
    const std::size_t stride = std::size_t(w) * bpp + 5;  // padded rows: padding must not be written
    std::vector<std::uint8_t> buf(stride * h, 0xAB);
    for (int y = 0; y < h; ++y)
      for (int i = 0; i < w * bpp; ++i) buf[y * stride + i] = std::uint8_t(y * 31 + i * 7);
    const std::string path = tmp_path("rt_" + std::to_string(int(f)) + ".png");
    ASSERT_TRUE(write_png(path, ImageView{buf.data(), w, h, stride, f}).ok());
    const Image img = read_ok(path);
    EXPECT_EQ(img.format, f);
    ASSERT_EQ(img.width, w);
    ASSERT_EQ(img.height, h);
    for (int y = 0; y < h; ++y)
      for (int i = 0; i < w * bpp; ++i) ASSERT_EQ(img.pixels[y * w * bpp + i], buf[y * stride + i]);
  }
}

TEST(Png, PaletteExpandsToRgbOrRgba) {
  RawPng p;
  p.width = 4;
  p.height = 2;
  p.color = PNG_COLOR_TYPE_PALETTE;
  p.palette = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
  p.rows = {{0, 1, 2, 3}, {3, 2, 1, 0}};
  write_raw(tmp_path("pal.png"), p);
  Image img = read_ok(tmp_path("pal.png"));
  EXPECT_EQ(img.format, PixelFormat::rgb8);
  EXPECT_EQ(img.pixels, (std::vector<std::uint8_t>{255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30,  //
                                                   10, 20, 30, 0, 0, 255, 0, 255, 0, 255, 0, 0}));
  p.trns_alpha = {0, 128};  // entries 2, 3 stay opaque
  write_raw(tmp_path("pal_trns.png"), p);
  img = read_ok(tmp_path("pal_trns.png"));
  EXPECT_EQ(img.format, PixelFormat::rgba8);
  EXPECT_EQ(img.pixels, (std::vector<std::uint8_t>{255, 0, 0, 0, 0, 255, 0, 128, 0, 0, 255, 255, 10, 20, 30, 255,
                                                   10, 20, 30, 255, 0, 0, 255, 255, 0, 255, 0, 128, 255, 0, 0, 0}));
}

TEST(Png, GrayDepthsAndTransparencyKey) {
  RawPng p;  // 1-bit gray: 0 / 1 → 0 / 255
  p.width = 8;
  p.height = 1;
  p.color = PNG_COLOR_TYPE_GRAY;
  p.depth = 1;
  p.rows = {{0b10110000}};
  write_raw(tmp_path("g1.png"), p);
  Image img = read_ok(tmp_path("g1.png"));
  EXPECT_EQ(img.format, PixelFormat::gray8);
  EXPECT_EQ(img.pixels, (std::vector<std::uint8_t>{255, 0, 255, 255, 0, 0, 0, 0}));

  RawPng q;  // 16-bit gray keeps the high byte
  q.width = 3;
  q.height = 1;
  q.color = PNG_COLOR_TYPE_GRAY;
  q.depth = 16;
  q.rows = {{0x12, 0x34, 0xFF, 0xFF, 0x00, 0xFF}};
  write_raw(tmp_path("g16.png"), q);
  img = read_ok(tmp_path("g16.png"));
  EXPECT_EQ(img.pixels, (std::vector<std::uint8_t>{0x12, 0xFF, 0x00}));

  RawPng k;  // 8-bit gray with a tRNS key → gray+alpha, alpha 0 exactly where the key matches
  k.width = 3;
  k.height = 1;
  k.color = PNG_COLOR_TYPE_GRAY;
  k.trns_color = true;
  k.key.gray = 7;
  k.rows = {{7, 8, 200}};
  write_raw(tmp_path("gtrns.png"), k);
  img = read_ok(tmp_path("gtrns.png"));
  EXPECT_EQ(img.format, PixelFormat::gray_alpha8);
  EXPECT_EQ(img.pixels, (std::vector<std::uint8_t>{7, 0, 8, 255, 200, 255}));
}

TEST(Png, RgbSixteenBitInterlacedAndColourKey) {
  RawPng p;
  p.width = 9;
  p.height = 10;
  p.color = PNG_COLOR_TYPE_RGB;
  p.depth = 16;
  p.interlaced = true;
  for (int y = 0; y < p.height; ++y) {
    std::vector<png_byte> row;
    for (int i = 0; i < p.width * 3; ++i) {
      row.push_back(png_byte(y * 20 + i));  // high byte
      row.push_back(png_byte(0x80));        // low byte
    }
    p.rows.push_back(row);
  }
  p.trns_color = true;  // mistral-common keeps RGB images as they are: the key must be ignored
  p.key.red = p.key.green = p.key.blue = 0x0080;
  write_raw(tmp_path("rgb16i.png"), p);
  const Image img = read_ok(tmp_path("rgb16i.png"));
  EXPECT_EQ(img.format, PixelFormat::rgb8);
  ASSERT_EQ(img.pixels.size(), std::size_t(9 * 10 * 3));
  for (int y = 0; y < 10; ++y)
    for (int i = 0; i < 27; ++i) ASSERT_EQ(img.pixels[y * 27 + i], std::uint8_t(y * 20 + i));
}

TEST(Png, NotAPngIsAClearError) {
  const std::string jpg = tmp_path("photo.png");
  std::ofstream(jpg, std::ios::binary) << std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", 11);
  auto r = read_png(jpg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::unsupported);
  EXPECT_NE(r.status().message().find("JPEG"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("PNG images only"), std::string::npos) << r.status().message();

  const std::string txt = tmp_path("notes.png");
  std::ofstream(txt) << "hello";
  r = read_png(txt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::unsupported);
  EXPECT_NE(r.status().message().find("not a PNG"), std::string::npos) << r.status().message();

  r = read_png(tmp_path("does_not_exist.png"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::not_found);
}

TEST(Png, TruncatedFileIsAFormatError) {
  std::vector<std::uint8_t> px(64 * 64 * 3);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = std::uint8_t(i * 7919 >> 3);
  const std::string path = tmp_path("full.png");
  ASSERT_TRUE(write_png(path, ImageView{px.data(), 64, 64, 0, PixelFormat::rgb8}).ok());
  const auto size = fs::file_size(path);
  const std::string cut = tmp_path("cut.png");
  fs::copy_file(path, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, size / 2);
  auto r = read_png(cut);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::format);
  EXPECT_NE(r.status().message().find("cut.png"), std::string::npos) << r.status().message();
}

TEST(Png, OversizedImagesAreRefusedFromTheHeader) {
  struct Case {
    int w, h;
  };
  for (const Case c : {Case{40000, 40000}, Case{16385, 1}, Case{12000, 12000}}) {
    RawPng p;
    p.width = c.w;
    p.height = c.h;
    p.color = PNG_COLOR_TYPE_GRAY;
    p.depth = 1;
    p.header_only = true;  // no pixel data: a reader that allocates or decodes first would fail differently
    const std::string path = tmp_path("huge.png");
    write_raw(path, p);
    auto r = read_png(path);
    ASSERT_FALSE(r.ok()) << c.w << "x" << c.h;
    EXPECT_EQ(r.status().code(), ErrorCode::invalid_argument) << r.status().message();
    EXPECT_NE(r.status().message().find("larger than the CLI accepts"), std::string::npos) << r.status().message();
  }
  // The limits themselves are accepted.
  std::vector<std::uint8_t> row(16384, 9);
  ASSERT_TRUE(write_png(tmp_path("wide.png"), ImageView{row.data(), 16384, 1, 0, PixelFormat::gray8}).ok());
  EXPECT_EQ(read_ok(tmp_path("wide.png")).width, 16384);
}
