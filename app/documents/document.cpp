// SPDX-License-Identifier: GPL-3.0-or-later
// Document: shared, non-virtual parts.
#include "documents/document.h"

#include <QCoreApplication>
#include <QFileInfo>

namespace quire {

QString Document::title() const {
  if (m_path.isEmpty()) return QCoreApplication::translate("quire::Document", "Pasted image");
  return QFileInfo(m_path).fileName();
}

}  // namespace quire
