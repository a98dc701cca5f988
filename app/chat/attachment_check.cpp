// SPDX-License-Identifier: GPL-3.0-or-later
// AttachmentChecker: see attachment_check.h.
#include "chat/attachment_check.h"

#include <QCryptographicHash>
#include <QFile>
#include <QFileInfo>

namespace quire {

QString fileContentHash(const QString& path, QString* error) {
  QFile f(path);
  if (QFileInfo(path).isDir() || !f.open(QIODevice::ReadOnly)) {
    if (error) *error = QFileInfo(path).isDir() ? AttachmentChecker::tr("it is a folder") : f.errorString();
    return {};
  }
  QCryptographicHash h(QCryptographicHash::Sha256);
  if (!h.addData(&f)) {
    if (error) *error = f.errorString();
    return {};
  }
  return QString::fromLatin1(h.result().toHex());
}

AttachmentCheck AttachmentChecker::check(const Attachment& a) {
  AttachmentCheck out;
  if (a.kind == AttachmentKind::Image && !a.imageData.isEmpty()) {
    out.availability = AttachmentAvailability::Stored;
    return out;
  }
  const QString& path = a.documentPath;
  if (path.isEmpty()) {
    out.availability = AttachmentAvailability::Missing;
    out.message = tr("No file was recorded for this attachment.");
    return out;
  }
  const QFileInfo info(path);
  if (!info.exists()) {
    out.availability = AttachmentAvailability::Missing;
    out.message = tr("%1 no longer exists (moved or deleted).").arg(path);
    return out;
  }
  Entry& e = m_cache[path];
  if (e.size != info.size() || e.modified != info.lastModified() || (e.hash.isEmpty() && e.error.isEmpty())) {
    e.size = info.size();
    e.modified = info.lastModified();
    e.error.clear();
    e.hash = fileContentHash(path, &e.error);
    if (e.hash.isEmpty() && e.error.isEmpty()) e.error = tr("unknown error");
  }
  if (e.hash.isEmpty()) {
    out.availability = AttachmentAvailability::Unreadable;
    out.message = tr("%1 cannot be read: %2.").arg(path, e.error);
    m_cache.remove(path);  // try again next time (permissions may be fixed)
    return out;
  }
  if (!a.contentHash.isEmpty() && a.contentHash != e.hash) {
    out.availability = AttachmentAvailability::Changed;
    out.message = tr("%1 has changed since it was attached (its content differs): the page shown may not be "
                     "the one the question was about.").arg(path);
  }
  return out;
}

}  // namespace quire
