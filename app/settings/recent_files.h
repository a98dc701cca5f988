// SPDX-License-Identifier: GPL-3.0-or-later
// RecentFiles: the most recently opened documents, newest first, kept in QSettings ("recentFiles").
#pragma once

#include <QObject>
#include <QStringList>

namespace quire {

class RecentFiles : public QObject {
  Q_OBJECT

 public:
  explicit RecentFiles(QObject* parent = nullptr);

  /// Newest first; files that no longer exist are left out.
  QStringList files() const;
  /// Moves @p path to the front (absolute path), trimming to maxCount().
  void add(const QString& path);
  void clear();
  int maxCount() const { return 10; }

 Q_SIGNALS:
  void changed();

 private:
  QStringList m_files;
};

}  // namespace quire
