// SPDX-License-Identifier: GPL-3.0-or-later
// User-facing messages for DocumentError (see document_error.h).
#include "documents/document_error.h"

#include <QCoreApplication>
#include <QFileInfo>

namespace quire {

QString documentErrorMessage(DocumentError error, const QString& path, const QString& detail) {
  const QString name = QFileInfo(path).fileName().isEmpty() ? path : QFileInfo(path).fileName();
  auto tr = [](const char* s) { return QCoreApplication::translate("quire::Document", s); };
  QString text;
  switch (error) {
    case DocumentError::None: return {};
    case DocumentError::NotFound: text = tr("“%1” does not exist."); break;
    case DocumentError::Unreadable: text = tr("“%1” cannot be read (check its permissions)."); break;
    case DocumentError::Empty: text = tr("“%1” is empty (0 bytes)."); break;
    case DocumentError::NotPdf: text = tr("“%1” is named like a PDF but is not a PDF file."); break;
    case DocumentError::Corrupt: text = tr("“%1” is a damaged or incomplete PDF and cannot be opened."); break;
    case DocumentError::PasswordRequired: text = tr("“%1” is protected by a password."); break;
    case DocumentError::WrongPassword: text = tr("The password for “%1” is wrong."); break;
    case DocumentError::TooLarge: text = tr("“%1” is too large an image to open."); break;
    case DocumentError::BadImage: text = tr("“%1” is a damaged image file and cannot be decoded."); break;
    case DocumentError::Unsupported: text = tr("“%1” is neither a PDF nor an image format Quire can read."); break;
  }
  text = text.arg(name);
  if (!detail.isEmpty()) text += QLatin1Char(' ') + detail;
  return text;
}

}  // namespace quire
