// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationSidebar: see conversation_sidebar.h.
#include "chat/conversation_sidebar.h"

#include "chat/chat_controller.h"
#include "chat/conversation_file_actions.h"
#include "chat/conversation_list_model.h"

#include <QAction>
#include <QHBoxLayout>
#include <QLineEdit>
#include <QListView>
#include <QMenu>
#include <QPushButton>
#include <QVBoxLayout>

namespace quire {

ConversationSidebar::ConversationSidebar(ChatController* controller, QWidget* parent)
    : QWidget(parent), m_controller(controller), m_model(new ConversationListModel(controller->store(), this)) {
  setAccessibleName(tr("Conversations"));
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  m_search = new QLineEdit(this);
  m_search->setPlaceholderText(tr("Search all conversations (Ctrl+K)"));
  m_search->setAccessibleName(tr("Search conversations"));
  m_search->setClearButtonEnabled(true);
  layout->addWidget(m_search);
  m_list = new QListView(this);
  m_list->setModel(m_model);
  m_list->setAccessibleName(tr("Conversation list"));
  m_list->setEditTriggers(QAbstractItemView::EditKeyPressed | QAbstractItemView::SelectedClicked);
  layout->addWidget(m_list, 1);
  auto* row = new QHBoxLayout;
  auto* add = new QPushButton(tr("New"), this);
  add->setAccessibleName(tr("New conversation"));
  auto* del = new QPushButton(tr("Delete"), this);
  del->setAccessibleName(tr("Delete the selected conversation"));
  m_undo = new QPushButton(tr("Undo delete"), this);
  m_undo->setAccessibleName(tr("Undo the last delete"));
  m_undo->setEnabled(false);
  row->addWidget(add);
  row->addWidget(del);
  row->addWidget(m_undo);
  layout->addLayout(row);

  auto* delAction = new QAction(tr("Delete conversation"), m_list);
  delAction->setShortcut(QKeySequence::Delete);
  delAction->setShortcutContext(Qt::WidgetShortcut);
  m_list->addAction(delAction);

  connect(m_search, &QLineEdit::textChanged, m_model, &ConversationListModel::setFilter);
  connect(m_list, &QListView::activated, this, [this](const QModelIndex& i) {
    open(m_model->idAt(i.row()));
  });
  connect(m_list, &QListView::clicked, this, [this](const QModelIndex& i) {
    if (m_model->idAt(i.row()) != m_controller->conversationId()) open(m_model->idAt(i.row()));
  });
  connect(add, &QPushButton::clicked, m_controller, &ChatController::newConversation);
  connect(del, &QPushButton::clicked, this, &ConversationSidebar::deleteCurrent);
  connect(delAction, &QAction::triggered, this, &ConversationSidebar::deleteCurrent);
  connect(m_undo, &QPushButton::clicked, m_model, &ConversationListModel::undoDelete);
  connect(m_model, &ConversationListModel::undoAvailableChanged, m_undo, &QPushButton::setEnabled);
  connect(m_controller, &ChatController::conversationsChanged, m_model, &ConversationListModel::refresh);
  m_list->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(m_list, &QListView::customContextMenuRequested, this, [this](const QPoint& pos) {
    const QModelIndex index = m_list->indexAt(pos);
    if (!index.isValid()) return;
    m_list->setCurrentIndex(index);
    QMenu* menu = createContextMenu(index.row());
    menu->setAttribute(Qt::WA_DeleteOnClose);
    menu->popup(m_list->viewport()->mapToGlobal(pos));
  });
}

QMenu* ConversationSidebar::createContextMenu(int row) {
  const qint64 id = m_model->idAt(row);
  if (!id) return nullptr;
  auto* menu = new QMenu(this);
  menu->setAccessibleName(tr("Conversation actions"));
  menu->addAction(tr("&Open"), this, [this, id] { open(id); });
  menu->addAction(tr("&Rename"), this, [this, id] {
    if (const int r = m_model->rowOf(id); r >= 0) m_list->edit(m_model->index(r));
  });
  if (m_fileActions) {
    QMenu* exportMenu = menu->addMenu(tr("&Export Conversation"));
    QAction* md = exportMenu->addAction(tr("&Markdown…"), this, [this, id] {
      m_fileActions->exportConversation(id, ConversationFileActions::Format::Markdown);
    });
    md->setObjectName(QStringLiteral("exportMarkdown"));
    QAction* json = exportMenu->addAction(tr("&JSON…"), this, [this, id] {
      m_fileActions->exportConversation(id, ConversationFileActions::Format::Json);
    });
    json->setObjectName(QStringLiteral("exportJson"));
  }
  menu->addSeparator();
  menu->addAction(tr("&Delete"), this, [this, id] {
    if (const int r = m_model->rowOf(id); r >= 0) {
      m_list->setCurrentIndex(m_model->index(r));
      deleteCurrent();
    }
  });
  return menu;
}

void ConversationSidebar::open(qint64 id) {
  if (id && m_controller->openConversation(id)) emit conversationOpened(id);
}

void ConversationSidebar::focusSearch() {
  m_search->setFocus(Qt::ShortcutFocusReason);
  m_search->selectAll();
}

void ConversationSidebar::deleteCurrent() {
  const int row = m_list->currentIndex().row();
  const qint64 id = m_model->idAt(row);
  if (!id) return;
  if (id == m_controller->conversationId()) m_controller->newConversation();
  m_model->remove(row);
}

}  // namespace quire
