// SPDX-License-Identifier: GPL-3.0-or-later
// The store behind a small seam (kept from when quire::SearchHit was declared in both storage and documents —
// now ConversationHit): tests that see the viewer's headers reach the store through these functions.
#pragma once

#include "chat/message.h"

#include <QList>
#include <QString>

#include <memory>

namespace quire {
class ConversationStore;
}

namespace quire::test {

std::shared_ptr<ConversationStore> openStore(const QString& path);
QList<Message> activePath(ConversationStore& store, qint64 conversationId);

}  // namespace quire::test

namespace quire::test {
/// A new, empty conversation titled @p title; false on failure.
bool createConversation(ConversationStore& store, const QString& title);
}  // namespace quire::test
