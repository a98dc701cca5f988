// SPDX-License-Identifier: GPL-3.0-or-later
// PdfDocument: a PDF through Poppler-Qt6. Poppler's document is not safe for concurrent use, so every call into
// it holds m_mutex (several documents still render in parallel). Page count and sizes are cached at load and
// guarded by their own m_metaMutex, so the GUI thread asking for geometry never waits behind a render.
// Lock order: m_mutex, then m_metaMutex. ref: okular generators/poppler/generator_pdf.cpp
#pragma once

#include "documents/document.h"

#include <QMutex>
#include <atomic>
#include <memory>
#include <vector>

namespace Poppler {
class Document;
}

namespace quire {

class PdfDocument final : public Document {
 public:
  /// Takes a loaded (possibly locked) Poppler document.
  PdfDocument(QString path, std::unique_ptr<Poppler::Document> doc);
  ~PdfDocument() override;

  Kind kind() const override { return Kind::Pdf; }
  int pageCount() const override;
  QSizeF pageSize(int page) const override;
  QImage render(int page, double scale, const QRectF& region = {}) const override;
  QImage renderForModel(int page, const QRectF& region, int longestSide) const override;
  QList<QRectF> search(int page, const QString& text) const override;
  bool hasText() const override { return true; }
  bool isLocked() const override;
  DocumentError unlock(const QString& password) override;

 private:
  void configure();
  void cachePageSizes();
  QImage renderLocked(int page, double dpiX, double dpiY, const QRect& pixels) const;

  QSizeF sizeOf(int page) const;  // takes m_metaMutex; empty when out of range

  mutable QMutex m_mutex;             // guards m_doc (every Poppler call)
  mutable QMutex m_metaMutex;         // guards m_pageSizes
  std::unique_ptr<Poppler::Document> m_doc;
  std::vector<QSizeF> m_pageSizes;    // points, one per page; filled once unlocked
  std::atomic<bool> m_locked{false};
};

}  // namespace quire
