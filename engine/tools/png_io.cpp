// SPDX-License-Identifier: Apache-2.0
// libpng reader/writer (see png_io.h). libpng reports errors by longjmp: the functions that call setjmp hold only
// trivially destructible locals, and everything with a destructor lives in the caller, so a longjmp never skips
// a destructor.
// ref: libpng manual (libpng-manual.txt) §III "Reading PNG files", §IV "Writing"; Pillow PngImagePlugin (modes)
#include "png_io.h"

#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

namespace pixtral {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// Error state shared with libpng's callbacks; lives in the caller of the setjmp function.
struct PngState {
  char message[256] = {};
};

void on_png_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  if (st) std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
void on_png_warning(png_structp, png_const_charp) {}

// What the file starts with, for a helpful "not a PNG" message.
const char* sniff_format(const unsigned char* b, std::size_t n) {
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "a JPEG image";
  if (n >= 6 && (std::memcmp(b, "GIF87a", 6) == 0 || std::memcmp(b, "GIF89a", 6) == 0)) return "a GIF image";
  if (n >= 12 && std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBP", 4) == 0) return "a WebP image";
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "a BMP image";
  if (n >= 4 && (std::memcmp(b, "II*\0", 4) == 0 || std::memcmp(b, "MM\0*", 4) == 0)) return "a TIFF image";
  if (n >= 4 && std::memcmp(b, "%PDF", 4) == 0) return "a PDF document";
  return nullptr;
}

struct Decoded {
  Image image;
  std::vector<png_bytep> rows;
  bool too_large = false;
  png_uint_32 width = 0, height = 0;
};

// Returns false on a libpng error (message in st) or when the image is too large (out->too_large).
bool decode(std::FILE* fp, png_structp png, png_infop info, Decoded* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, fp);
  png_set_sig_bytes(png, 8);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);  // our own limits apply, after the header is read
  png_read_info(png, info);

  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  out->width = w;
  out->height = h;
  if (w > png_uint_32(kPngMaxSide) || h > png_uint_32(kPngMaxSide) ||
      std::int64_t(w) * std::int64_t(h) > kPngMaxPixels) {
    out->too_large = true;
    return false;
  }
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;

  PixelFormat fmt = PixelFormat::rgb8;
  switch (color) {
    case PNG_COLOR_TYPE_PALETTE:
      png_set_palette_to_rgb(png);
      if (trns) png_set_tRNS_to_alpha(png);
      fmt = trns ? PixelFormat::rgba8 : PixelFormat::rgb8;
      break;
    case PNG_COLOR_TYPE_GRAY:
      if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
      if (trns) png_set_tRNS_to_alpha(png);
      fmt = trns ? PixelFormat::gray_alpha8 : PixelFormat::gray8;
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: fmt = PixelFormat::gray_alpha8; break;
    case PNG_COLOR_TYPE_RGB: fmt = PixelFormat::rgb8; break;  // tRNS deliberately ignored (see png_io.h)
    case PNG_COLOR_TYPE_RGB_ALPHA: fmt = PixelFormat::rgba8; break;
    default: png_error(png, "unknown PNG colour type");
  }
  if (depth == 16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  const std::size_t row = std::size_t(w) * bytes_per_pixel(fmt);
  if (png_get_rowbytes(png, info) != row) png_error(png, "unexpected row size after transforms");
  out->image.width = int(w);
  out->image.height = int(h);
  out->image.format = fmt;
  out->image.pixels.resize(row * h);  // (h, w, bpp); ≤ 400 MB by the limits above
  out->rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) out->rows[y] = out->image.pixels.data() + y * row;
  png_read_image(png, out->rows.data());
  return true;
}

bool encode(std::FILE* fp, png_structp png, png_infop info, const ImageView* v, int color, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, fp);
  png_set_IHDR(png, info, png_uint_32(v->width), png_uint_32(v->height), 8, color, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

Result<Image> too_large(const std::string& path, png_uint_32 w, png_uint_32 h) {
  return Result<Image>(ErrorCode::invalid_argument,
                       path + ": PNG is " + std::to_string(w) + "x" + std::to_string(h) +
                           ", larger than the CLI accepts (at most " + std::to_string(kPngMaxSide) +
                           " pixels per side and " + std::to_string(kPngMaxPixels / 1000000) +
                           " Mpixels); scale it down first");
}

}  // namespace

