// SPDX-License-Identifier: GPL-3.0-or-later
#include "chat/attachment.h"

#include <QCoreApplication>
#include <QFileInfo>

namespace quire {

QString attachmentKindToString(AttachmentKind kind) {
  switch (kind) {
    case AttachmentKind::Page: return QStringLiteral("page");
    case AttachmentKind::Region: return QStringLiteral("region");
    case AttachmentKind::Image: return QStringLiteral("image");
  }
  return {};
}

bool attachmentKindFromString(const QString& text, AttachmentKind* kind) {
  for (AttachmentKind k : {AttachmentKind::Page, AttachmentKind::Region, AttachmentKind::Image}) {
    if (attachmentKindToString(k) == text) {
      *kind = k;
      return true;
    }
  }
  return false;
}

QString attachmentTextPart(const Attachment& a) {
  if (a.pageText.isEmpty() || a.kind == AttachmentKind::Image) return {};
  const QString name = QFileInfo(a.documentPath).fileName();
  const QString heading =
      a.kind == AttachmentKind::Page
          ? QCoreApplication::translate("quire::Attachment", "Text layer of page %1 of %2:").arg(a.page + 1).arg(name)
          : QCoreApplication::translate("quire::Attachment", "Text layer of the region on page %1 of %2:")
                .arg(a.page + 1)
                .arg(name);
  return heading + QStringLiteral("\n") + a.pageText;
}

}  // namespace quire
