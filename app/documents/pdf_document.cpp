// SPDX-License-Identifier: GPL-3.0-or-later
// PdfDocument: rendering, model-size rendering, text search and unlocking through Poppler-Qt6.
#include "documents/pdf_document.h"

#include <poppler-qt6.h>

#include <QMutexLocker>
#include <algorithm>
#include <cmath>

namespace quire {

PdfDocument::PdfDocument(QString path, std::unique_ptr<Poppler::Document> doc)
    : Document(std::move(path)), m_doc(std::move(doc)) {
  configure();
  m_locked = m_doc->isLocked();
  if (!m_locked) cachePageSizes();
}

PdfDocument::~PdfDocument() = default;

void PdfDocument::configure() {
  m_doc->setRenderHint(Poppler::Document::Antialiasing, true);
  m_doc->setRenderHint(Poppler::Document::TextAntialiasing, true);
  m_doc->setRenderHint(Poppler::Document::TextHinting, true);
  m_doc->setPaperColor(Qt::white);
}

// Caller holds m_mutex (or is the constructor).
void PdfDocument::cachePageSizes() {
  const int n = m_doc->numPages();
  std::vector<QSizeF> sizes(static_cast<std::size_t>(std::max(n, 0)), QSizeF(612, 792));
  for (int i = 0; i < n; ++i) {
    if (auto page = m_doc->page(i)) {
      const QSizeF s = page->pageSizeF();
      if (s.width() > 0 && s.height() > 0) sizes[std::size_t(i)] = s;
    }
  }
  QMutexLocker meta(&m_metaMutex);
  m_pageSizes = std::move(sizes);
}

QSizeF PdfDocument::sizeOf(int page) const {
  QMutexLocker meta(&m_metaMutex);
  if (page < 0 || page >= int(m_pageSizes.size())) return {};
  return m_pageSizes[std::size_t(page)];
}

int PdfDocument::pageCount() const {
  QMutexLocker meta(&m_metaMutex);
  return int(m_pageSizes.size());
}

QSizeF PdfDocument::pageSize(int page) const { return sizeOf(page); }

bool PdfDocument::isLocked() const { return m_locked.load(); }

DocumentError PdfDocument::unlock(const QString& password) {
  QMutexLocker lock(&m_mutex);
  if (!m_doc->isLocked()) return DocumentError::None;
  // Poppler takes Latin-1 passwords; try it both as the owner and as the user password.
  const QByteArray pw = password.toLatin1();
  m_doc->unlock(pw, pw);
  if (m_doc->isLocked()) return DocumentError::WrongPassword;
  configure();
  cachePageSizes();
  m_locked = false;
  return DocumentError::None;
}

// Caller holds m_mutex. pixels: the sub-rectangle at that resolution, or null for the whole page.
QImage PdfDocument::renderLocked(int page, double dpiX, double dpiY, const QRect& pixels) const {
  if (m_doc->isLocked()) return {};
  auto p = m_doc->page(page);
  if (!p) return {};
  QImage image = pixels.isNull() ? p->renderToImage(dpiX, dpiY)
                                 : p->renderToImage(dpiX, dpiY, pixels.x(), pixels.y(), pixels.width(),
                                                    pixels.height());
  return image;
}

QImage PdfDocument::render(int page, double scale, const QRectF& region) const {
  const QSizeF pts = sizeOf(page);
  if (pts.isEmpty() || scale <= 0) return {};
  const double dpi = 72.0 * scale;
  QRect pixels;
  if (!region.isEmpty()) {
    const QRectF r = region & QRectF(0, 0, 1, 1);
    const double w = pts.width() * scale, h = pts.height() * scale;
    pixels = QRect(int(std::floor(r.x() * w)), int(std::floor(r.y() * h)), std::max(1, int(std::lround(r.width() * w))),
                   std::max(1, int(std::lround(r.height() * h))));
  }
  QMutexLocker lock(&m_mutex);
  return renderLocked(page, dpi, dpi, pixels);
}

QImage PdfDocument::renderForModel(int page, const QRectF& region, int longestSide) const {
  const QSizeF pts = sizeOf(page);
  if (pts.isEmpty() || longestSide <= 0) return {};
  const QRectF r = region.isEmpty() ? QRectF(0, 0, 1, 1) : (region & QRectF(0, 0, 1, 1));
  if (r.isEmpty()) return {};
  // The region's size in points decides the resolution: its longest side becomes exactly longestSide pixels.
  const double regionW = r.width() * pts.width(), regionH = r.height() * pts.height();
  const double scale = double(longestSide) / std::max(regionW, regionH);  // pixels per point
  const int w = std::clamp(int(std::lround(regionW * scale)), 1, longestSide);
  const int h = std::clamp(int(std::lround(regionH * scale)), 1, longestSide);
  const QRect pixels(int(std::lround(r.x() * pts.width() * scale)), int(std::lround(r.y() * pts.height() * scale)), w, h);
  QMutexLocker lock(&m_mutex);
  QImage image = renderLocked(page, 72.0 * scale, 72.0 * scale, pixels);
  if (!image.isNull() && image.size() != QSize(w, h)) image = image.copy(0, 0, w, h);  // never resample
  return image;
}

QList<QRectF> PdfDocument::search(int page, const QString& text) const {
  const QSizeF pts = sizeOf(page);
  if (text.isEmpty() || pts.isEmpty()) return {};
  QMutexLocker lock(&m_mutex);
  if (m_doc->isLocked()) return {};
  auto p = m_doc->page(page);
  if (!p) return {};
  QList<QRectF> hits = p->search(text, Poppler::Page::IgnoreCase);  // in points
  for (QRectF& r : hits)
    r = QRectF(r.x() / pts.width(), r.y() / pts.height(), r.width() / pts.width(), r.height() / pts.height());
  return hits;
}

}  // namespace quire