Result<Image> read_png(const std::string& path) {
  FilePtr fp(std::fopen(path.c_str(), "rb"));
  if (!fp) {
    const int err = errno;
    return Result<Image>(err == ENOENT ? ErrorCode::not_found : ErrorCode::io,
                         path + ": cannot open: " + std::strerror(err));
  }
  unsigned char sig[24] = {};  // signature, then the IHDR chunk's length, type, width and height
  const std::size_t n = std::fread(sig, 1, sizeof sig, fp.get());
  if (n < 8 || png_sig_cmp(sig, 0, 8) != 0) {
    const char* what = sniff_format(sig, n);
    return Result<Image>(ErrorCode::unsupported,
                         path + ": " + (what ? std::string("is ") + what + ", not a PNG" : "is not a PNG file") +
                             "; the pixtral CLI reads PNG images only (convert it first, e.g. "
                             "`convert in.jpg out.png`)");
  }
  // Refuse a huge image from its IHDR alone, before libpng reads on (a PNG's first chunk is always IHDR).
  if (n == 24 && std::memcmp(sig + 12, "IHDR", 4) == 0) {
    const auto be32 = [](const unsigned char* b) {
      return png_uint_32(b[0]) << 24 | png_uint_32(b[1]) << 16 | png_uint_32(b[2]) << 8 | png_uint_32(b[3]);
    };
    const png_uint_32 w = be32(sig + 16), h = be32(sig + 20);
    if (w > png_uint_32(kPngMaxSide) || h > png_uint_32(kPngMaxSide) ||
        std::int64_t(w) * std::int64_t(h) > kPngMaxPixels)
      return too_large(path, w, h);
  }
  if (std::fseek(fp.get(), 8, SEEK_SET) != 0)
    return Result<Image>(ErrorCode::io, path + ": seek failed: " + std::strerror(errno));

  PngState st;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, on_png_error, on_png_warning);
  if (!png) return Result<Image>(ErrorCode::out_of_memory, path + ": cannot create a libpng reader");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return Result<Image>(ErrorCode::out_of_memory, path + ": cannot create a libpng reader");
  }
  Decoded d;
  const bool ok = decode(fp.get(), png, info, &d);
  png_destroy_read_struct(&png, &info, nullptr);
  if (d.too_large) return too_large(path, d.width, d.height);
  if (!ok) return Result<Image>(ErrorCode::format, path + ": corrupt or truncated PNG: " + st.message);
  return std::move(d.image);
}

Status write_png(const std::string& path, const ImageView& v) {
  if (!v.data || v.width < 1 || v.height < 1 || v.width > kPngMaxSide || v.height > kPngMaxSide)
    return {ErrorCode::invalid_argument, path + ": cannot write an image of " + std::to_string(v.width) + "x" +
                                             std::to_string(v.height) + " pixels as PNG"};
  int color = PNG_COLOR_TYPE_RGB;
  switch (v.format) {
    case PixelFormat::rgb8: color = PNG_COLOR_TYPE_RGB; break;
    case PixelFormat::rgba8: color = PNG_COLOR_TYPE_RGB_ALPHA; break;
    case PixelFormat::gray8: color = PNG_COLOR_TYPE_GRAY; break;
    case PixelFormat::gray_alpha8: color = PNG_COLOR_TYPE_GRAY_ALPHA; break;
  }
  std::vector<png_bytep> rows(std::size_t(v.height));
  for (int y = 0; y < v.height; ++y) rows[y] = const_cast<png_bytep>(v.data + std::size_t(y) * v.row_bytes());

  FilePtr fp(std::fopen(path.c_str(), "wb"));
  if (!fp) return {ErrorCode::io, path + ": cannot create: " + std::strerror(errno)};
  PngState st;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, nullptr);
    return {ErrorCode::out_of_memory, path + ": cannot create a libpng writer"};
  }
  const bool ok = encode(fp.get(), png, info, &v, color, rows.data());
  png_destroy_write_struct(&png, &info);
  if (!ok) return {ErrorCode::io, path + ": writing PNG failed: " + st.message};
  if (std::fclose(fp.release()) != 0) return {ErrorCode::io, path + ": writing PNG failed: " + std::strerror(errno)};
  return {};
}

}  // namespace pixtral
