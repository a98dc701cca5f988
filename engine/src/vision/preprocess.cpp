// SPDX-License-Identifier: Apache-2.0
// Image preprocessing: Pillow-exact compositing on white, mistral-common's patch-grid rule, OpenCV bicubic resize,
// CLIP normalisation. See preprocess.h for the contract.
// ref: mistral_common/tokens/tokenizers/multimodal.py (_convert_to_rgb, transform_image,
//      ImageEncoder._image_to_num_tokens); Pillow src/libImaging/Paste.c paste_mask_RGBA
#include "vision/preprocess.h"

#include <cfenv>
#include <cmath>
#include <cstring>
#include <string>

#include "core/bands.h"
#include "vision/resize.h"

namespace pixtral::vision {
namespace {

std::string size_str(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

// Python's round() on a double: round half to even (the current rounding mode is FE_TONEAREST unless someone
// changed it; set it for the call to be sure).
double round_half_even(double v) {
  const int old = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(v);
  std::fesetround(old);
  return r;
}

// One source row of any supported format → packed RGB8 (Pillow: convert("RGBA"), paste on white with its own
// alpha as mask, convert("RGB")). Gray without alpha and RGBA with a = 255 pass through unchanged, because
// DIV255(c·255) == c for every c.
void row_to_rgb8(const std::uint8_t* s, PixelFormat f, int width, std::uint8_t* d) {
  switch (f) {
    case PixelFormat::rgb8:
      std::memcpy(d, s, std::size_t(width) * 3);
      return;
    case PixelFormat::rgba8:
      for (int x = 0; x < width; ++x, s += 4, d += 3) {
        d[0] = composite_on_white(s[0], s[3]);
        d[1] = composite_on_white(s[1], s[3]);
        d[2] = composite_on_white(s[2], s[3]);
      }
      return;
    case PixelFormat::gray8:
      for (int x = 0; x < width; ++x, ++s, d += 3) d[0] = d[1] = d[2] = s[0];
      return;
    case PixelFormat::gray_alpha8:
      for (int x = 0; x < width; ++x, s += 2, d += 3) d[0] = d[1] = d[2] = composite_on_white(s[0], s[1]);
      return;
  }
}

}  // namespace

Result<PatchGrid> patch_grid(int width, int height, int patch_size, int max_image_size) {
  if (patch_size < 1 || patch_size > 65536 || max_image_size < 1 || max_image_size > 65536)
    return Result<PatchGrid>(ErrorCode::invalid_argument,
                             "patch size " + std::to_string(patch_size) + " / max image size " +
                                 std::to_string(max_image_size) + " out of range [1, 65536]");
  if (width < 1 || height < 1)
    return Result<PatchGrid>(ErrorCode::invalid_argument,
                             "image " + size_str(width, height) + " is empty: both sides must be at least 1 pixel");
  // ref: ImageEncoder._image_to_num_tokens — ratio = max(h / M, w / M); if ratio > 1: w, h = round(w / ratio), ...
  double w = width, h = height;
  const double ratio = std::max(h / max_image_size, w / max_image_size);
  if (ratio > 1) {
    w = round_half_even(w / ratio);
    h = round_half_even(h / ratio);
  }
  if (w < 1 || h < 1) {
    // mistral-common gets Wp or Hp = (0 − 1) // P + 1 = 0 here and fails an assert; say why instead.
    return Result<PatchGrid>(
        ErrorCode::invalid_argument,
        "image " + size_str(width, height) + " is too thin: scaled down to fit " +
            size_str(max_image_size, max_image_size) + " its " + (w < 1 ? "width" : "height") +
            " rounds to 0 pixels (images with an aspect ratio of " + std::to_string(2 * max_image_size) +
            ":1 or more cannot be encoded; crop or pad the image)");
  }
  // (w − 1) // P + 1 with w ≥ 1: plain integer division is Python's floor division here.
  PatchGrid g;
  g.width = (int(w) - 1) / patch_size + 1;
  g.height = (int(h) - 1) / patch_size + 1;
  return g;
}

Status check_image_view(const ImageView& v) {
  if (v.width < 1 || v.height < 1)
    return {ErrorCode::invalid_argument,
            "image " + size_str(v.width, v.height) + " is empty: both sides must be at least 1 pixel"};
  if (v.width > kMaxImageSide || v.height > kMaxImageSide ||
      std::int64_t(v.width) * v.height > kMaxImagePixels)
    return {ErrorCode::invalid_argument,
            "image " + size_str(v.width, v.height) + " is too large: at most " + std::to_string(kMaxImageSide) +
                " pixels per side and " + std::to_string(kMaxImagePixels / 1000000) + " Mpixels in total"};
  if (!v.data) return {ErrorCode::invalid_argument, "image " + size_str(v.width, v.height) + " has no pixel data"};
  const std::size_t packed = std::size_t(v.width) * bytes_per_pixel(v.format);
  if (v.stride != 0 && v.stride < packed)
    return {ErrorCode::invalid_argument, "image " + size_str(v.width, v.height) + ": row stride " +
                                             std::to_string(v.stride) + " bytes is smaller than a row (" +
                                             std::to_string(packed) + " bytes)"};
  return {};
}

Result<Image> to_rgb8(const ImageView& v) {
  PIXTRAL_RETURN_IF_ERROR(check_image_view(v));
  Image out;
  out.width = v.width;
  out.height = v.height;
  out.format = PixelFormat::rgb8;
  const std::size_t row = std::size_t(v.width) * 3;
  out.pixels.resize(row * std::size_t(v.height));  // (H, W, 3)
  for (int y = 0; y < v.height; ++y)
    row_to_rgb8(v.data + std::size_t(y) * v.row_bytes(), v.format, v.width, out.pixels.data() + y * row);
  return out;
}

std::vector<float> resize_bicubic(const float* src, int src_w, int src_h, int channels, int dst_w, int dst_h) {
  if (!src || src_w < 1 || src_h < 1 || dst_w < 1 || dst_h < 1 || channels < 1 || channels > 4) return {};
  const std::size_t row = std::size_t(src_w) * channels;
  std::vector<float> dst(std::size_t(dst_w) * dst_h * channels);  // (dst_h, dst_w, channels)
  resize_cubic_rows(
      src_w, src_h, channels, dst_w, dst_h,
      [&](int sy, float* out) { std::memcpy(out, src + sy * row, row * sizeof(float)); }, dst.data());
  return dst;
}

Result<Pixels> preprocess(const ImageView& image, int patch_size, int max_image_size) {
  Pixels px;
  PIXTRAL_RETURN_IF_ERROR(preprocess_into(image, patch_size, max_image_size, px));
  return px;
}

Status preprocess_into(const ImageView& image, int patch_size, int max_image_size, Pixels& px) {
  PIXTRAL_RETURN_IF_ERROR(check_image_view(image));
  auto grid = patch_grid(image.width, image.height, patch_size, max_image_size);
  if (!grid) return grid.status();

  px.grid = *grid;
  px.width = grid->width * patch_size;
  px.height = grid->height * patch_size;
  const std::size_t plane = std::size_t(px.width) * px.height;

  px.chw.resize(plane * 3);  // (3, height, width)
  const int threads = band_threads(plane * 3);
  if (image.width == px.width && image.height == px.height) {
    // No resize (cv2.resize to the same size copies): every value is an integer 0..255, so the normalisation
    // below is a 256-entry table per channel — the same floats, without 3 divisions per pixel (a 1024×1024 page
    // image is ~3 M values on the time-to-first-token path). Row bands on threads.
    float lut[3][256];
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < 256; ++v) lut[c][v] = float((double(float(v)) / 255.0 - kClipMean[c]) / kClipStd[c]);
    for_bands(px.height, threads, [&](int y0, int y1) {
      std::vector<std::uint8_t> rgb_row(std::size_t(image.width) * 3);
      for (int y = y0; y < y1; ++y) {
        row_to_rgb8(image.data + std::size_t(y) * image.row_bytes(), image.format, image.width, rgb_row.data());
        for (int c = 0; c < 3; ++c) {
          float* out = px.chw.data() + c * plane + std::size_t(y) * px.width;
          for (int x = 0; x < px.width; ++x) out[x] = lut[c][rgb_row[std::size_t(x) * 3 + c]];
        }
      }
    });
    return {};
  }

