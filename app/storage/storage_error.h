// SPDX-License-Identifier: GPL-3.0-or-later
// StorageError: why a database operation failed — sqlite's result code, extended code and message, sorted into
// the kinds the UI treats differently (disk full, read-only, corrupt, newer than the app). Thrown by Database,
// Statement and Transaction; ConversationStore catches it at its API and keeps it as lastError().
#pragma once

#include <QCoreApplication>
#include <QString>

#include <exception>
#include <string>

namespace quire {

class StorageError : public std::exception {
  Q_DECLARE_TR_FUNCTIONS(StorageError)

 public:
  enum class Kind {
    None,
    Full,      ///< SQLITE_FULL: disk (or max_page_count) full; nothing committed is lost
    ReadOnly,  ///< SQLITE_READONLY: the database or its folder is not writable
    Corrupt,   ///< SQLITE_CORRUPT / SQLITE_NOTADB, or quick_check failed
    TooNew,    ///< the schema is newer than this version of the app
    Busy,      ///< SQLITE_BUSY / SQLITE_LOCKED after busy_timeout
    CantOpen,  ///< SQLITE_CANTOPEN
    Misuse,    ///< a bad argument (unknown id, malformed import) — not sqlite's fault
    Other,
  };

  StorageError() = default;
  /// From a sqlite result code (primary or extended) and sqlite's own message; @p context says what was done.
  StorageError(int sqliteCode, const QString& sqliteMessage, const QString& context = {});
  StorageError(Kind kind, const QString& message);

  Kind kind() const { return m_kind; }
  int code() const { return m_code; }                  ///< primary result code (0 when not from sqlite)
  int extendedCode() const { return m_extendedCode; }  ///< extended result code
  QString sqliteMessage() const { return m_sqliteMessage; }
  QString context() const { return m_context; }
  bool isError() const { return m_kind != Kind::None; }
  /// One translated sentence a person can act on, followed by sqlite's message.
  QString message() const;
  const char* what() const noexcept override;

  static Kind kindForCode(int sqliteCode);

 private:
  Kind m_kind = Kind::None;
  int m_code = 0;
  int m_extendedCode = 0;
  QString m_sqliteMessage;
  QString m_context;
  mutable std::string m_what;
};

}  // namespace quire
