// SPDX-License-Identifier: GPL-3.0-or-later
// Database: one sqlite3 connection (RAII over sqlite3_open_v2 / sqlite3_close_v2).
// Threading: one connection per thread. A Database is used only on the thread that opened it (asserted in
// debug builds); it is opened with SQLITE_OPEN_NOMUTEX, so sharing it across threads is undefined behaviour.
// Another thread opens its own Database on the same file; WAL lets readers and one writer run together.
// Pragmas on every read-write connection: journal_mode=WAL, foreign_keys=ON, synchronous=NORMAL (in WAL a
// process crash loses nothing committed; only power loss may roll back the last commits), busy_timeout.
// ref: Mozilla Places mozStorageConnection.cpp; https://sqlite.org/c3ref/open.html
#pragma once

#include "storage/statement.h"
#include "storage/storage_error.h"

#include <QString>

#include <thread>

struct sqlite3;

namespace quire {

class Database {
 public:
  enum class OpenMode {
    ReadWriteCreate,  ///< create the file when missing
    ReadWrite,        ///< the file must exist
    ReadOnly,         ///< SQLITE_OPEN_READONLY: every write fails with StorageError::Kind::ReadOnly
  };

  Database() = default;
  ~Database();
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  /// Opens @p path (":memory:" works) and sets the pragmas. Throws StorageError.
  static Database open(const QString& path, OpenMode mode = OpenMode::ReadWriteCreate, int busyTimeoutMs = 5000);

  bool isOpen() const { return m_db != nullptr; }
  bool isReadOnly() const { return m_readOnly; }
  QString path() const { return m_path; }
  void close();

  /// Runs one or more SQL statements without results. Throws StorageError.
  void exec(const char* sql);
  /// Prepares one statement. Throws StorageError.
  Statement prepare(const char* sql);
  /// The first column of the first row of @p sql as text (for pragmas such as quick_check).
  QString queryText(const char* sql);
  qint64 queryInt(const char* sql);

  int userVersion();
  /// Sets PRAGMA user_version; inside a transaction it commits or rolls back with it.
  void setUserVersion(int version);
  qint64 lastInsertRowId() const;
  int changes() const;
  /// sqlite's message for the last error on this connection.
  QString lastErrorMessage() const;
  /// Throws a StorageError for @p rc (not OK/ROW/DONE) with this connection's message.
  [[noreturn]] void throwError(int rc, const QString& context) const;

  /// Asserts (debug builds) that the caller is on the thread that opened this connection.
  void checkThread() const;
  sqlite3* handle() const { return m_db; }

 private:
  sqlite3* m_db = nullptr;
  QString m_path;
  bool m_readOnly = false;
  std::thread::id m_thread;
};

}  // namespace quire
