// SPDX-License-Identifier: GPL-3.0-or-later
// AttachmentChecker: see attachment_check.h.
#include "chat/attachment_check.h"

#include <QCryptographicHash>
#include <QFile>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QThreadPool>
#include <QtConcurrent/QtConcurrentRun>

namespace quire {

namespace {

// The checks' own threads: a slow disk or a huge file never holds up the global pool (page rendering, prepare).
QThreadPool* checkPool() {
  static QThreadPool* pool = [] {
    auto* p = new QThreadPool;  // lives until exit (a check may still run while the app closes)
    p->setMaxThreadCount(2);
    p->setExpiryTimeout(5000);
    return p;
  }();
  return pool;
}

// Worker thread: stat @p path, hash it unless @p previous already has the hash of this size and time.
AttachmentChecker::FileState probe(const QString& path, const AttachmentChecker::FileState& previous,
                                   const AttachmentChecker::Hasher& hasher) {
  AttachmentChecker::FileState s;
  s.known = true;
  const QFileInfo info(path);
  s.exists = info.exists();
  if (!s.exists) return s;
  s.size = info.size();
  s.modified = info.lastModified();
  if (info.isDir()) {
    s.error = AttachmentChecker::tr("it is a folder");
    return s;
  }
  if (previous.known && previous.exists && !previous.hash.isEmpty() && previous.size == s.size &&
      previous.modified == s.modified) {
    s.hash = previous.hash;
    return s;
  }
  s.hash = hasher(path, &s.error);
  if (s.hash.isEmpty() && s.error.isEmpty()) s.error = AttachmentChecker::tr("unknown error");
  return s;
}

}  // namespace

QString fileContentHash(const QString& path, QString* error, const std::atomic<bool>* cancel) {
  QFile f(path);
  if (QFileInfo(path).isDir() || !f.open(QIODevice::ReadOnly)) {
    if (error) *error = QFileInfo(path).isDir() ? AttachmentChecker::tr("it is a folder") : f.errorString();
    return {};
  }
  QCryptographicHash h(QCryptographicHash::Sha256);
  QByteArray block(1 << 20, Qt::Uninitialized);
  for (;;) {
    if (cancel && cancel->load()) {
      if (error) *error = AttachmentChecker::tr("cancelled");
      return {};
    }
    const qint64 n = f.read(block.data(), block.size());
    if (n < 0) {
      if (error) *error = f.errorString();
      return {};
    }
    if (n == 0) break;
    h.addData(QByteArrayView(block.constData(), n));
  }
  return QString::fromLatin1(h.result().toHex());
}

AttachmentChecker::AttachmentChecker(QObject* parent)
    : QObject(parent), m_cancel(std::make_shared<std::atomic<bool>>(false)) {
  setHasher({});
}

AttachmentChecker::~AttachmentChecker() {
  // Running jobs finish (or stop at their next block) on their own; their watchers die with this object, so
  // no result is delivered to it.
  m_cancel->store(true);
}

void AttachmentChecker::setHasher(Hasher hasher) {
  if (hasher) {
    m_hasher = std::move(hasher);
    return;
  }
  m_hasher = [cancel = m_cancel](const QString& path, QString* error) {
    return fileContentHash(path, error, cancel.get());
  };
}

AttachmentCheck AttachmentChecker::verdict(const Attachment& a, const FileState& s) {
  AttachmentCheck out;
  const QString& path = a.documentPath;
  if (!s.known) {
    out.availability = AttachmentAvailability::Checking;
    out.message = tr("Checking whether %1 is still there and unchanged…").arg(path);
    return out;
  }
  if (!s.exists) {
    out.availability = AttachmentAvailability::Missing;
    out.message = tr("%1 no longer exists (moved or deleted).").arg(path);
    return out;
  }
  if (s.hash.isEmpty()) {
    out.availability = AttachmentAvailability::Unreadable;
    out.message = tr("%1 cannot be read: %2.").arg(path, s.error);
    return out;
  }
  if (!a.contentHash.isEmpty() && a.contentHash != s.hash) {
    out.availability = AttachmentAvailability::Changed;
    out.message = tr("%1 has changed since it was attached (its content differs): the page shown may not be "
                     "the one the question was about.").arg(path);
  }
  return out;
}

AttachmentCheck AttachmentChecker::cachedCheck(const Attachment& a) const {
  AttachmentCheck out;
  if (a.kind == AttachmentKind::Image && !a.imageData.isEmpty()) {
    out.availability = AttachmentAvailability::Stored;
    return out;
  }
  if (a.documentPath.isEmpty()) {
    out.availability = AttachmentAvailability::Missing;
    out.message = tr("No file was recorded for this attachment.");
    return out;
  }
  return verdict(a, m_cache.value(a.documentPath));
}

AttachmentCheck AttachmentChecker::check(const Attachment& a) {
  const AttachmentCheck out = cachedCheck(a);
  if (out.availability != AttachmentAvailability::Stored && !a.documentPath.isEmpty()) start(a.documentPath);
  return out;
}

AttachmentCheck AttachmentChecker::checkNow(const Attachment& a) {
  if ((a.kind == AttachmentKind::Image && !a.imageData.isEmpty()) || a.documentPath.isEmpty()) {
    AttachmentChecker none;
    return none.cachedCheck(a);
  }
  const Hasher hasher = [](const QString& path, QString* error) { return fileContentHash(path, error); };
  return verdict(a, probe(a.documentPath, {}, hasher));
}

void AttachmentChecker::start(const QString& path) {
  if (m_inFlight.contains(path)) return;
  m_inFlight.insert(path);
  auto* watcher = new QFutureWatcher<FileState>(this);
  connect(watcher, &QFutureWatcher<FileState>::finished, this, [this, watcher, path] {
    watcher->deleteLater();
    m_inFlight.remove(path);
    m_cache.insert(path, watcher->result());  // an unreadable file is hashed again next time
    emit fileChecked(path);
  });
  const FileState previous = m_cache.value(path);
  watcher->setFuture(QtConcurrent::run(checkPool(), [path, previous, hasher = m_hasher] {
    return probe(path, previous, hasher);
  }));
}

}  // namespace quire
