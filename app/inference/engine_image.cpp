// SPDX-License-Identifier: GPL-3.0-or-later
// QImage → pixtral::Image (see engine_image.h).
#include "inference/engine_image.h"

#include <QCoreApplication>

#include <cstring>

namespace quire {

bool toEngineImage(const QImage& image, pixtral::Image* out, QString* error) {
  *out = {};
  if (image.isNull() || image.width() <= 0 || image.height() <= 0) {
    if (error) *error = QCoreApplication::translate("quire", "the image is empty or could not be decoded");
    return false;
  }
  QImage src;
  pixtral::PixelFormat format;
  if (image.isGrayscale() && !image.hasAlphaChannel()) {
    src = image.convertToFormat(QImage::Format_Grayscale8);
    format = pixtral::PixelFormat::gray8;
  } else if (image.hasAlphaChannel()) {
    // Non-premultiplied, so fully transparent pixels keep no colour and the engine's compositing is exact.
    src = image.convertToFormat(QImage::Format_RGBA8888);
    format = pixtral::PixelFormat::rgba8;
  } else {
    src = image.convertToFormat(QImage::Format_RGB888);
    format = pixtral::PixelFormat::rgb8;
  }
  if (src.isNull()) {
    if (error) *error = QCoreApplication::translate("quire", "the image could not be converted (out of memory?)");
    return false;
  }
  out->width = src.width();
  out->height = src.height();
  out->format = format;
  const std::size_t rowBytes = std::size_t(out->width) * std::size_t(pixtral::bytes_per_pixel(format));
  out->pixels.resize(rowBytes * std::size_t(out->height));  // (H, W, channels)
  for (int y = 0; y < out->height; ++y)
    std::memcpy(out->pixels.data() + rowBytes * std::size_t(y), src.constScanLine(y), rowBytes);
  return true;
}

}  // namespace quire
