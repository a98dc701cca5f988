// SPDX-License-Identifier: GPL-3.0-or-later
// ChatMessageModel: see chat_message_model.h.
#include "chat/chat_message_model.h"

#include "chat/chat_controller.h"

#include <QFileInfo>

namespace quire {

ChatMessageModel::ChatMessageModel(ChatController* controller, QObject* parent)
    : QAbstractListModel(parent), m_controller(controller) {
  m_rows = int(controller->messages().size());
  connect(controller, &ChatController::messagesReset, this, [this] {
    beginResetModel();
    m_rows = int(m_controller->messages().size());
    endResetModel();
  });
  connect(controller, &ChatController::messageAppended, this, [this](int) {
    const int n = int(m_controller->messages().size());
    if (n <= m_rows) {  // out of step (cannot happen through the controller): start over
      beginResetModel();
      m_rows = n;
      endResetModel();
      return;
    }
    beginInsertRows({}, m_rows, n - 1);
    m_rows = n;
    endInsertRows();
  });
  connect(controller, &ChatController::messageUpdated, this, [this](int row, const QString&) {
    if (row >= 0 && row < m_rows) emit dataChanged(index(row), index(row));
  });
}

int ChatMessageModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : m_rows; }

QVariant ChatMessageModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
  const auto& msgs = m_controller->messages();
  if (index.row() >= msgs.size()) return {};
  const Message& m = msgs[index.row()];
  switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole:
      return m.text;
    case Qt::AccessibleTextRole:
      return (m.role == MessageRole::User ? tr("You: %1") : tr("Answer: %1")).arg(m.text);
    case IdRole:
      return m.id;
    case RoleRole:
      return messageRoleToString(m.role);
    case StateRole:
      return messageStateToString(m.state);
    case SiblingIndexRole:
      return m_controller->siblingIndex(index.row());
    case SiblingCountRole:
      return m_controller->siblingCount(index.row());
    case AttachmentsRole: {
      QStringList out;
      for (const Attachment& a : m.attachments) {
        const QString name = QFileInfo(a.documentPath).fileName();
        QString what;
        switch (a.kind) {
          case AttachmentKind::Page: what = tr("page %1 of %2").arg(a.page + 1).arg(name); break;
          case AttachmentKind::Region: what = tr("region on page %1 of %2").arg(a.page + 1).arg(name); break;
          case AttachmentKind::Image: what = name.isEmpty() ? tr("image") : name; break;
        }
        out << tr("%1 · %2×%3").arg(what).arg(a.resolution.width()).arg(a.resolution.height());
      }
      return out;
    }
    case TokenCountRole:
      return int(m.tokenIds.size());
    case TimingsRole:
      return m.timings.toVariantMap();
    default:
      return {};
  }
}

QHash<int, QByteArray> ChatMessageModel::roleNames() const {
  auto r = QAbstractListModel::roleNames();
  r[IdRole] = "id";
  r[RoleRole] = "role";
  r[StateRole] = "state";
  r[SiblingIndexRole] = "siblingIndex";
  r[SiblingCountRole] = "siblingCount";
  r[AttachmentsRole] = "attachments";
  r[TokenCountRole] = "tokenCount";
  r[TimingsRole] = "timings";
  return r;
}

}  // namespace quire
