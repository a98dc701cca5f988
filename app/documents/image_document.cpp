// SPDX-License-Identifier: GPL-3.0-or-later
// ImageDocument: scaling for the viewer, own-resolution crops for the model.
#include "documents/image_document.h"

#include <algorithm>
#include <cmath>

namespace quire {

ImageDocument::ImageDocument(QString path, QImage image, QSize originalSize)
    : Document(std::move(path)), m_image(std::move(image)), m_originalSize(originalSize.isValid() ? originalSize : m_image.size()) {}

QSizeF ImageDocument::pageSize(int page) const {
  if (page != 0) return {};
  return QSizeF(m_image.width() * kPointsPerPixel, m_image.height() * kPointsPerPixel);
}

QRect ImageDocument::pixelRect(const QRectF& region) const {
  if (region.isEmpty()) return m_image.rect();
  const QRectF r = region & QRectF(0, 0, 1, 1);
  const int x0 = int(std::floor(r.left() * m_image.width())), y0 = int(std::floor(r.top() * m_image.height()));
  const int x1 = int(std::ceil(r.right() * m_image.width())), y1 = int(std::ceil(r.bottom() * m_image.height()));
  return QRect(QPoint(x0, y0), QPoint(std::max(x0, x1 - 1), std::max(y0, y1 - 1))) & m_image.rect();
}

QImage ImageDocument::render(int page, double scale, const QRectF& region) const {
  if (page != 0 || scale <= 0 || m_image.isNull()) return {};
  const QImage source = region.isEmpty() ? m_image : m_image.copy(pixelRect(region));
  const double pixelsPerImagePixel = scale * kPointsPerPixel;
  const QSize target(std::max(1, int(std::lround(source.width() * pixelsPerImagePixel))),
                     std::max(1, int(std::lround(source.height() * pixelsPerImagePixel))));
  if (target == source.size()) return source;
  return source.scaled(target, Qt::IgnoreAspectRatio, Qt::SmoothTransformation);
}

QImage ImageDocument::renderForModel(int page, const QRectF& region, int /*longestSide*/) const {
  if (page != 0 || m_image.isNull()) return {};
  return region.isEmpty() ? m_image : m_image.copy(pixelRect(region));
}

}  // namespace quire
