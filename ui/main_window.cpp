// SPDX-License-Identifier: GPL-3.0-or-later
// MainWindow (see main_window.h).
#include "main_window.h"

#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/conversation_file_actions.h"
#include "chat/conversation_sidebar.h"
#include "chat/document_restorer.h"
#include "chat/prompt_box.h"
#include "chat/reference_navigator.h"
#include "dialogs/model_dialog.h"
#include "dialogs/server_settings_dialog.h"
#include "inference/inference_worker.h"
#include "settings/recent_files.h"
#include "viewer/document_tab.h"
#include "viewer/page_view.h"

#include <QActionGroup>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QInputDialog>
#include <QLineEdit>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QSettings>
#include <QStatusBar>
#include <QTabBar>
#include <QTabWidget>
#include <QtConcurrent/QtConcurrentRun>

namespace quire {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), m_recent(new RecentFiles(this)) {
  setWindowTitle(tr("Quire"));
  setAccessibleName(tr("Quire main window"));
  setAcceptDrops(true);
  m_tabs = new QTabWidget(this);
  m_tabs->setAccessibleName(tr("Open documents"));
  m_tabs->setDocumentMode(true);
  m_tabs->setTabsClosable(true);
  m_tabs->setMovable(true);
  m_tabs->tabBar()->setAccessibleName(tr("Document tabs"));
  setCentralWidget(m_tabs);
  connect(m_tabs, &QTabWidget::tabCloseRequested, this, [this](int i) {
    QWidget* w = m_tabs->widget(i);
    m_tabs->removeTab(i);
    delete w;
  });
  connect(m_tabs, &QTabWidget::currentChanged, this, &MainWindow::currentTabChanged);

  m_pageLabel = new QLabel(this);
  m_pageLabel->setAccessibleName(tr("Current page"));
  m_zoomLabel = new QLabel(this);
  m_zoomLabel->setAccessibleName(tr("Zoom level"));
  m_selectionLabel = new QLabel(this);
  m_selectionLabel->setAccessibleName(tr("Selected region"));
  statusBar()->setAccessibleName(tr("Status bar"));
  statusBar()->addPermanentWidget(m_selectionLabel);
  statusBar()->addPermanentWidget(m_zoomLabel);
  statusBar()->addPermanentWidget(m_pageLabel);
  createMenus();
  currentTabChanged();
  resize(1100, 800);
  restoreGeometry(QSettings().value(QStringLiteral("mainWindow/geometry")).toByteArray());
}

MainWindow::~MainWindow() = default;

