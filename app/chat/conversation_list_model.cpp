// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationListModel: see conversation_list_model.h.
#include "chat/conversation_list_model.h"

#include "storage/conversation_store.h"

#include <QSet>

namespace quire {

ConversationListModel::ConversationListModel(ConversationStore* store, QObject* parent)
    : QAbstractListModel(parent), m_store(store) {
  refresh();
}

int ConversationListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : int(m_rows.size());
}

QVariant ConversationListModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
  const Conversation& c = m_rows[index.row()];
  switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole:
      return c.title;
    case Qt::ToolTipRole:
      return m_snippets.value(c.id, c.title);
    case IdRole:
      return c.id;
    case UpdatedRole:
      return c.updated;
    case PinnedRole:
      return c.pinned;
    case SnippetRole:
      return m_snippets.value(c.id);
    default:
      return {};
  }
}

bool ConversationListModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (role != Qt::EditRole || !checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return false;
  const QString title = value.toString().simplified();
  if (title.isEmpty() || !m_store->renameConversation(m_rows[index.row()].id, title)) return false;
  m_rows[index.row()].title = title;
  emit dataChanged(index, index);
  return true;
}

Qt::ItemFlags ConversationListModel::flags(const QModelIndex& index) const {
  Qt::ItemFlags f = QAbstractListModel::flags(index);
  if (index.isValid()) f |= Qt::ItemIsEditable;
  return f;
}

QHash<int, QByteArray> ConversationListModel::roleNames() const {
  auto r = QAbstractListModel::roleNames();
  r[IdRole] = "id";
  r[UpdatedRole] = "updated";
  r[PinnedRole] = "pinned";
  r[SnippetRole] = "snippet";
  return r;
}

void ConversationListModel::refresh() {
  beginResetModel();
  m_rows.clear();
  m_snippets.clear();
  if (m_store && m_store->isOpen()) {
    const QList<Conversation> all = m_store->conversations();
    if (m_filter.trimmed().isEmpty()) {
      m_rows = all;
    } else {
      // Hits come best first; a conversation is listed once, with its best snippet; titles match too.
      QList<qint64> order;
      for (const ConversationHit& h : m_store->search(m_filter)) {
        if (m_snippets.contains(h.conversationId)) continue;
        m_snippets.insert(h.conversationId, h.snippet);
        order << h.conversationId;
      }
      for (const Conversation& c : all)
        if (!m_snippets.contains(c.id) && c.title.contains(m_filter.trimmed(), Qt::CaseInsensitive)) order << c.id;
      for (qint64 id : order)
        for (const Conversation& c : all)
          if (c.id == id) m_rows << c;
    }
  }
  endResetModel();
}

void ConversationListModel::setFilter(const QString& query) {
  if (query == m_filter) return;
  m_filter = query;
  refresh();
}

int ConversationListModel::rowOf(qint64 id) const {
  for (int i = 0; i < m_rows.size(); ++i)
    if (m_rows[i].id == id) return i;
  return -1;
}

bool ConversationListModel::remove(int row) {
  if (row < 0 || row >= m_rows.size()) return false;
  const qint64 id = m_rows[row].id;
  if (!m_store->deleteConversation(id)) return false;
  beginRemoveRows({}, row, row);
  m_rows.removeAt(row);
  m_snippets.remove(id);
  endRemoveRows();
  m_deleted << id;
  emit undoAvailableChanged(true);
  return true;
}

bool ConversationListModel::undoDelete() {
  if (m_deleted.isEmpty()) return false;
  const qint64 id = m_deleted.takeLast();
  if (!m_store->restoreConversation(id)) return false;
  refresh();
  emit undoAvailableChanged(!m_deleted.isEmpty());
  return true;
}

}  // namespace quire
