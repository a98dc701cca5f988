// SPDX-License-Identifier: GPL-3.0-or-later
// Helpers shared by the storage tests.
#pragma once

#include "storage/conversation_store.h"

#include <QFile>
#include <QtTest>

namespace quire::test {

inline QByteArray readFile(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

/// Runs PRAGMA integrity_check on a fresh connection of its own.
inline QString integrityCheck(const QString& path) {
  Database db = Database::open(path, Database::OpenMode::ReadWrite);
  return db.queryText("PRAGMA integrity_check");
}

}  // namespace quire::test
