// SPDX-License-Identifier: GPL-3.0-or-later
// DocumentLoader: sniffing, error mapping, budgeted image decoding.
#include "documents/document_loader.h"

#include "documents/image_document.h"
#include "documents/pdf_document.h"

#include <poppler-qt6.h>

#include <QCoreApplication>
#include <QFile>
#include <QFileInfo>
#include <QImageReader>
#include <cmath>

namespace quire {

namespace {

LoadResult failure(DocumentError error, const QString& path, const QString& detail = {}) {
  LoadResult r;
  r.error = error;
  r.message = documentErrorMessage(error, path, detail);
  return r;
}

// PDF readers accept the header anywhere in the first 1024 bytes (PDF 1.7 Implementation note 13).
bool looksLikePdf(const QByteArray& head) { return head.contains("%PDF-"); }

}  // namespace

DocumentLoader::DocumentLoader()
    : m_opener([](const QString& path) -> std::unique_ptr<QIODevice> { return std::make_unique<QFile>(path); }) {}

LoadResult DocumentLoader::load(const QString& path) const {
  const QFileInfo info(path);
  if (!info.exists()) return failure(DocumentError::NotFound, path);
  std::unique_ptr<QIODevice> device = m_opener(path);
  if (!device || !device->open(QIODevice::ReadOnly))
    return failure(DocumentError::Unreadable, path, device ? device->errorString() : QString());
  if (device->bytesAvailable() == 0 && device->atEnd()) return failure(DocumentError::Empty, path);
  const QByteArray head = device->peek(1024);
  if (head.isEmpty()) return failure(DocumentError::Empty, path);
  if (looksLikePdf(head)) {
    device->close();
    return loadPdf(path);
  }
  LoadResult r = loadImage(path, device.get());
  if (r.error == DocumentError::Unsupported && info.suffix().compare(QLatin1String("pdf"), Qt::CaseInsensitive) == 0)
    return failure(DocumentError::NotPdf, path);
  return r;
}

LoadResult DocumentLoader::loadPdf(const QString& path) const {
  std::unique_ptr<Poppler::Document> doc = Poppler::Document::load(path);
  if (!doc) return failure(DocumentError::Corrupt, path);
  const bool locked = doc->isLocked();
  if (!locked && doc->numPages() <= 0) return failure(DocumentError::Corrupt, path);
  LoadResult r;
  r.document = std::make_shared<PdfDocument>(path, std::move(doc));
  if (locked) {
    r.error = DocumentError::PasswordRequired;
    r.message = documentErrorMessage(r.error, path);
  }
  return r;
}

LoadResult DocumentLoader::loadImage(const QString& path, QIODevice* device) const {
  QImageReader reader(device);
  reader.setDecideFormatFromContent(true);
  reader.setAutoTransform(true);
  if (!reader.canRead()) return failure(DocumentError::Unsupported, path);
  const QSize size = reader.size();  // header only: nothing decoded yet
  QSize decodeSize = size;
  if (size.isValid()) {
    const double bytes = double(size.width()) * double(size.height()) * 4.0;
    if (bytes > double(m_imageBudget)) {
      // Only decoders that scale while decoding keep memory down (libjpeg's DCT scaling; SVG draws at any
      // size). Others (PNG, TIFF, …) would decode at full size first, so those are refused.
      const QByteArray format = reader.format();
      const bool scalesWhileDecoding = format == "jpeg" || format == "jpg" || format == "svg" || format == "svgz";
      if (!scalesWhileDecoding || !reader.supportsOption(QImageIOHandler::ScaledSize))
        return failure(DocumentError::TooLarge, path,
                       QCoreApplication::translate("quire::Document", "(%1 × %2 pixels; at most %3 MiB decoded)")
                           .arg(size.width()).arg(size.height()).arg(m_imageBudget >> 20));
      const double shrink = std::sqrt(double(m_imageBudget) / bytes);
      decodeSize = QSize(std::max(1, int(size.width() * shrink)), std::max(1, int(size.height() * shrink)));
      reader.setScaledSize(decodeSize);
    }
  }
  // Belt and braces: the reader itself refuses to allocate more than the budget (in MiB, process-wide).
  const int limitMb = int(std::min<qint64>(m_imageBudget >> 20, 1 << 20)) + 1;
  if (QImageReader::allocationLimit() < limitMb) QImageReader::setAllocationLimit(limitMb);
  QImage image = reader.read();
  if (image.isNull()) {
    if (reader.error() == QImageReader::UnsupportedFormatError) return failure(DocumentError::Unsupported, path);
    return failure(DocumentError::BadImage, path, reader.errorString());
  }
  LoadResult r;
  r.document = std::make_shared<ImageDocument>(path, std::move(image), size);
  return r;
}

LoadResult DocumentLoader::fromImage(const QImage& image) const {
  if (image.isNull()) return failure(DocumentError::BadImage, QString());
  LoadResult r;
  r.document = std::make_shared<ImageDocument>(QString(), image);
  return r;
}

QStringList DocumentLoader::nameFilters() {
  QStringList patterns;
  for (const QByteArray& f : QImageReader::supportedImageFormats()) patterns << QStringLiteral("*.") + QString::fromLatin1(f);
  auto tr = [](const char* s) { return QCoreApplication::translate("quire::DocumentLoader", s); };
  return {tr("Documents and images (*.pdf %1)").arg(patterns.join(QLatin1Char(' '))), tr("PDF documents (*.pdf)"),
          tr("Images (%1)").arg(patterns.join(QLatin1Char(' '))), tr("All files (*)")};
}

}  // namespace quire