void MainWindow::createMenus() {
  QMenu* file = m_fileMenu = menuBar()->addMenu(tr("&File"));
  QAction* open = file->addAction(tr("&Open…"), this, &MainWindow::showOpenDialog);
  open->setShortcut(QKeySequence::Open);
  m_recentMenu = file->addMenu(tr("Open &Recent"));
  connect(m_recent, &RecentFiles::changed, this, &MainWindow::rebuildRecentMenu);
  rebuildRecentMenu();
  QAction* close = file->addAction(tr("&Close"), this, &MainWindow::closeCurrentTab);
  close->setShortcut(QKeySequence::Close);
  m_documentActions << close;
  file->addSeparator();
  QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);

  QMenu* edit = menuBar()->addMenu(tr("&Edit"));
  QAction* find = edit->addAction(tr("&Find…"), this, [this] {
    if (DocumentTab* t = currentTab()) t->showFindBar();
  });
  find->setShortcut(QKeySequence::Find);
  QAction* findNext = edit->addAction(tr("Find &Next"), this, [this] {
    if (DocumentTab* t = currentTab()) t->nextHit();
  });
  findNext->setShortcut(QKeySequence::FindNext);
  QAction* findPrevious = edit->addAction(tr("Find Pre&vious"), this, [this] {
    if (DocumentTab* t = currentTab()) t->previousHit();
  });
  findPrevious->setShortcut(QKeySequence::FindPrevious);
  m_documentActions << find << findNext << findPrevious;
  edit->addSeparator();
  QAction* paste = edit->addAction(tr("&Paste"), this, &MainWindow::pasteFromClipboard);
  paste->setShortcut(QKeySequence::Paste);
  QAction* clearSel = edit->addAction(tr("Clear &Selection"), this, [this] {
    if (DocumentTab* t = currentTab()) t->pageView()->clearSelection();
  });
  m_documentActions << clearSel;

  QMenu* view = menuBar()->addMenu(tr("&View"));
  auto onView = [this](void (PageView::*fn)()) {
    return [this, fn] {
      if (DocumentTab* t = currentTab()) (t->pageView()->*fn)();
    };
  };
  QAction* zoomIn = view->addAction(tr("Zoom &In"), this, onView(&PageView::zoomIn));
  zoomIn->setShortcuts({QKeySequence::ZoomIn, QKeySequence(Qt::CTRL | Qt::Key_Equal)});
  QAction* zoomOut = view->addAction(tr("Zoom &Out"), this, onView(&PageView::zoomOut));
  zoomOut->setShortcut(QKeySequence::ZoomOut);
  QAction* actual = view->addAction(tr("&Actual Size"), this, [this] {
    if (DocumentTab* t = currentTab()) t->pageView()->setZoom(1.0);
  });
  actual->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
  QAction* fitWidth = view->addAction(tr("Fit &Width"), this, onView(&PageView::fitWidth));
  QAction* fitPage = view->addAction(tr("Fit &Page"), this, onView(&PageView::fitPage));
  m_documentActions << zoomIn << zoomOut << actual << fitWidth << fitPage;
  view->addSeparator();
  QAction* thumbs = view->addAction(tr("&Thumbnails"));
  thumbs->setCheckable(true);
  thumbs->setChecked(true);
  thumbs->setShortcut(QKeySequence(Qt::Key_F4));
  connect(thumbs, &QAction::toggled, this, [this](bool on) {
    for (int i = 0; i < m_tabs->count(); ++i) tabAt(i)->setThumbnailsVisible(on);
  });
  QMenu* themeMenu = view->addMenu(tr("T&heme"));
  auto* group = new QActionGroup(this);
  const Theme current = savedTheme();
  for (auto [theme, label] : {std::pair{Theme::System, tr("&System")}, std::pair{Theme::Light, tr("&Light")},
                              std::pair{Theme::Dark, tr("&Dark")}}) {
    QAction* a = themeMenu->addAction(label, this, [this, theme = theme] { setTheme(theme); });
    a->setCheckable(true);
    a->setChecked(theme == current);
    group->addAction(a);
  }
}

void MainWindow::rebuildRecentMenu() {
  m_recentMenu->clear();
  const QStringList files = m_recent->files();
  for (const QString& f : files)
    m_recentMenu->addAction(QFileInfo(f).fileName(), this, [this, f] { openFiles({f}); })->setToolTip(f);
  if (files.isEmpty()) m_recentMenu->addAction(tr("No recent files"))->setEnabled(false);
  else {
    m_recentMenu->addSeparator();
    m_recentMenu->addAction(tr("Clear List"), m_recent, &RecentFiles::clear);
  }
}

void MainWindow::setTheme(Theme theme) {
  applyTheme(theme);
  saveTheme(theme);
}

int MainWindow::documentCount() const { return m_tabs->count(); }
DocumentTab* MainWindow::currentTab() const { return qobject_cast<DocumentTab*>(m_tabs->currentWidget()); }
DocumentTab* MainWindow::tabAt(int index) const { return qobject_cast<DocumentTab*>(m_tabs->widget(index)); }
QString MainWindow::pageStatusText() const { return m_pageLabel->text(); }

int MainWindow::tabIndexForPath(const QString& path) const {
  for (int i = 0; i < m_tabs->count(); ++i)
    if (!path.isEmpty() && tabAt(i)->document()->path() == path) return i;
  return -1;
}

void MainWindow::showOpenDialog() {
  const QString dir = QSettings().value(QStringLiteral("lastOpenDir")).toString();
  const QStringList files =
      QFileDialog::getOpenFileNames(this, tr("Open Documents"), dir, DocumentLoader::nameFilters().join(QLatin1String(";;")));
  if (files.isEmpty()) return;
  QSettings().setValue(QStringLiteral("lastOpenDir"), QFileInfo(files.first()).absolutePath());
  openFiles(files);
}

void MainWindow::openFiles(const QStringList& paths) {
  for (const QString& p : paths) {
    const QString path = QFileInfo(p).absoluteFilePath();
    m_background.removeAll(path);  // asked for now: it becomes current when it has loaded
    if (const int i = tabIndexForPath(path); i >= 0) {
      m_tabs->setCurrentIndex(i);
      continue;
    }
    startLoading(path);
  }
}

