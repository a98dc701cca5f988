// SPDX-License-Identifier: GPL-3.0-or-later
// ImageDocument: one image (PNG, JPEG, WebP, BMP, GIF, TIFF … whatever QImageReader reads here) as a one-page
// document. The decoded pixels are immutable after construction, so every call is thread-safe without locks.
// Model images are the file's own pixels (cropped for regions), never resampled: the engine does the resize.
#pragma once

#include "documents/document.h"

namespace quire {

class ImageDocument final : public Document {
 public:
  /// @p image: the decoded pixels; @p originalSize: the file's size before any downscaling on load.
  ImageDocument(QString path, QImage image, QSize originalSize = {});

  Kind kind() const override { return Kind::Image; }
  int pageCount() const override { return 1; }
  QSizeF pageSize(int page) const override;
  QImage render(int page, double scale, const QRectF& region = {}) const override;
  QImage renderForModel(int page, const QRectF& region, int longestSide) const override;

  /// The decoded pixels.
  const QImage& image() const { return m_image; }
  /// True when the file was larger than the decode budget and was opened downscaled.
  bool isDownscaled() const { return m_originalSize.isValid() && m_originalSize != m_image.size(); }
  QSize originalSize() const { return m_originalSize; }

  /// Points per image pixel (an image pixel is shown 1:1 at 100 % on a 96 dpi screen).
  static constexpr double kPointsPerPixel = 72.0 / 96.0;

 private:
  QRect pixelRect(const QRectF& region) const;

  QImage m_image;
  QSize m_originalSize;
};

}  // namespace quire
