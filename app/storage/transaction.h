// SPDX-License-Identifier: GPL-3.0-or-later
// Transaction: BEGIN IMMEDIATE on construction (takes the write lock up front, so a busy database fails here
// rather than half-way), COMMIT on commit(), ROLLBACK in the destructor when not committed (errors swallowed:
// a destructor never throws). Not nestable.
#pragma once

#include "storage/database.h"

namespace quire {

class Transaction {
 public:
  explicit Transaction(Database& db) : m_db(db) { m_db.exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!m_done) {
      try {
        m_db.exec("ROLLBACK");
      } catch (const StorageError&) {
        // After SQLITE_FULL and some I/O errors sqlite has already rolled back; nothing left to undo.
      }
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  /// Commits; throws StorageError (the destructor then rolls back).
  void commit() {
    m_db.exec("COMMIT");
    m_done = true;
  }
  void rollback() {
    m_done = true;
    m_db.exec("ROLLBACK");
  }

 private:
  Database& m_db;
  bool m_done = false;
};

}  // namespace quire
