// SPDX-License-Identifier: GPL-3.0-or-later
// ChatStartup: how the GUI's chat starts (app/main.cpp's wiring, here so that it can be tested): the history is
// opened (a corrupt file kept aside and a fresh one started; an unwritable one read-only), the ChatController is
// made on the inference worker, and attachTo() adds the chat to the main window and says what happened to the
// history in the chat panel's lasting notice, until the user dismisses it (a status-bar message would be cleared
// by the first document load). Declare it before the MainWindow: the window is destroyed first.
#pragma once

#include <QCoreApplication>
#include <QString>

#include <memory>

namespace quire {

class ChatController;
class ConversationStore;
class InferenceWorker;
class MainWindow;

class ChatStartup {
  Q_DECLARE_TR_FUNCTIONS(ChatStartup)

 public:
  /// Opens the history at @p dbPath (empty: ConversationStore::defaultPath()) and makes the controller on
  /// @p worker (may be null: no model). Nothing here blocks on the user.
  explicit ChatStartup(InferenceWorker* worker, const QString& dbPath = {});
  ~ChatStartup();
  ChatStartup(const ChatStartup&) = delete;
  ChatStartup& operator=(const ChatStartup&) = delete;

  ConversationStore& store() { return *m_store; }
  ChatController& controller() { return *m_controller; }
  bool storeOpen() const { return m_storeOpen; }
  /// What the user is told about the history: it was damaged and kept aside (where), or it could not be opened
  /// (why); empty when all is well. A read-only history is said by the chat panel itself for as long as it lasts.
  QString notice() const { return m_notice; }
  /// Adds the chat to @p window (MainWindow::setChatController) and shows notice() in its chat panel.
  void attachTo(MainWindow& window);

 private:
  std::unique_ptr<ConversationStore> m_store;
  std::unique_ptr<ChatController> m_controller;
  bool m_storeOpen = false;
  QString m_notice;
};

}  // namespace quire
