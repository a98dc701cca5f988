// SPDX-License-Identifier: GPL-3.0-or-later
// Model images (see model_image.h).
#include "documents/model_image.h"


namespace quire {

QImage modelImageForPage(const Document& doc, int page, int maxSide) {
  return doc.renderForModel(page, QRectF(), maxSide);
}

QImage modelImageForRegion(const Document& doc, int page, const QRectF& normalisedRect, int maxSide) {
  const QRectF r = normalisedRect.normalized() & QRectF(0, 0, 1, 1);
  if (r.isEmpty()) return {};
  return doc.renderForModel(page, r, maxSide);
}

}  // namespace quire
