// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationFileActions: Export Conversation ▸ Markdown… / JSON… and Import Conversation… — the File menu's
// actions (on the current conversation) and the conversation list's context menu (on the clicked one), through
// the store's exporters. The JSON is the `pixtral generate --messages` format with Quire's page references, so
// an exported conversation replays and imports back. The file dialog can be replaced (tests).
#pragma once

#include <QObject>
#include <QString>

#include <functional>

class QAction;
class QMenu;
class QWidget;

namespace quire {

class ChatController;

class ConversationFileActions : public QObject {
  Q_OBJECT

 public:
  enum class Format { Markdown, Json };
  enum class Purpose { ExportMarkdown, ExportJson, Import };
  /// Returns the chosen path for @p purpose (empty: cancelled); @p suggested is a file name for exports.
  using PathProvider = std::function<QString(Purpose purpose, const QString& suggested)>;

  ConversationFileActions(ChatController* controller, QWidget* dialogParent);

  QAction* exportMarkdownAction() const { return m_exportMarkdown; }
  QAction* exportJsonAction() const { return m_exportJson; }
  QAction* importAction() const { return m_import; }
  /// "Export Conversation ▸" with the two export actions (for the File menu).
  QMenu* exportMenu() const { return m_exportMenu; }

  void setPathProvider(PathProvider provider) { m_pathProvider = std::move(provider); }
  /// Error dialogs (off in tests: errors still go to failed()).
  void setErrorDialogsEnabled(bool on) { m_errorDialogs = on; }

  /// Asks for a path and writes conversation @p id in @p format. False when cancelled or failed.
  bool exportConversation(qint64 id, Format format);
  /// Asks for a JSON file and imports it as a new conversation, which is opened. False when cancelled/failed.
  bool importConversation();

 Q_SIGNALS:
  void exported(const QString& path);
  void imported(qint64 conversationId);
  void failed(const QString& message);

 private:
  QString askPath(Purpose purpose, const QString& suggested);
  bool fail(const QString& message);
  void updateEnabled();

  ChatController* m_controller;
  QWidget* m_parent;
  QAction* m_exportMarkdown;
  QAction* m_exportJson;
  QAction* m_import;
  QMenu* m_exportMenu;
  PathProvider m_pathProvider;
  bool m_errorDialogs = true;
};

}  // namespace quire