void MainWindow::openFilesInBackground(const QStringList& paths) {
  for (const QString& p : paths) {
    const QString path = QFileInfo(p).absoluteFilePath();
    if (tabIndexForPath(path) >= 0 || m_loading.contains(path)) continue;
    m_background << path;
    startLoading(path);
  }
}

void MainWindow::startLoading(const QString& path) {
  if (m_loading.contains(path)) return;
  m_loading << path;
  statusBar()->showMessage(tr("Opening %1…").arg(QFileInfo(path).fileName()));
  auto* watcher = new QFutureWatcher<LoadResult>(this);
  connect(watcher, &QFutureWatcher<LoadResult>::finished, this, [this, watcher, path] {
    watcher->deleteLater();
    m_loading.removeAll(path);
    handleLoaded(path, watcher->result());
  });
  const DocumentLoader loader = m_loader;  // a copy: the worker never touches this window
  watcher->setFuture(QtConcurrent::run([loader, path] { return loader.load(path); }));
}

std::optional<QString> MainWindow::askPassword(const QString& path, bool retry) {
  if (m_passwordPrompt) return m_passwordPrompt(path, retry);
  const QString name = QFileInfo(path).fileName();
  const QString label = retry ? tr("The password for “%1” is wrong. Try again:").arg(name)
                              : tr("“%1” is protected by a password. Password:").arg(name);
  bool ok = false;
  const QString pw = QInputDialog::getText(this, tr("Password Required"), label, QLineEdit::Password, {}, &ok);
  if (!ok) return std::nullopt;
  return pw;
}

void MainWindow::handleLoaded(const QString& path, LoadResult result) {
  statusBar()->clearMessage();
  const bool background = m_background.removeAll(path) > 0;
  if (result.error == DocumentError::PasswordRequired && result.document) {
    if (background) return reportError(path, result.message, false);  // asked for when the user opens it
    bool retry = false;
    for (;;) {
      const std::optional<QString> pw = askPassword(path, retry);
      if (!pw) return reportError(path, result.message);
      const DocumentError e = result.document->unlock(*pw);
      if (e == DocumentError::None) break;
      retry = true;
      m_errors << documentErrorMessage(e, path);
      statusBar()->showMessage(m_errors.last(), 5000);
    }
    result.error = DocumentError::None;
  }
  if (!result.ok()) return reportError(path, result.message, !background);
  m_recent->add(path);
  addDocumentTab(result.document, !background);
  Q_EMIT fileOpened(path);
}

