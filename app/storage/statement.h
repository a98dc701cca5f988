// SPDX-License-Identifier: GPL-3.0-or-later
// Statement: one prepared sqlite3 statement (RAII over sqlite3_prepare_v3 / sqlite3_finalize).
// Binds by 1-based index or by name (":name"); columns are 0-based. step() returns true while there is a row;
// errors throw StorageError with sqlite's code and message. Same thread rule as its Database.
#pragma once

#include <QByteArray>
#include <QString>

#include <cstdint>
#include <span>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace quire {

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, qint64 value);
  Statement& bind(int index, int value) { return bind(index, qint64(value)); }
  Statement& bind(int index, double value);
  Statement& bind(int index, const QString& value);  ///< a null QString binds NULL
  Statement& bind(int index, const char* value) { return bind(index, QString::fromUtf8(value)); }
  Statement& bind(int index, const QByteArray& blob);  ///< a null QByteArray binds NULL
  Statement& bind(int index, std::nullptr_t);
  /// Binds by parameter name (":name", "@name" or "$name"); throws if the statement has no such parameter.
  template <typename T>
  Statement& bind(const char* name, const T& value) {
    return bind(indexOf(name), value);
  }
  int indexOf(const char* name) const;

  /// Runs one step: true when a row is available, false when done. Throws StorageError.
  bool step();
  /// Steps to completion, ignoring rows (INSERT/UPDATE/DELETE).
  void run();
  /// Rewinds to run again; bindings are kept (clearBindings() drops them).
  void reset();
  void clearBindings();

  bool isNull(int column) const;
  qint64 columnInt64(int column) const;
  int columnInt(int column) const { return int(columnInt64(column)); }
  double columnDouble(int column) const;
  QString columnText(int column) const;
  QByteArray columnBlob(int column) const;
  int columnCount() const;

  sqlite3_stmt* handle() const { return m_stmt; }

 private:
  void check(int rc, const char* what) const;
  sqlite3* m_db = nullptr;
  sqlite3_stmt* m_stmt = nullptr;
};

/// Token ids as stored on disk: int32 little-endian, 4 bytes each.
QByteArray encodeTokenIds(std::span<const std::int32_t> ids);
/// Inverse of encodeTokenIds(); a trailing partial value is ignored.
std::vector<std::int32_t> decodeTokenIds(const QByteArray& blob);

}  // namespace quire
