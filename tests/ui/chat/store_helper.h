// SPDX-License-Identifier: GPL-3.0-or-later
// The store behind a small seam: quire::SearchHit is declared both in storage/conversation_store.h and in
// documents/text_search.h (a clash to be resolved by their owners), so a test that sees the viewer's headers
// cannot include the store's header in the same file.
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
