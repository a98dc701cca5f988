// SPDX-License-Identifier: GPL-3.0-or-later
#include "store_helper.h"

#include "storage/conversation_store.h"

namespace quire::test {

std::shared_ptr<ConversationStore> openStore(const QString& path) {
  auto s = std::make_shared<ConversationStore>();
  if (!s->open(path)) return nullptr;
  return s;
}

QList<Message> activePath(ConversationStore& store, qint64 conversationId) { return store.activePath(conversationId); }

}  // namespace quire::test

namespace quire::test {
bool createConversation(ConversationStore& store, const QString& title) {
  return store.createConversation(title).has_value();
}
}  // namespace quire::test
