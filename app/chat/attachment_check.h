// SPDX-License-Identifier: GPL-3.0-or-later
// AttachmentChecker: is the document an old attachment refers to still there and unchanged? A reopened
// conversation marks each page/region chip whose file is missing, unreadable or changed (its content hash
// differs from the one recorded when it was attached); the conversation itself always opens.
// The GUI thread never touches the disk for this: check() answers at once from what needs no disk (an image kept
// in the database, no recorded path) or from the last result for that file, and otherwise says Checking and
// hands the file to a worker thread (stat, then SHA-256 of its bytes; the hash is reused while size and
// modification time are unchanged). The result comes back queued as fileChecked(path); cachedCheck() then gives
// the attachment's state. Destroying the checker while a file is being hashed is safe: the result is dropped and
// the default hasher stops at its next 1 MiB block.
// Images are stored in the database by content hash, so an image attachment is always available.
// Threading: the checker lives on one thread (the GUI's); the hasher runs on a small pool of its own.
#pragma once

#include "chat/attachment.h"

#include <QDateTime>
#include <QHash>
#include <QObject>
#include <QSet>
#include <QString>

#include <atomic>
#include <functional>
#include <memory>

namespace quire {

enum class AttachmentAvailability {
  Available,   ///< the file is there with the recorded content (or no hash was recorded to compare)
  Stored,      ///< an image kept in the database (its file, if any, is not needed)
  Missing,     ///< no file at the recorded path
  Unreadable,  ///< the path exists but cannot be read (a folder, no permission, an I/O error)
  Changed,     ///< the file's content hash differs from the recorded one
  Checking,    ///< not known yet: the file is being checked on a worker thread
};

struct AttachmentCheck {
  AttachmentAvailability availability = AttachmentAvailability::Available;
  /// For the UI (tooltip, status bar): the path and what happened; empty when available.
  QString message;
  bool usable() const {
    return availability == AttachmentAvailability::Available || availability == AttachmentAvailability::Stored;
  }
  bool pending() const { return availability == AttachmentAvailability::Checking; }
};

/// SHA-256 hex of the file's bytes; empty (and @p error set) when it cannot be read, or when @p cancel turns
/// true (checked between 1 MiB blocks). Any thread.
QString fileContentHash(const QString& path, QString* error = nullptr, const std::atomic<bool>* cancel = nullptr);

class AttachmentChecker : public QObject {
  Q_OBJECT

 public:
  /// Computes a file's content hash (empty + error when unreadable). Runs on a worker thread; must be
  /// thread-safe. The default is fileContentHash (cancelled when the checker goes away).
  using Hasher = std::function<QString(const QString& path, QString* error)>;

  explicit AttachmentChecker(QObject* parent = nullptr);
  ~AttachmentChecker() override;

  /// At once, without touching the disk: Stored / Missing (no path) / the last known state of the file — and,
  /// unless already under way, a background check of the file (fileChecked when done). Checking until the file
  /// was checked once.
  AttachmentCheck check(const Attachment& a);
  /// The state from what is known now; never starts a check (for refreshing chips on fileChecked).
  AttachmentCheck cachedCheck(const Attachment& a) const;
  /// Stats and hashes now, on the calling thread (headless use, tests). Does not use or fill the cache.
  static AttachmentCheck checkNow(const Attachment& a);

  /// Replaces the hasher (tests: a slow or blocking fake). Applies to checks started afterwards.
  void setHasher(Hasher hasher);
  /// Files being checked right now.
  int pendingCount() const { return int(m_inFlight.size()); }
  void clearCache() { m_cache.clear(); }

  /// What a worker found about one file (public for the worker function; not for callers).
  struct FileState {
    bool known = false;    ///< checked at least once
    bool exists = false;
    qint64 size = -1;
    QDateTime modified;
    QString hash;          ///< empty: unreadable (error says why)
    QString error;
  };

 Q_SIGNALS:
  /// The check of @p path finished (queued, on the checker's thread): cachedCheck() now knows its state.
  void fileChecked(const QString& path);

 private:
  void start(const QString& path);
  static AttachmentCheck verdict(const Attachment& a, const FileState& s);

  Hasher m_hasher;
  std::shared_ptr<std::atomic<bool>> m_cancel;  ///< shared with the default hasher's running jobs
  QHash<QString, FileState> m_cache;             ///< by path; written on the checker's thread only
  QSet<QString> m_inFlight;
};

}  // namespace quire
