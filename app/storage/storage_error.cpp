// SPDX-License-Identifier: GPL-3.0-or-later
#include "storage/storage_error.h"

#include <sqlite3.h>

namespace quire {

StorageError::StorageError(int sqliteCode, const QString& sqliteMessage, const QString& context)
    : m_kind(kindForCode(sqliteCode)),
      m_code(sqliteCode & 0xff),
      m_extendedCode(sqliteCode),
      m_sqliteMessage(sqliteMessage),
      m_context(context) {}

StorageError::StorageError(Kind kind, const QString& message) : m_kind(kind), m_sqliteMessage(message) {}

StorageError::Kind StorageError::kindForCode(int sqliteCode) {
  switch (sqliteCode & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return Kind::None;
    case SQLITE_FULL: return Kind::Full;
    case SQLITE_READONLY: return Kind::ReadOnly;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return Kind::Corrupt;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Kind::Busy;
    case SQLITE_CANTOPEN: return Kind::CantOpen;
    case SQLITE_MISUSE:
    case SQLITE_RANGE: return Kind::Misuse;
    default: return Kind::Other;
  }
}

QString StorageError::message() const {
  QString text;
  switch (m_kind) {
    case Kind::None: return {};
    case Kind::Full: text = tr("The disk is full: the conversation history could not be saved. Free some space; "
                               "everything saved before is kept."); break;
    case Kind::ReadOnly: text = tr("The conversation history is read-only: new messages are not saved."); break;
    case Kind::Corrupt: text = tr("The conversation history file is damaged."); break;
    case Kind::TooNew: text = tr("The conversation history was written by a newer version of Quire; update Quire "
                                 "to open it."); break;
    case Kind::Busy: text = tr("The conversation history is locked by another program."); break;
    case Kind::CantOpen: text = tr("The conversation history file cannot be opened."); break;
    case Kind::Misuse: text = tr("The conversation history could not do this."); break;
    case Kind::Other: text = tr("The conversation history could not be read or written."); break;
  }
  QString detail = m_context.isEmpty() ? m_sqliteMessage : m_context + QStringLiteral(": ") + m_sqliteMessage;
  if (!detail.isEmpty()) text += QStringLiteral(" (") + detail + QLatin1Char(')');
  return text;
}

const char* StorageError::what() const noexcept {
  m_what = message().toStdString();
  return m_what.c_str();
}

}  // namespace quire
