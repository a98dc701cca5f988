// SPDX-License-Identifier: GPL-3.0-or-later
// pdfPageText: see page_text.h.
// ref: poppler qt6/src/poppler-qt6.h Poppler::Page::text(const QRectF& rect) (rect in points; empty = the page)
#include "chat/page_text.h"

#include <QCoreApplication>

#include <poppler-qt6.h>

#include <memory>

namespace quire {

PageTextResult pdfPageText(const QString& path, int page, const QRectF& region) {
  PageTextResult out;
  std::unique_ptr<Poppler::Document> doc = Poppler::Document::load(path);
  if (!doc) {
    out.error = QCoreApplication::translate("quire::PageText", "%1 cannot be read as a PDF.").arg(path);
    return out;
  }
  if (doc->isLocked()) {
    out.error = QCoreApplication::translate("quire::PageText", "%1 is protected by a password.").arg(path);
    return out;
  }
  if (page < 0 || page >= doc->numPages()) {
    out.error = QCoreApplication::translate("quire::PageText", "%1 has no page %2.").arg(path).arg(page + 1);
    return out;
  }
  std::unique_ptr<Poppler::Page> p = doc->page(page);
  if (!p) {
    out.error = QCoreApplication::translate("quire::PageText", "Page %1 of %2 cannot be read.").arg(page + 1).arg(path);
    return out;
  }
  QRectF rect;  // points, origin top-left
  if (!region.isEmpty()) {
    const QSizeF size = p->pageSizeF();
    rect = QRectF(region.x() * size.width(), region.y() * size.height(), region.width() * size.width(),
                  region.height() * size.height());
  }
  out.text = p->text(rect).trimmed();
  return out;
}

}  // namespace quire