  // Resize the composited RGB as float 0..255 (transform_image: np.array(rgb, dtype=float32) → cv2.resize),
  // fetching and compositing one source row at a time (each thread its own row buffer).
  std::vector<float> hwc(plane * 3);  // (height, width, 3)
  resize_cubic_rows(
      image.width, image.height, 3, px.width, px.height,
      [&](int sy, float* out) {
        thread_local std::vector<std::uint8_t> rgb_row;
        rgb_row.resize(std::size_t(image.width) * 3);
        row_to_rgb8(image.data + std::size_t(sy) * image.row_bytes(), image.format, image.width, rgb_row.data());
        for (std::size_t i = 0; i < rgb_row.size(); ++i) out[i] = float(rgb_row[i]);
      },
      hwc.data(), threads);

  // normalize(): (v / 255 − mean) / std. mistral-common does this in float64 on the float32 resize output; doing
  // it in double and rounding once to float gives the float32 value nearest the reference's.
  for_bands(px.height, threads, [&](int y0, int y1) {
    const std::size_t i0 = std::size_t(y0) * px.width, i1 = std::size_t(y1) * px.width;
    for (int c = 0; c < 3; ++c) {
      float* out = px.chw.data() + c * plane;
      for (std::size_t i = i0; i < i1; ++i)
        out[i] = float((double(hwc[i * 3 + c]) / 255.0 - kClipMean[c]) / kClipStd[c]);
    }
  });
  return {};
}

}  // namespace pixtral::vision
