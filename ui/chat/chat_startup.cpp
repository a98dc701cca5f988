// SPDX-License-Identifier: GPL-3.0-or-later
// ChatStartup: see chat_startup.h.
#include "chat/chat_startup.h"

#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "main_window.h"
#include "storage/conversation_store.h"


namespace quire {

ChatStartup::ChatStartup(InferenceWorker* worker, const QString& dbPath)
    : m_store(std::make_unique<ConversationStore>()) {
  const QString path = dbPath.isEmpty() ? ConversationStore::defaultPath() : dbPath;
  m_storeOpen = m_store->open(path);
  if (!m_storeOpen)
    m_notice = tr("The conversation history (%1) could not be opened: %2 Questions cannot be asked until it "
                  "can be saved.").arg(path, m_store->lastError().message());
  else if (!m_store->movedAsideMessage().isEmpty())
    m_notice = m_store->movedAsideMessage();
  m_controller = std::make_unique<ChatController>(m_store.get(), worker);
}

ChatStartup::~ChatStartup() {
  m_controller.reset();  // before the store it uses
}

void ChatStartup::attachTo(MainWindow& window) {
  window.setChatController(m_controller.get());
  if (ChatPanel* panel = window.chatPanel(); panel && !m_notice.isEmpty()) panel->showNotice(m_notice);
}

}  // namespace quire
