// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationListModel: the store's conversations (pinned first, most recent first) as a list model.
// Rename through setData (EditRole); remove() is a soft delete that undoDelete() reverses; setFilter() lists
// only the conversations whose messages or titles match (the store's FTS5 search), with the best snippet.
#pragma once

#include "chat/conversation.h"

#include <QAbstractListModel>
#include <QHash>
#include <QList>

namespace quire {

class ConversationStore;

class ConversationListModel : public QAbstractListModel {
  Q_OBJECT

 public:
  enum Role { IdRole = Qt::UserRole + 1, UpdatedRole, PinnedRole, SnippetRole };

  explicit ConversationListModel(ConversationStore* store, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  QHash<int, QByteArray> roleNames() const override;

  /// Reloads from the store (keeps the filter).
  void refresh();
  /// Full-text filter; empty shows every conversation.
  void setFilter(const QString& query);
  QString filter() const { return m_filter; }
  qint64 idAt(int row) const { return row >= 0 && row < m_rows.size() ? m_rows[row].id : 0; }
  int rowOf(qint64 id) const;
  /// Soft-deletes the conversation at @p row; undoDelete() brings back the most recently removed one.
  bool remove(int row);
  bool canUndoDelete() const { return !m_deleted.isEmpty(); }
  bool undoDelete();

 Q_SIGNALS:
  void undoAvailableChanged(bool available);

 private:
  ConversationStore* m_store;
  QString m_filter;
  QList<Conversation> m_rows;
  QHash<qint64, QString> m_snippets;
  QList<qint64> m_deleted;
};

}  // namespace quire
