// SPDX-License-Identifier: GPL-3.0-or-later
// MainWindow: tabs of open documents, the menus (File, Edit, View), the status bar ("page x of y", zoom,
// selection), drag-and-drop and paste. Files load on a worker thread (DocumentLoader); a failure shows its
// message without touching the other tabs; an encrypted PDF asks for its password until right or cancelled.
#pragma once

#include "documents/document_loader.h"
#include "theme.h"

#include <QMainWindow>
#include <QStringList>
#include <functional>
#include <optional>

class QLabel;
class QMenu;
class QTabWidget;
class QDockWidget;

namespace quire {

class ChatController;
class ChatPanel;
class ConversationFileActions;
class ConversationSidebar;
class ReferenceNavigator;
class DocumentRestorer;
class DocumentTab;
class RecentFiles;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  /// Asks for a password for @p path; @p retry is true after a wrong one. nullopt = cancelled.
  using PasswordPrompt = std::function<std::optional<QString>(const QString& path, bool retry)>;

  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Replaces the password dialog (tests answer without a modal dialog).
  void setPasswordPrompt(PasswordPrompt prompt) { m_passwordPrompt = std::move(prompt); }
  /// Error messages are also shown in a dialog unless this is off (tests).
  void setErrorDialogsEnabled(bool on) { m_errorDialogs = on; }

  int documentCount() const;
  DocumentTab* currentTab() const;
  DocumentTab* tabAt(int index) const;
  QTabWidget* tabs() const { return m_tabs; }
  /// Every load error shown since start, newest last.
  QStringList errors() const { return m_errors; }
  /// The "page x of y" text in the status bar.
  QString pageStatusText() const;

  /// Adds the chat: the panel beside the viewer (right dock), the conversation list with search (left dock,
  /// Ctrl+K), and the Chat menu (Ask about this page / selection, New conversation, Settings ▸ Model). Call once;
  /// @p controller is not owned.
  void setChatController(quire::ChatController* controller);
  ChatPanel* chatPanel() const { return m_chatPanel; }
  ConversationSidebar* conversationSidebar() const { return m_sidebar; }
  QAction* askPageAction() const { return m_askPage; }
  QAction* askSelectionAction() const { return m_askSelection; }
  /// Export/Import of conversations (File menu and the list's context menu).
  ConversationFileActions* conversationFileActions() const { return m_fileActions; }
  /// Shows what chips refer to (a page, a region, an image) in the viewer.
  ReferenceNavigator* referenceNavigator() const { return m_navigator; }
  /// Opens a conversation's documents when the user opens it from the list, the search or an import.
  DocumentRestorer* documentRestorer() const { return m_restorer; }

 public Q_SLOTS:
  /// Opens each file in a new tab (loading off the GUI thread); already open files are brought forward.
  void openFiles(const QStringList& paths);
  /// Opens each file in a tab of its own without making it current or taking the focus (a reopened
  /// conversation's documents): files already open or being loaded are left as they are; a failure is said in
  /// the status bar only (no dialog, no password prompt) and reported through fileFailed.
  void openFilesInBackground(const QStringList& paths);
  /// Opens an in-memory document (e.g. a pasted image) in a new tab.
  void openDocument(std::shared_ptr<quire::Document> doc);
  void showOpenDialog();
  /// Adds the current page / the selected region of the current document as a chip of the next question.
  void askAboutPage();
  void askAboutSelection();
  /// Settings ▸ Model: choose and validate a folder; accepted, it is remembered and loaded.
  void showModelSettings();
  void closeCurrentTab();
  void pasteFromClipboard();
  void setTheme(quire::Theme theme);

 Q_SIGNALS:
  /// A file finished loading (in a tab) or failed (message set).
  void fileOpened(const QString& path);
  void fileFailed(const QString& path, const QString& message);
  /// The region selected in the current document changed (page -1: cleared).
  void selectionChanged(int page, const QRectF& rect);

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void createMenus();
  void rebuildRecentMenu();
  void handleLoaded(const QString& path, LoadResult result);
  void currentTabChanged();
  void updateStatus();
  int tabIndexForPath(const QString& path) const;
  void startLoading(const QString& path);
  void addDocumentTab(std::shared_ptr<quire::Document> doc, bool makeCurrent);
  void reportError(const QString& path, const QString& message, bool dialog = true);
  std::optional<QString> askPassword(const QString& path, bool retry);

  DocumentLoader m_loader;
  RecentFiles* m_recent;
  QTabWidget* m_tabs;
  QMenu* m_recentMenu = nullptr;
  QLabel* m_pageLabel;
  QLabel* m_zoomLabel;
  QLabel* m_selectionLabel;
  QList<QAction*> m_documentActions;  // enabled only while a document is open
  PasswordPrompt m_passwordPrompt;
  QStringList m_errors;
  QStringList m_loading;  // absolute paths being loaded now
  QStringList m_background;  // those of them opened by openFilesInBackground (not made current, no dialogs)
  bool m_errorDialogs = true;
  ChatController* m_chat = nullptr;
  ChatPanel* m_chatPanel = nullptr;
  ConversationSidebar* m_sidebar = nullptr;
  QAction* m_askPage = nullptr;
  QAction* m_askSelection = nullptr;
  QMenu* m_fileMenu = nullptr;
  ConversationFileActions* m_fileActions = nullptr;
  ReferenceNavigator* m_navigator = nullptr;
  DocumentRestorer* m_restorer = nullptr;

  void setUpChatFilesAndReferences();
};

}  // namespace quire
