// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationSidebar: the conversation list with full-text search (Ctrl+K focuses it), New, Rename (F2 or
// double-click), Delete (Del) and Undo delete. Activating a row opens that conversation in the ChatController.
#pragma once

#include <QWidget>

class QLineEdit;
class QListView;
class QPushButton;

namespace quire {

class ChatController;
class ConversationListModel;

class ConversationSidebar : public QWidget {
  Q_OBJECT

 public:
  ConversationSidebar(ChatController* controller, QWidget* parent = nullptr);
  ConversationListModel* model() const { return m_model; }
  QLineEdit* searchField() const { return m_search; }
  QListView* list() const { return m_list; }
  void focusSearch();

 private:
  void deleteCurrent();

  ChatController* m_controller;
  ConversationListModel* m_model;
  QLineEdit* m_search;
  QListView* m_list;
  QPushButton* m_undo;
};

}  // namespace quire
