// SPDX-License-Identifier: GPL-3.0-or-later
#include "chat/attachment.h"

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

}  // namespace quire
