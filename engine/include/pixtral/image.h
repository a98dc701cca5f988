// SPDX-License-Identifier: Apache-2.0
// ImageView / Image: decoded pixels handed to the engine. The engine accepts RGB8, RGBA8, gray8 and
// gray+alpha8 and composites transparency on white itself (Pillow's rule, spec §4.1), so every caller gets it
// right. Documents stay out of the engine: the app renders pages to pixels and hands them over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pixtral {

enum class PixelFormat { rgb8, rgba8, gray8, gray_alpha8 };

/// Bytes per pixel of a format (3, 4, 1, 2).
int bytes_per_pixel(PixelFormat f);

/// A non-owning view of 8-bit pixels, rows top to bottom; stride in bytes (0 = tightly packed).
struct ImageView {
  const std::uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  std::size_t stride = 0;
  PixelFormat format = PixelFormat::rgb8;

  std::size_t row_bytes() const { return stride ? stride : std::size_t(width) * bytes_per_pixel(format); }
};

/// An owning image (tightly packed rows).
struct Image {
  int width = 0;
  int height = 0;
  PixelFormat format = PixelFormat::rgb8;
  std::vector<std::uint8_t> pixels;

  ImageView view() const { return ImageView{pixels.data(), width, height, 0, format}; }
  /// Copy a view into an owning image.
  static Image copy_of(const ImageView& v);
};

}  // namespace pixtral