void MainWindow::reportError(const QString& path, const QString& message, bool dialog) {
  m_errors << message;
  statusBar()->showMessage(message, 8000);
  Q_EMIT fileFailed(path, message);
  if (!m_errorDialogs || !dialog) return;
  auto* box = new QMessageBox(QMessageBox::Warning, tr("Cannot Open File"), message, QMessageBox::Ok, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->setAccessibleName(tr("Error"));
  box->open();  // window-modal and non-blocking: loading other files carries on
}

void MainWindow::openDocument(std::shared_ptr<Document> doc) { addDocumentTab(std::move(doc), true); }

void MainWindow::addDocumentTab(std::shared_ptr<Document> doc, bool makeCurrent) {
  if (!doc) return;
  auto* tab = new DocumentTab(std::move(doc), m_tabs);
  PageView* view = tab->pageView();
  connect(view, &PageView::currentPageChanged, this, [this, tab] {
    if (tab == currentTab()) updateStatus();
  });
  connect(view, &PageView::zoomChanged, this, [this, tab] {
    if (tab == currentTab()) updateStatus();
  });
  connect(view, &PageView::selectionChanged, this, [this, tab](int page, const QRectF& rect) {
    if (tab != currentTab()) return;
    updateStatus();
    Q_EMIT selectionChanged(page, rect);
  });
  const int i = m_tabs->addTab(tab, tab->document()->title());
  m_tabs->setTabToolTip(i, tab->document()->path());
  if (!makeCurrent) return;
  m_tabs->setCurrentIndex(i);
  tab->setFocus();
}

void MainWindow::closeCurrentTab() {
  if (m_tabs->count() > 0) Q_EMIT m_tabs->tabCloseRequested(m_tabs->currentIndex());
}

void MainWindow::currentTabChanged() {
  const bool any = currentTab() != nullptr;
  for (QAction* a : std::as_const(m_documentActions)) a->setEnabled(any);
  DocumentTab* t = currentTab();
  setWindowTitle(t ? tr("%1 — Quire").arg(t->document()->title()) : tr("Quire"));
  updateStatus();
  if (t) Q_EMIT selectionChanged(t->pageView()->selectionPage(), t->pageView()->selectionRect());
}

void MainWindow::updateStatus() {
  DocumentTab* t = currentTab();
  if (!t) {
    m_pageLabel->clear();
    m_zoomLabel->clear();
    m_selectionLabel->clear();
    return;
  }
  PageView* v = t->pageView();
  m_pageLabel->setText(tr("Page %1 of %2").arg(v->currentPage() + 1).arg(v->pageCount()));
  m_zoomLabel->setText(tr("%1 %").arg(qRound(v->zoom() * 100)));
  m_selectionLabel->setText(v->selectionPage() >= 0 ? tr("Region selected on page %1").arg(v->selectionPage() + 1)
                                                    : QString());
}

void MainWindow::pasteFromClipboard() {
  const QMimeData* mime = QApplication::clipboard()->mimeData();
  if (!mime) return;
  QStringList files;
  if (mime->hasUrls())
    for (const QUrl& url : mime->urls())
      if (url.isLocalFile()) files << url.toLocalFile();
  if (files.isEmpty() && mime->hasText()) {
    const QString text = mime->text().trimmed();
    const QString candidate = text.startsWith(QLatin1String("file://")) ? QUrl(text).toLocalFile() : text;
    if (!candidate.contains(QLatin1Char('\n')) && QFileInfo(candidate).isFile()) files << candidate;
  }
  if (!files.isEmpty()) return openFiles(files);
  if (mime->hasImage()) {
    LoadResult r = m_loader.fromImage(qvariant_cast<QImage>(mime->imageData()));
    if (r.ok()) return openDocument(r.document);
    return reportError(QString(), r.message);
  }
  statusBar()->showMessage(tr("The clipboard holds no image or file to open."), 5000);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  const QMimeData* mime = event->mimeData();
  bool local = mime->hasImage();
  for (const QUrl& url : mime->urls()) local = local || url.isLocalFile();
  if (local) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  QStringList files;
  for (const QUrl& url : event->mimeData()->urls())
    if (url.isLocalFile()) files << url.toLocalFile();
  if (!files.isEmpty()) {
    openFiles(files);
  } else if (event->mimeData()->hasImage()) {
    LoadResult r = m_loader.fromImage(qvariant_cast<QImage>(event->mimeData()->imageData()));
    if (r.ok()) openDocument(r.document);
  }
  event->acceptProposedAction();
}

void MainWindow::closeEvent(QCloseEvent* event) {
  QSettings().setValue(QStringLiteral("mainWindow/geometry"), saveGeometry());
  QMainWindow::closeEvent(event);
}

// Chat ----------------------------------------------------------------------------------------------------------

void MainWindow::setChatController(ChatController* controller) {
  if (m_chat || !controller) return;
  m_chat = controller;
  m_chatPanel = new ChatPanel(controller, this);
  auto* chatDock = new QDockWidget(tr("Chat"), this);
  chatDock->setObjectName(QStringLiteral("chatDock"));
  chatDock->setAccessibleName(tr("Chat"));
  chatDock->setWidget(m_chatPanel);
  chatDock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
  addDockWidget(Qt::RightDockWidgetArea, chatDock);
  m_sidebar = new ConversationSidebar(controller, this);
  auto* listDock = new QDockWidget(tr("Conversations"), this);
  listDock->setObjectName(QStringLiteral("conversationsDock"));
  listDock->setAccessibleName(tr("Conversations"));
  listDock->setWidget(m_sidebar);
  addDockWidget(Qt::LeftDockWidgetArea, listDock);
  resizeDocks({chatDock, listDock}, {420, 220}, Qt::Horizontal);
  connect(m_chatPanel, &ChatPanel::modelSettingsRequested, this, &MainWindow::showModelSettings);
  setUpChatFilesAndReferences();

  QMenu* chat = menuBar()->addMenu(tr("&Chat"));
  m_askPage = chat->addAction(tr("Ask About This &Page"), this, &MainWindow::askAboutPage);
  m_askPage->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_P));
  m_askSelection = chat->addAction(tr("Ask About &Selection"), this, &MainWindow::askAboutSelection);
  m_askSelection->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_A));
  m_askSelection->setEnabled(false);
  m_documentActions << m_askPage;
  m_askPage->setEnabled(currentTab() != nullptr);
  chat->addSeparator();
  QAction* newChat = chat->addAction(tr("&New Conversation"), controller, &ChatController::newConversation);
  newChat->setShortcut(QKeySequence::New);
  QAction* search = chat->addAction(tr("Search Conversations…"), m_sidebar, &ConversationSidebar::focusSearch);
  search->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_K));
  QAction* stop = chat->addAction(tr("S&top Answer"), controller, &ChatController::stop);
  stop->setShortcut(QKeySequence(Qt::Key_Escape));
  stop->setShortcutContext(Qt::WindowShortcut);
  stop->setEnabled(controller->isGenerating());  // only then: Esc still clears the selection and the find bar
  connect(controller, &ChatController::generatingChanged, stop, &QAction::setEnabled);
  chat->addSeparator();
  chat->addAction(tr("Settings ▸ &Model…"), this, &MainWindow::showModelSettings);
  chat->addAction(tr("Settings ▸ &Local API…"), this, [this] { ServerSettingsDialog(this).exec(); });
  connect(this, &MainWindow::selectionChanged, this, [this](int page, const QRectF& rect) {
    m_askSelection->setEnabled(page >= 0 && !rect.isEmpty());
  });
  if (DocumentTab* t = currentTab())
    m_askSelection->setEnabled(t->pageView()->selectionPage() >= 0 && !t->pageView()->selectionRect().isEmpty());
}

