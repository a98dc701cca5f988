// SPDX-License-Identifier: GPL-3.0-or-later
// ChatMessageModel: the messages of a ChatController's active path as a list model (one row per message),
// updated in place as an answer streams (dataChanged on the last row only: views append, never rebuild).
#pragma once

#include <QAbstractListModel>

namespace quire {

class ChatController;

class ChatMessageModel : public QAbstractListModel {
  Q_OBJECT

 public:
  enum Role {
    IdRole = Qt::UserRole + 1,
    RoleRole,          ///< "user", "assistant", "system"
    StateRole,         ///< "complete", "streaming", "stopped", "error"
    SiblingIndexRole,  ///< which version this is (0-based)
    SiblingCountRole,  ///< how many versions there are
    AttachmentsRole,   ///< QStringList: one line per attachment ("page 3 of report.pdf · 1024×724")
    TokenCountRole,
    TimingsRole,       ///< QVariantMap
  };

  explicit ChatMessageModel(ChatController* controller, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QHash<int, QByteArray> roleNames() const override;

 private:
  ChatController* m_controller;
  int m_rows = 0;
};

}  // namespace quire
