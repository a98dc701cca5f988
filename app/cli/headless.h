// SPDX-License-Identifier: GPL-3.0-or-later
// What the headless commands (`quire ask`, `quire serve`) share before they start work: the application's
// identity on their QCoreApplication, and the model folder to load (--model DIR, else the one saved in
// Settings ▸ Model), checked, with the message to print when it cannot be used.
#pragma once

#include <QString>

namespace quire {

/// Name, organisation and version of the running QCoreApplication (QSettings and QStandardPaths use them).
void setHeadlessApplicationIdentity();

/// `given` (the --model option) or the saved model folder, validated. Empty with *error set when there is none
/// or it is unusable (the error then says what is missing or where to get the model).
QString resolveModelFolder(const QString& given, QString* error);

}  // namespace quire
