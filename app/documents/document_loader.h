// SPDX-License-Identifier: GPL-3.0-or-later
// DocumentLoader: opens a file as a Document, deciding PDF vs image from the bytes (not the name), and turns
// every failure into a DocumentError with a clear message. Images are checked against a decode budget before
// any pixels are allocated: larger ones are decoded downscaled where the format supports it, else refused.
#pragma once

#include "documents/document.h"

#include <QIODevice>
#include <functional>
#include <memory>

namespace quire {

/// The outcome of a load: a document, or an error; both for PasswordRequired (a locked PDF to unlock()).
struct LoadResult {
  std::shared_ptr<Document> document;
  DocumentError error = DocumentError::None;
  QString message;  ///< user-facing, translated; empty when error == None
  bool ok() const { return error == DocumentError::None && document; }
};

class DocumentLoader {
 public:
  /// Opens the file at a path for sniffing; tests inject failures through this.
  using DeviceOpener = std::function<std::unique_ptr<QIODevice>(const QString& path)>;

  DocumentLoader();

  /// Replaces how files are opened for reading (default: QFile).
  void setDeviceOpener(DeviceOpener opener) { m_opener = std::move(opener); }
  /// Most bytes a decoded image may take (ARGB32); default 512 MiB.
  void setImageBudgetBytes(qint64 bytes) { m_imageBudget = bytes; }
  qint64 imageBudgetBytes() const { return m_imageBudget; }

  /// Opens @p path. Call from any thread; the result may be handed to the GUI thread.
  LoadResult load(const QString& path) const;
  /// Wraps an in-memory image (e.g. pasted from the clipboard) as a document.
  LoadResult fromImage(const QImage& image) const;

  /// File dialog name filters: PDFs, every image format readable here, all files.
  static QStringList nameFilters();

 private:
  LoadResult loadPdf(const QString& path) const;
  LoadResult loadImage(const QString& path, QIODevice* device) const;

  DeviceOpener m_opener;
  qint64 m_imageBudget = qint64(512) << 20;
};

}  // namespace quire
