// SPDX-License-Identifier: GPL-3.0-or-later
#include "cli/headless.h"

#include <QCoreApplication>

#include "inference/model_folder.h"

namespace quire {

void setHeadlessApplicationIdentity() {
  QCoreApplication::setApplicationName(QStringLiteral("Quire"));
  QCoreApplication::setOrganizationName(QStringLiteral("Quire"));
  QCoreApplication::setApplicationVersion(QStringLiteral(QUIRE_VERSION));
}

QString resolveModelFolder(const QString& given, QString* error) {
  const QString dir = given.isEmpty() ? savedModelFolder() : given;
  const ModelFolderCheck check = checkModelFolder(dir);
  if (check.ok) return dir;
  *error = given.isEmpty() && dir.isEmpty() ? QStringLiteral("no model: give --model DIR. ") + modelDownloadHint()
                                            : check.message;
  return {};
}

}  // namespace quire
