// SPDX-License-Identifier: GPL-3.0-or-later
// The text layer of a PDF page (or of a region of it) through Poppler, to send along with the page's image.
// Opens its own Poppler document from the file, so it may run on any thread and never shares the viewer's.
#pragma once

#include <QRectF>
#include <QString>

namespace quire {

struct PageTextResult {
  QString text;   ///< the page's text in reading order (may be empty: a scan has no text layer)
  QString error;  ///< set when the file could not be read as a PDF (or is encrypted)
};

/// The text of @p page (0-based) of the PDF at @p path; with a non-empty @p region (normalised 0–1, origin
/// top-left) only the text inside it.
PageTextResult pdfPageText(const QString& path, int page, const QRectF& region = {});

}  // namespace quire
