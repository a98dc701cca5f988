// SPDX-License-Identifier: GPL-3.0-or-later
// RecentFiles (see recent_files.h).
#include "settings/recent_files.h"

#include <QFileInfo>
#include <QSettings>

namespace quire {

namespace {
const char* const kKey = "recentFiles";
}

RecentFiles::RecentFiles(QObject* parent) : QObject(parent) {
  m_files = QSettings().value(QLatin1String(kKey)).toStringList();
}

QStringList RecentFiles::files() const {
  QStringList existing;
  for (const QString& f : m_files)
    if (QFileInfo::exists(f)) existing << f;
  return existing;
}

void RecentFiles::add(const QString& path) {
  if (path.isEmpty()) return;
  const QString absolute = QFileInfo(path).absoluteFilePath();
  m_files.removeAll(absolute);
  m_files.prepend(absolute);
  while (m_files.size() > maxCount()) m_files.removeLast();
  QSettings().setValue(QLatin1String(kKey), m_files);
  Q_EMIT changed();
}

void RecentFiles::clear() {
  m_files.clear();
  QSettings().remove(QLatin1String(kKey));
  Q_EMIT changed();
}

}  // namespace quire
