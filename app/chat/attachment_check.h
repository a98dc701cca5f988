// SPDX-License-Identifier: GPL-3.0-or-later
// AttachmentChecker: is the document an old attachment refers to still there and unchanged? A reopened
// conversation marks each page/region chip whose file is missing, unreadable or changed (its content hash
// differs from the one recorded when it was attached); the conversation itself always opens. Hashes are cached
// per file (path, size, modification time), so reopening a conversation does not re-read unchanged files.
// Images are stored in the database by content hash, so an image attachment is always available.
// Threading: GUI thread (or any one thread per checker). No widgets.
#pragma once

#include "chat/attachment.h"

#include <QCoreApplication>
#include <QDateTime>
#include <QHash>
#include <QString>

namespace quire {

enum class AttachmentAvailability {
  Available,   ///< the file is there with the recorded content (or no hash was recorded to compare)
  Stored,      ///< an image kept in the database (its file, if any, is not needed)
  Missing,     ///< no file at the recorded path
  Unreadable,  ///< the path exists but cannot be read (a folder, no permission, an I/O error)
  Changed,     ///< the file's content hash differs from the recorded one
};

struct AttachmentCheck {
  AttachmentAvailability availability = AttachmentAvailability::Available;
  /// For the UI (tooltip, status bar): the path and what happened; empty when available.
  QString message;
  bool usable() const {
    return availability == AttachmentAvailability::Available || availability == AttachmentAvailability::Stored;
  }
};

/// SHA-256 hex of the file's bytes; empty (and @p error set) when it cannot be read.
QString fileContentHash(const QString& path, QString* error = nullptr);

class AttachmentChecker {
  Q_DECLARE_TR_FUNCTIONS(AttachmentChecker)

 public:
  AttachmentCheck check(const Attachment& a);
  void clearCache() { m_cache.clear(); }

 private:
  struct Entry {
    qint64 size = -1;
    QDateTime modified;
    QString hash;
    QString error;
  };
  QHash<QString, Entry> m_cache;
};

}  // namespace quire
