// SPDX-License-Identifier: GPL-3.0-or-later
// The schema, as a list of numbered steps. NEVER edit a step once it has shipped; append a new one.
// Enumerations are stored as text (role, state, kind) and times as integer milliseconds since the Unix epoch
// (UTC), so nothing on disk depends on a C++ enum's numbering.
#include "storage/migrations.h"
#include "storage/transaction.h"

#include <iterator>

namespace quire {

namespace {

// v1: conversations, the message tree, attachments, content-addressed images, and FTS5 over message text.
// messages_fts is an external-content table kept in sync by triggers (ref: https://sqlite.org/fts5.html §4.4.3).
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE conversations (
  id            INTEGER PRIMARY KEY,
  title         TEXT    NOT NULL DEFAULT '',
  created       INTEGER NOT NULL,
  updated       INTEGER NOT NULL,
  system_prompt TEXT    NOT NULL DEFAULT '',
  sampling      TEXT    NOT NULL DEFAULT '{}',
  model         TEXT    NOT NULL DEFAULT '',
  deleted       INTEGER,
  active_leaf   INTEGER REFERENCES messages(id) ON DELETE SET NULL
);
CREATE TABLE messages (
  id              INTEGER PRIMARY KEY,
  conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  parent_id       INTEGER REFERENCES messages(id) ON DELETE CASCADE,
  role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
  text            TEXT    NOT NULL DEFAULT '',
  token_ids       BLOB,
  created         INTEGER NOT NULL,
  model           TEXT    NOT NULL DEFAULT '',
  sampling        TEXT    NOT NULL DEFAULT '{}',
  timings         TEXT    NOT NULL DEFAULT '{}',
  state           TEXT    NOT NULL DEFAULT 'complete'
                  CHECK (state IN ('complete', 'streaming', 'stopped', 'error'))
);
CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id);
CREATE TABLE images (
  hash TEXT PRIMARY KEY,
  data BLOB NOT NULL,
  mime TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE attachments (
  id            INTEGER PRIMARY KEY,
  message_id    INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  position      INTEGER NOT NULL,
  kind          TEXT    NOT NULL CHECK (kind IN ('page', 'region', 'image')),
  document_path TEXT    NOT NULL DEFAULT '',
  content_hash  TEXT    NOT NULL DEFAULT '',
  page          INTEGER NOT NULL DEFAULT 0,
  region_x      REAL, region_y REAL, region_w REAL, region_h REAL,
  width         INTEGER NOT NULL DEFAULT 0,
  height        INTEGER NOT NULL DEFAULT 0,
  image_hash    TEXT REFERENCES images(hash)
);
CREATE INDEX attachments_by_message ON attachments(message_id, position);
CREATE INDEX attachments_by_image ON attachments(image_hash);
CREATE VIRTUAL TABLE messages_fts USING fts5(
  text, content = 'messages', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
  INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
  INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
)sql";

// v2: pinned conversations (listed first) and an index for the list's order.
constexpr char kSchemaV2[] = R"sql(
ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
CREATE INDEX conversations_by_updated ON conversations(deleted, pinned DESC, updated DESC);
)sql";

// v3: the text layer of a page/region attachment, sent along as text when the user asked for it.
constexpr char kSchemaV3[] = R"sql(
ALTER TABLE attachments ADD COLUMN page_text TEXT NOT NULL DEFAULT '';
)sql";

constexpr Migration kSteps[] = {
    {1, kSchemaV1},
    {2, kSchemaV2},
    {3, kSchemaV3},
};

}  // namespace

int schemaVersion() { return int(std::size(kSteps)); }

const Migration* migrationSteps(int* count) {
  *count = int(std::size(kSteps));
  return kSteps;
}

int migrate(Database& db, int targetVersion) {
  if (targetVersion < 0) targetVersion = schemaVersion();
  Q_ASSERT(targetVersion <= schemaVersion());
  const int found = db.userVersion();
  if (found > schemaVersion())
    throw StorageError(StorageError::Kind::TooNew,
                       StorageError::tr("%1 has schema version %2; this version of Quire reads up to version %3")
                           .arg(db.path())
                           .arg(found)
                           .arg(schemaVersion()));
  if (found >= targetVersion) return found;
  if (db.isReadOnly())
    throw StorageError(StorageError::Kind::ReadOnly,
                       StorageError::tr("%1 needs an upgrade from schema version %2 but is opened read-only")
                           .arg(db.path())
                           .arg(found));
  Transaction tx(db);
  // Re-read inside the write lock: another process may have migrated between the check and BEGIN IMMEDIATE.
  const int locked = db.userVersion();
  if (locked > schemaVersion())
    throw StorageError(StorageError::Kind::TooNew, StorageError::tr("schema version %1 is newer than %2")
                                                       .arg(locked)
                                                       .arg(schemaVersion()));
  for (const Migration& step : kSteps) {
    if (step.version <= locked || step.version > targetVersion) continue;
    db.exec(step.sql);
  }
  db.setUserVersion(targetVersion);
  tx.commit();
  return found;
}

}  // namespace quire
