// SPDX-License-Identifier: GPL-3.0-or-later
// Document: a read-only, paged source of pixels (a PDF through Poppler, or an image file as one page).
// Geometry is in points (1/72 inch); an image pixel counts as 0.75 pt (96 dpi) so 100 % zoom shows it 1:1.
// Threading: render(), search() and pageSize() may be called from any thread; implementations serialise
// access to the underlying library themselves. unlock() is called from the GUI thread before rendering.
#pragma once

#include "documents/document_error.h"

#include <QImage>
#include <QList>
#include <QRectF>
#include <QSizeF>
#include <QString>

namespace quire {

class Document {
 public:
  enum class Kind { Pdf, Image };

  virtual ~Document() = default;
  Document(const Document&) = delete;
  Document& operator=(const Document&) = delete;

  /// The file this document was opened from (may be empty for pasted images).
  QString path() const { return m_path; }
  /// A short name for tabs and titles.
  QString title() const;

  virtual Kind kind() const = 0;
  /// Number of pages (0 while a PDF is locked).
  virtual int pageCount() const = 0;
  /// Size of @p page in points.
  virtual QSizeF pageSize(int page) const = 0;

  /// Renders @p page at @p scale device pixels per point. With a non-empty @p region (normalised 0–1, origin
  /// top-left) only that part of the page is rendered. Returns a null image on failure. Thread-safe.
  virtual QImage render(int page, double scale, const QRectF& region = {}) const = 0;

  /// Renders @p page (or its @p region) so that its longest side is exactly @p longestSide pixels, rendering
  /// at that size directly (PDF) rather than resampling. Images return their pixels at their own resolution
  /// (cropped to @p region) and ignore @p longestSide. Thread-safe.
  virtual QImage renderForModel(int page, const QRectF& region, int longestSide) const = 0;

  /// Case-insensitive text search on @p page; hits as normalised rects (0–1, origin top-left). Thread-safe.
  virtual QList<QRectF> search(int page, const QString& text) const { return {}; }
  /// Whether the document has a text layer that search() can use.
  virtual bool hasText() const { return false; }

  /// True while an encrypted PDF waits for its password.
  virtual bool isLocked() const { return false; }
  /// Tries @p password; returns None, or WrongPassword when it does not open the document.
  virtual DocumentError unlock(const QString& password) { return DocumentError::None; }

 protected:
  explicit Document(QString path) : m_path(std::move(path)) {}

 private:
  QString m_path;
};

}  // namespace quire
