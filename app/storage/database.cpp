// SPDX-License-Identifier: GPL-3.0-or-later
#include "storage/database.h"

#include <sqlite3.h>

#include <utility>

namespace quire {

Database::~Database() { close(); }

Database::Database(Database&& other) noexcept
    : m_db(std::exchange(other.m_db, nullptr)),
      m_path(std::move(other.m_path)),
      m_readOnly(other.m_readOnly),
      m_thread(other.m_thread) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    close();
    m_db = std::exchange(other.m_db, nullptr);
    m_path = std::move(other.m_path);
    m_readOnly = other.m_readOnly;
    m_thread = other.m_thread;
  }
  return *this;
}

void Database::close() {
  if (m_db) {
    // close_v2 defers the close until every statement is finalized instead of failing with SQLITE_BUSY.
    sqlite3_close_v2(m_db);
    m_db = nullptr;
  }
}

Database Database::open(const QString& path, OpenMode mode, int busyTimeoutMs) {
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  switch (mode) {
    case OpenMode::ReadWriteCreate: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
    case OpenMode::ReadWrite: flags |= SQLITE_OPEN_READWRITE; break;
    case OpenMode::ReadOnly: flags |= SQLITE_OPEN_READONLY; break;
  }
  Database db;
  db.m_path = path;
  db.m_thread = std::this_thread::get_id();
  const int rc = sqlite3_open_v2(path.toUtf8().constData(), &db.m_db, flags, nullptr);
  if (rc != SQLITE_OK) {
    // sqlite3_open_v2 hands back a handle even on failure (it carries the message); close() frees it.
    const QString msg = db.m_db ? QString::fromUtf8(sqlite3_errmsg(db.m_db)) : QString::fromUtf8(sqlite3_errstr(rc));
    throw StorageError(rc, msg, path);
  }
  sqlite3_extended_result_codes(db.m_db, 1);
  db.m_readOnly = sqlite3_db_readonly(db.m_db, "main") == 1;
  sqlite3_busy_timeout(db.m_db, busyTimeoutMs);
  // The first statement reads the file header: a file that is not a database fails here with SQLITE_NOTADB.
  db.exec("PRAGMA foreign_keys = ON");
  if (!db.m_readOnly) {
    const QString journal = db.queryText("PRAGMA journal_mode = WAL");
    if (journal.compare(QLatin1String("wal"), Qt::CaseInsensitive) != 0 && path != QLatin1String(":memory:"))
      throw StorageError(StorageError::Kind::Other,
                         QStringLiteral("journal_mode=WAL refused (got %1): %2").arg(journal, path));
    db.exec("PRAGMA synchronous = NORMAL");
  } else {
    db.exec("PRAGMA query_only = ON");
  }
  return db;
}

void Database::checkThread() const {
  Q_ASSERT_X(m_thread == std::this_thread::get_id(), "quire::Database",
             "a Database is used only on the thread that opened it (one connection per thread)");
}

void Database::throwError(int rc, const QString& context) const {
  throw StorageError(sqlite3_extended_errcode(m_db) & 0xff ? sqlite3_extended_errcode(m_db) : rc,
                     lastErrorMessage(), context);
}

void Database::exec(const char* sql) {
  checkThread();
  char* err = nullptr;
  const int rc = sqlite3_exec(m_db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    const QString msg = err ? QString::fromUtf8(err) : QString::fromUtf8(sqlite3_errstr(rc));
    sqlite3_free(err);
    throw StorageError(sqlite3_extended_errcode(m_db), msg, QString::fromUtf8(sql).left(80));
  }
}

Statement Database::prepare(const char* sql) {
  checkThread();
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(m_db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) throwError(rc, QString::fromUtf8(sql).left(80));
  return Statement(m_db, stmt);
}

QString Database::queryText(const char* sql) {
  Statement st = prepare(sql);
  return st.step() ? st.columnText(0) : QString();
}

qint64 Database::queryInt(const char* sql) {
  Statement st = prepare(sql);
  return st.step() ? st.columnInt64(0) : 0;
}

int Database::userVersion() { return int(queryInt("PRAGMA user_version")); }

void Database::setUserVersion(int version) {
  // PRAGMA takes no bound parameters; the value is an int, so formatting it in is safe.
  exec(QStringLiteral("PRAGMA user_version = %1").arg(version).toUtf8().constData());
}

qint64 Database::lastInsertRowId() const { return sqlite3_last_insert_rowid(m_db); }
int Database::changes() const { return sqlite3_changes(m_db); }
QString Database::lastErrorMessage() const { return QString::fromUtf8(sqlite3_errmsg(m_db)); }

}  // namespace quire
