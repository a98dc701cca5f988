// SPDX-License-Identifier: GPL-3.0-or-later
// Schema migrations keyed on PRAGMA user_version. Step N takes the schema from version N-1 to N; every pending
// step runs in ONE transaction together with the new user_version, so a failed upgrade leaves the file as it
// was. Shipped steps are never edited: change the schema by appending a step. A database whose user_version
// is above schemaVersion() was written by a newer Quire and is refused (StorageError::Kind::TooNew).
// ref: Mozilla Places Database.cpp (InitSchema / MigrateV*Up); style.md rule 12.
#pragma once

#include "storage/database.h"

namespace quire {

struct Migration {
  int version;      ///< user_version after this step
  const char* sql;  ///< one or more statements
};

/// The schema version this build writes.
int schemaVersion();
/// Every step, in order; steps()[i].version == i + 1.
const Migration* migrationSteps(int* count);

/// Brings @p db up to schemaVersion(), or up to @p targetVersion (tests build older fixtures this way).
/// Returns the version found before migrating. Throws StorageError (TooNew, ReadOnly when an upgrade is needed
/// on a read-only connection, or sqlite's error; the transaction is then rolled back).
int migrate(Database& db, int targetVersion = -1);

}  // namespace quire
