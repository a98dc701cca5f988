// SPDX-License-Identifier: GPL-3.0-or-later
// Model images (see model_image.h).
#include "documents/model_image.h"

#include <QPainter>
#include <cstring>

namespace quire {

QImage modelImageForPage(const Document& doc, int page, int maxSide) {
  return doc.renderForModel(page, QRectF(), maxSide);
}

QImage modelImageForRegion(const Document& doc, int page, const QRectF& normalisedRect, int maxSide) {
  const QRectF r = normalisedRect.normalized() & QRectF(0, 0, 1, 1);
  if (r.isEmpty()) return {};
  return doc.renderForModel(page, r, maxSide);
}

pixtral::Image toPixtralImage(const QImage& image) {
  pixtral::Image out;
  if (image.isNull()) return out;
  QImage rgb;
  if (image.hasAlphaChannel()) {
    // Composite on white, as the engine would (Pillow's rule), so RGB8 is always the right hand-over.
    rgb = QImage(image.size(), QImage::Format_RGB888);
    rgb.fill(Qt::white);
    QPainter p(&rgb);
    p.drawImage(0, 0, image);
  } else {
    rgb = image.convertToFormat(QImage::Format_RGB888);
  }
  out.width = rgb.width();
  out.height = rgb.height();
  out.format = pixtral::PixelFormat::rgb8;
  const std::size_t rowBytes = std::size_t(out.width) * 3;
  out.pixels.resize(rowBytes * std::size_t(out.height));
  for (int y = 0; y < out.height; ++y)
    std::memcpy(out.pixels.data() + rowBytes * std::size_t(y), rgb.constScanLine(y), rowBytes);
  return out;
}

}  // namespace quire
