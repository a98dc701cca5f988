// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationFileActions: see conversation_file_actions.h.
#include "chat/conversation_file_actions.h"

#include "chat/chat_controller.h"
#include "storage/conversation_store.h"

#include <QAction>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QRegularExpression>
#include <QSaveFile>
#include <QSettings>
#include <QStandardPaths>

namespace quire {

ConversationFileActions::ConversationFileActions(ChatController* controller, QWidget* dialogParent)
    : QObject(dialogParent), m_controller(controller), m_parent(dialogParent) {
  m_exportMenu = new QMenu(tr("&Export Conversation"), dialogParent);
  m_exportMenu->setAccessibleName(tr("Export the current conversation"));
  m_exportMarkdown = m_exportMenu->addAction(tr("&Markdown…"));
  m_exportMarkdown->setObjectName(QStringLiteral("exportMarkdown"));
  m_exportMarkdown->setToolTip(tr("Export the current conversation as Markdown"));
  m_exportJson = m_exportMenu->addAction(tr("&JSON…"));
  m_exportJson->setObjectName(QStringLiteral("exportJson"));
  m_exportJson->setToolTip(tr("Export the current conversation as JSON (replays with pixtral generate --messages)"));
  m_import = new QAction(tr("&Import Conversation…"), this);
  m_import->setObjectName(QStringLiteral("importConversation"));
  m_import->setToolTip(tr("Import a conversation exported as JSON"));
  connect(m_exportMarkdown, &QAction::triggered, this,
          [this] { exportConversation(m_controller->conversationId(), Format::Markdown); });
  connect(m_exportJson, &QAction::triggered, this,
          [this] { exportConversation(m_controller->conversationId(), Format::Json); });
  connect(m_import, &QAction::triggered, this, &ConversationFileActions::importConversation);
  connect(m_controller, &ChatController::conversationChanged, this, &ConversationFileActions::updateEnabled);
  updateEnabled();
}

void ConversationFileActions::updateEnabled() {
  const bool any = m_controller->conversationId() != 0;
  m_exportMarkdown->setEnabled(any);
  m_exportJson->setEnabled(any);
  m_exportMenu->setEnabled(any);
}

QString ConversationFileActions::askPath(Purpose purpose, const QString& suggested) {
  if (m_pathProvider) return m_pathProvider(purpose, suggested);
  QSettings settings;
  QString dir = settings.value(QStringLiteral("chat/exportDir")).toString();
  if (dir.isEmpty()) dir = QStandardPaths::writableLocation(QStandardPaths::DocumentsLocation);
  QString path;
  switch (purpose) {
    case Purpose::ExportMarkdown:
      path = QFileDialog::getSaveFileName(m_parent, tr("Export Conversation as Markdown"), dir + QLatin1Char('/') + suggested,
                                          tr("Markdown (*.md)"));
      break;
    case Purpose::ExportJson:
      path = QFileDialog::getSaveFileName(m_parent, tr("Export Conversation as JSON"), dir + QLatin1Char('/') + suggested,
                                          tr("JSON (*.json)"));
      break;
    case Purpose::Import:
      path = QFileDialog::getOpenFileName(m_parent, tr("Import Conversation"), dir, tr("JSON (*.json)"));
      break;
  }
  if (!path.isEmpty()) settings.setValue(QStringLiteral("chat/exportDir"), QFileInfo(path).absolutePath());
  return path;
}

bool ConversationFileActions::fail(const QString& message) {
  emit failed(message);
  if (m_errorDialogs) QMessageBox::warning(m_parent, tr("Conversation"), message);
  return false;
}

bool ConversationFileActions::exportConversation(qint64 id, Format format) {
  ConversationStore* store = m_controller->store();
  if (!id || !store) return false;
  const auto conv = store->conversation(id);
  if (!conv) return fail(store->lastError().message());
  QString base = conv->title.simplified();
  base.replace(QRegularExpression(QStringLiteral(R"([\\/:*?"<>|])")), QStringLiteral("_"));
  if (base.isEmpty()) base = tr("conversation");
  const bool md = format == Format::Markdown;
  const QString path = askPath(md ? Purpose::ExportMarkdown : Purpose::ExportJson,
                               base + (md ? QStringLiteral(".md") : QStringLiteral(".json")));
  if (path.isEmpty()) return false;
  const QByteArray bytes = md ? store->exportMarkdown(id).toUtf8() : store->exportJson(id);
  if (bytes.isEmpty()) return fail(tr("The conversation could not be exported: %1").arg(store->lastError().message()));
  QSaveFile f(path);  // all or nothing: a failed write leaves no half file
  if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size() || !f.commit())
    return fail(tr("Cannot write %1: %2").arg(path, f.errorString()));
  emit exported(path);
  return true;
}

bool ConversationFileActions::importConversation() {
  ConversationStore* store = m_controller->store();
  if (!store) return false;
  const QString path = askPath(Purpose::Import, {});
  if (path.isEmpty()) return false;
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return fail(tr("Cannot read %1: %2").arg(path, f.errorString()));
  const auto id = store->importJson(f.readAll(), QFileInfo(path).absolutePath());
  if (!id) return fail(tr("%1 could not be imported: %2").arg(path, store->lastError().message()));
  emit m_controller->conversationsChanged();
  m_controller->openConversation(*id);
  emit imported(*id);
  return true;
}

}  // namespace quire
