// SPDX-License-Identifier: GPL-3.0-or-later
// Test helper shared by the chat window tests (tst_chat_references, tst_chat_restore): a store, a chat controller
// without a model and a shown main window with the chat, as the app puts them together.
#pragma once

#include "chat/chat_controller.h"
#include "main_window.h"
#include "storage/conversation_store.h"

#include <QString>
#include <QtTest>

#include <memory>

namespace quire::test {

struct ChatWindow {
  ConversationStore store;
  std::unique_ptr<ChatController> controller;
  std::unique_ptr<MainWindow> window;
};

/// The store opened at @p db, a controller without a model, and the main window shown (1300 × 800, error dialogs
/// off) with that controller's chat; nullptr when the store does not open or the window is not exposed.
inline std::unique_ptr<ChatWindow> makeChatWindow(const QString& db) {
  auto w = std::make_unique<ChatWindow>();
  if (!w->store.open(db)) return nullptr;
  w->controller = std::make_unique<ChatController>(&w->store, nullptr);
  w->window = std::make_unique<MainWindow>();
  w->window->setErrorDialogsEnabled(false);
  w->window->setChatController(w->controller.get());
  w->window->resize(1300, 800);
  w->window->show();
  if (!QTest::qWaitForWindowExposed(w->window.get())) return nullptr;
  return w;
}

}  // namespace quire::test
