// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationSidebar: the conversation list with full-text search (Ctrl+K focuses it), New, Rename (F2 or
// double-click), Delete (Del) and Undo delete. Activating a row opens that conversation in the ChatController
// (and says so with conversationOpened: the user opened it, so its documents may be restored).
// A row's context menu: Open, Rename, Export ▸ Markdown… / JSON… (with ConversationFileActions), Delete.
#pragma once

#include <QWidget>

class QLineEdit;
class QMenu;
class QListView;
class QPushButton;

namespace quire {

class ChatController;
class ConversationFileActions;
class ConversationListModel;

class ConversationSidebar : public QWidget {
  Q_OBJECT

 public:
  ConversationSidebar(ChatController* controller, QWidget* parent = nullptr);
  ConversationListModel* model() const { return m_model; }
  QLineEdit* searchField() const { return m_search; }
  QListView* list() const { return m_list; }
  void focusSearch();
  /// Enables Export in the context menu.
  void setFileActions(ConversationFileActions* actions) { m_fileActions = actions; }
  /// The context menu of @p row (the caller owns it; null for no row).
  QMenu* createContextMenu(int row);

 Q_SIGNALS:
  /// The user opened conversation @p id from the list (a click, Enter, the search's result, the context menu).
  void conversationOpened(qint64 id);

 private:
  void deleteCurrent();
  void open(qint64 id);

  ChatController* m_controller;
  ConversationListModel* m_model;
  QLineEdit* m_search;
  QListView* m_list;
  QPushButton* m_undo;
  ConversationFileActions* m_fileActions = nullptr;
};

}  // namespace quire
