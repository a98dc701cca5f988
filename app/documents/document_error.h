// SPDX-License-Identifier: GPL-3.0-or-later
// Why a document could not be opened (or unlocked), and the message a person reads for it.
// Every load failure maps to one of these; the UI shows documentErrorMessage() verbatim.
#pragma once

#include <QString>

namespace quire {

enum class DocumentError {
  None,
  NotFound,          ///< no such file
  Unreadable,        ///< exists but cannot be opened (permissions, I/O error)
  Empty,             ///< 0 bytes
  NotPdf,            ///< named .pdf but its bytes are something else
  Corrupt,           ///< a PDF Poppler cannot make sense of (damaged, truncated)
  PasswordRequired,  ///< an encrypted PDF: ask for the password, then Document::unlock()
  WrongPassword,     ///< unlock() was given the wrong password
  TooLarge,          ///< an image too large to decode within the memory budget
  BadImage,          ///< an image file whose data cannot be decoded
  Unsupported,       ///< neither a PDF nor an image format this machine can read
};

/// A one-sentence, user-facing explanation of @p error for the file at @p path (translated).
QString documentErrorMessage(DocumentError error, const QString& path, const QString& detail = {});

}  // namespace quire
