// SPDX-License-Identifier: GPL-3.0-or-later
// Attachment: what a user message showed the model — a document page, a region of a page, or an image.
// Page/region attachments refer to a document by path + content hash (so a moved or edited file is noticed);
// an image (or the exact model image rendered for a page) is kept by content hash in the images table.
// Optionally a page/region also carries its text layer (Poppler), sent as a text part before the question.
// Plain data: no widgets, no I/O.
#pragma once

#include <QByteArray>
#include <QList>
#include <QRectF>
#include <QSize>
#include <QString>

namespace quire {

/// Stored on disk as text ("page", "region", "image"); never renumber or rename.
enum class AttachmentKind { Page, Region, Image };

QString attachmentKindToString(AttachmentKind kind);
/// Returns false when @p text names no kind.
bool attachmentKindFromString(const QString& text, AttachmentKind* kind);

struct Attachment;

/// The text part a page/region's text layer is sent as (a short heading naming the page, then the text); empty
/// when @p a carries no page text. The chat, `quire ask` and the JSON export all use it.
QString attachmentTextPart(const Attachment& a);

struct Attachment {
  qint64 id = 0;
  AttachmentKind kind = AttachmentKind::Page;
  QString documentPath;    ///< absolute path of the PDF or image file (may be empty for pasted images)
  QString contentHash;     ///< hash of the document file's bytes when it was attached
  int page = 0;            ///< 0-based page index (Page and Region)
  QRectF region;           ///< normalised 0–1, origin top-left (Region); empty otherwise
  QSize resolution;        ///< pixels of the image the model was given
  QByteArray imageData;    ///< encoded image bytes (Image; optionally the rendered page); empty if none
  QString imageMime;       ///< e.g. "image/png" when imageData is set
  QString imageHash;       ///< SHA-256 hex of imageData, filled in by the store
  QString pageText;        ///< the page's (region's) text layer sent along as text (Page and Region); empty if not

  bool operator==(const Attachment& o) const = default;
};

}  // namespace quire