void MainWindow::askAboutPage() {
  DocumentTab* t = currentTab();
  if (!m_chat || !t) return;
  m_chat->addPageChip(t->document(), std::max(0, t->pageView()->currentPage()));
  m_chatPanel->promptBox()->setFocus();
}

void MainWindow::askAboutSelection() {
  DocumentTab* t = currentTab();
  if (!m_chat || !t || t->pageView()->selectionPage() < 0 || t->pageView()->selectionRect().isEmpty()) return;
  m_chat->addRegionChip(t->document(), t->pageView()->selectionPage(), t->pageView()->selectionRect());
  m_chatPanel->promptBox()->setFocus();
}

void MainWindow::showModelSettings() {
  ModelDialog dialog(this);
  if (dialog.exec() != QDialog::Accepted) return;
  if (m_chat && m_chat->worker()) m_chat->worker()->loadModel(dialog.folder());
}

// Export/import of conversations in the File menu (before Quit) and the list's context menu; chips that show their
// page, region or image in the viewer; files dropped on the chat that are not images open in the viewer.
void MainWindow::setUpChatFilesAndReferences() {
  m_fileActions = new ConversationFileActions(m_chat, this);
  m_sidebar->setFileActions(m_fileActions);
  QAction* before = nullptr;  // the separator above Quit
  const QList<QAction*> items = m_fileMenu->actions();
  for (int i = 1; i < items.size(); ++i)
    if (items[i]->shortcut() == QKeySequence(QKeySequence::Quit) && items[i - 1]->isSeparator()) before = items[i - 1];
  m_fileMenu->insertSeparator(before);
  m_fileMenu->insertMenu(before, m_fileActions->exportMenu());
  m_fileMenu->insertAction(before, m_fileActions->importAction());

  m_navigator = new ReferenceNavigator(this);
  connect(m_chatPanel, &ChatPanel::attachmentActivated, m_navigator, &ReferenceNavigator::showAttachment);
  connect(m_chatPanel, &ChatPanel::contextChipActivated, m_navigator, [this](int index) {
    if (index >= 0 && index < m_chat->chips().size()) m_navigator->showChip(m_chat->chips()[index]);
  });
  connect(m_chatPanel, &ChatPanel::filesDropped, this, &MainWindow::openFiles);

  // A conversation the user opens (from the list, the search, an import) brings its documents back as tabs.
  m_restorer = new DocumentRestorer(this, m_chat);
  connect(m_sidebar, &ConversationSidebar::conversationOpened, m_restorer, &DocumentRestorer::restore);
  connect(m_fileActions, &ConversationFileActions::imported, m_restorer, &DocumentRestorer::restore);
  // A chip clicked meanwhile: that is where the user wants to be.
  connect(m_chatPanel, &ChatPanel::attachmentActivated, m_restorer, &DocumentRestorer::dropLanding);
  connect(m_chatPanel, &ChatPanel::contextChipActivated, m_restorer, &DocumentRestorer::dropLanding);
  connect(m_navigator, &ReferenceNavigator::failed, this, [this](const QString& message) {
    statusBar()->showMessage(message, 10000);
  });
}

}  // namespace quire
