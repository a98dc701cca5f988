// SPDX-License-Identifier: GPL-3.0-or-later
#include "storage/statement.h"
#include "storage/storage_error.h"

#include <QtEndian>
#include <sqlite3.h>

#include <utility>

namespace quire {

Statement::~Statement() {
  if (m_stmt) sqlite3_finalize(m_stmt);
}

Statement::Statement(Statement&& other) noexcept
    : m_db(std::exchange(other.m_db, nullptr)), m_stmt(std::exchange(other.m_stmt, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (m_stmt) sqlite3_finalize(m_stmt);
    m_db = std::exchange(other.m_db, nullptr);
    m_stmt = std::exchange(other.m_stmt, nullptr);
  }
  return *this;
}

void Statement::check(int rc, const char* what) const {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
  const char* sql = m_stmt ? sqlite3_sql(m_stmt) : nullptr;
  throw StorageError(rc, QString::fromUtf8(sqlite3_errmsg(m_db)),
                     QString::fromLatin1(what) + QStringLiteral(" ") + QString::fromUtf8(sql ? sql : "").left(80));
}

Statement& Statement::bind(int index, qint64 value) {
  check(sqlite3_bind_int64(m_stmt, index, value), "bind");
  return *this;
}

Statement& Statement::bind(int index, double value) {
  check(sqlite3_bind_double(m_stmt, index, value), "bind");
  return *this;
}

Statement& Statement::bind(int index, const QString& value) {
  if (value.isNull()) return bind(index, nullptr);
  const QByteArray utf8 = value.toUtf8();
  check(sqlite3_bind_text64(m_stmt, index, utf8.constData(), sqlite3_uint64(utf8.size()), SQLITE_TRANSIENT,
                            SQLITE_UTF8), "bind");
  return *this;
}

Statement& Statement::bind(int index, const QByteArray& blob) {
  if (blob.isNull()) return bind(index, nullptr);
  check(sqlite3_bind_blob64(m_stmt, index, blob.constData(), sqlite3_uint64(blob.size()), SQLITE_TRANSIENT), "bind");
  return *this;
}

Statement& Statement::bind(int index, std::nullptr_t) {
  check(sqlite3_bind_null(m_stmt, index), "bind");
  return *this;
}

int Statement::indexOf(const char* name) const {
  const int index = sqlite3_bind_parameter_index(m_stmt, name);
  if (index == 0)
    throw StorageError(StorageError::Kind::Misuse, QStringLiteral("no parameter named %1").arg(QLatin1String(name)));
  return index;
}

bool Statement::step() {
  const int rc = sqlite3_step(m_stmt);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // Leave the statement reusable after an error (step() already reset its VM state in the v2 interface).
  const QString msg = QString::fromUtf8(sqlite3_errmsg(m_db));
  const char* sql = sqlite3_sql(m_stmt);
  sqlite3_reset(m_stmt);
  throw StorageError(rc, msg, QStringLiteral("step ") + QString::fromUtf8(sql ? sql : "").left(80));
}

void Statement::run() {
  while (step()) {
  }
  sqlite3_reset(m_stmt);
}

void Statement::reset() { sqlite3_reset(m_stmt); }
void Statement::clearBindings() { sqlite3_clear_bindings(m_stmt); }

bool Statement::isNull(int column) const { return sqlite3_column_type(m_stmt, column) == SQLITE_NULL; }
qint64 Statement::columnInt64(int column) const { return sqlite3_column_int64(m_stmt, column); }
double Statement::columnDouble(int column) const { return sqlite3_column_double(m_stmt, column); }
int Statement::columnCount() const { return sqlite3_column_count(m_stmt); }

QString Statement::columnText(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(m_stmt, column));
  if (!text) return {};
  return QString::fromUtf8(text, sqlite3_column_bytes(m_stmt, column));
}

QByteArray Statement::columnBlob(int column) const {
  const void* data = sqlite3_column_blob(m_stmt, column);
  const int size = sqlite3_column_bytes(m_stmt, column);
  if (!data) return {};
  return QByteArray(static_cast<const char*>(data), size);
}

QByteArray encodeTokenIds(std::span<const std::int32_t> ids) {
  QByteArray blob(qsizetype(ids.size() * 4), Qt::Uninitialized);
  for (std::size_t i = 0; i < ids.size(); ++i) qToLittleEndian<qint32>(ids[i], blob.data() + i * 4);
  return blob;
}

std::vector<std::int32_t> decodeTokenIds(const QByteArray& blob) {
  std::vector<std::int32_t> ids(std::size_t(blob.size() / 4));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = qFromLittleEndian<qint32>(blob.constData() + i * 4);
  return ids;
}

}  // namespace quire
