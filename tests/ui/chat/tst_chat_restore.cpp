// SPDX-License-Identifier: GPL-3.0-or-later
// Reopening a conversation restores its documents: opened from the conversation list, each distinct document its
// attachments refer to opens as a tab (checked and loaded off the GUI thread), the last-referenced one current on
// its attachment's page with the region selected; missing and changed documents stay marked on their chips and
// get no tab; nothing is opened twice; a slow check of an older document neither blocks the GUI nor delays the
// landing; opening another conversation stops the restore; a programmatic open (the app starting) restores
// nothing; at most limit() documents; an encrypted PDF is not asked for its password in the background.
// Offscreen, no model needed.
#include "chat_window.h"
#include "chat/attachment_check.h"
#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/chip_rows.h"
#include "chat/conversation_list_model.h"
#include "chat/conversation_sidebar.h"
#include "chat/document_restorer.h"
#include "chat/reference_navigator.h"
#include "main_window.h"
#include "storage/conversation_store.h"
#include "test_pdfs.h"
#include "viewer/document_tab.h"
#include "viewer/page_view.h"

#include <QBuffer>
#include <QListView>
#include <QMenu>
#include <QSemaphore>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QThread>
#include <QTimer>
#include <QToolButton>
#include <QtTest>

#include <atomic>
#include <memory>

using namespace quire;

namespace {

QByteArray png() {
  QImage img(40, 30, QImage::Format_RGB32);
  img.fill(Qt::red);
  QByteArray bytes;
  QBuffer buf(&bytes);
  buf.open(QIODevice::WriteOnly);
  img.save(&buf, "PNG");
  return bytes;
}

Attachment pageAttachment(const QString& path, int page, const QString& hash, const QRectF& region = {}) {
  Attachment a;
  a.kind = region.isEmpty() ? AttachmentKind::Page : AttachmentKind::Region;
  a.documentPath = path;
  a.contentHash = hash;
  a.page = page;
  a.region = region;
  a.resolution = QSize(40, 30);
  a.imageData = png();
  a.imageMime = QStringLiteral("image/png");
  return a;
}

bool near(const QRectF& a, const QRectF& b) {
  return std::abs(a.x() - b.x()) < 1e-6 && std::abs(a.y() - b.y()) < 1e-6 && std::abs(a.width() - b.width()) < 1e-6 &&
         std::abs(a.height() - b.height()) < 1e-6;
}

QStringList tabPaths(const MainWindow& w) {
  QStringList out;
  for (int i = 0; i < w.documentCount(); ++i) out << w.tabAt(i)->document()->path();
  return out;
}

}  // namespace

class TestChatRestore : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  QString m_pdf;
  int m_dbCount = 0;

  QString newDbPath() { return m_dir.filePath(QStringLiteral("restore-%1.sqlite").arg(++m_dbCount)); }
  QString copyOfPdf(const QString& name) {
    const QString path = QFileInfo(m_dir.filePath(name)).absoluteFilePath();
    QFile::remove(path);
    return QFile::copy(m_pdf, path) ? path : QString();
  }

  // A store, a controller without a model and a shown main window with the chat (tests/ui/chat/chat_window.h).
  using Window = test::ChatWindow;
  static std::unique_ptr<Window> makeWindow(const QString& db) { return test::makeChatWindow(db); }

  // Opens conversation @p id as a user does: a click on its row in the list.
  static bool clickInList(Window& w, qint64 id) {
    ConversationSidebar* sidebar = w.window->conversationSidebar();
    sidebar->model()->refresh();
    const int row = sidebar->model()->rowOf(id);
    if (row < 0) return false;
    QListView* list = sidebar->list();
    QTest::mouseClick(list->viewport(), Qt::LeftButton, {}, list->visualRect(sidebar->model()->index(row)).center());
    return w.controller->conversationId() == id;
  }

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_restore"));
    QString why;
    m_pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (m_pdf.isEmpty()) QSKIP(qPrintable(why));
    m_pdf = QFileInfo(m_pdf).absoluteFilePath();
  }

  void reopeningFromTheListOpensItsDocuments() {
    const QString a = copyOfPdf(QStringLiteral("a.pdf"));
    const QString b = copyOfPdf(QStringLiteral("b.pdf"));
    const QString gone = copyOfPdf(QStringLiteral("gone.pdf"));
    const QString changed = copyOfPdf(QStringLiteral("changed.pdf"));
    QVERIFY(!a.isEmpty() && !b.isEmpty() && !gone.isEmpty() && !changed.isEmpty());
    const QString hash = fileContentHash(m_pdf);
    QVERIFY(!hash.isEmpty());
    QVERIFY(QFile::remove(gone));
    {
      QFile f(changed);
      QVERIFY(f.open(QIODevice::Append));
      f.write("\n% edited after it was attached\n");
    }
    const QRectF region(0.1, 0.2, 0.5, 0.3);
    const QString db = newDbPath();
    qint64 conv = 0, other = 0;
    {
      ConversationStore store;
      QVERIFY(store.open(db));
      conv = *store.createConversation(QStringLiteral("Two documents"));
      const auto q1 = store.addUserMessage(conv, 0, QStringLiteral("Compare"),
                                           {pageAttachment(a, 2, hash), pageAttachment(gone, 0, hash),
                                            pageAttachment(a, 0, hash)});
      QVERIFY(q1);
      const auto answer = store.beginAssistantMessage(conv, *q1, QStringLiteral("test"));
      QVERIFY(answer);
      QVERIFY(store.appendToAssistantMessage(*answer, QStringLiteral("They differ."), {}));
      QVERIFY(store.finishAssistantMessage(*answer, MessageState::Complete));
      QVERIFY(store.addUserMessage(conv, *answer, QStringLiteral("And this region?"),
                                   {pageAttachment(changed, 0, hash), pageAttachment(b, 1, hash, region)}));
      other = *store.createConversation(QStringLiteral("Nothing attached"));
      QVERIFY(store.addUserMessage(other, 0, QStringLiteral("Hello")));
    }
    auto w = makeWindow(db);
    QVERIFY(w);
    MainWindow& window = *w->window;
    DocumentRestorer* restorer = window.documentRestorer();
    QVERIFY(restorer);
    QCOMPARE(restorer->limit(), DocumentRestorer::kDefaultLimit);

    // The app starting (a programmatic open, a new conversation) restores nothing.
    QVERIFY(w->controller->openConversation(conv));
    w->controller->newConversation();
    QTest::qWait(300);
    QCOMPARE(window.documentCount(), 0);
    QVERIFY(!restorer->isRestoring());

    // a.pdf (referenced first) is checked slowly: its hasher waits for the test.
    auto gate = std::make_shared<QSemaphore>();
    auto waiting = std::make_shared<std::atomic<int>>(0);
    w->controller->attachmentChecker()->setHasher([gate, waiting, a](const QString& path, QString* error) {
      if (path == a) {
        ++*waiting;
        if (!gate->tryAcquire(1, 10000)) {
          *error = QStringLiteral("the test never released the hasher");
          return QString();
        }
      }
      return fileContentHash(path, error);
    });
    QElapsedTimer sinceTick;
    qint64 longestGapMs = 0;
    QTimer pulse;
    pulse.setInterval(5);
    connect(&pulse, &QTimer::timeout, this, [&] {
      if (sinceTick.isValid()) longestGapMs = std::max(longestGapMs, sinceTick.elapsed());
      sinceTick.start();
    });
    pulse.start();

    // The checks of the programmatic open are over; forget them so that a.pdf is hashed (slowly) again.
    QTRY_COMPARE(w->controller->attachmentChecker()->pendingCount(), 0);
    w->controller->attachmentChecker()->clearCache();
    QSignalSpy finished(restorer, &DocumentRestorer::finished);
    QVERIFY(clickInList(*w, conv));
    QVERIFY(restorer->isRestoring());
    // b.pdf, the last attachment's document, opens and is current on page 2 with the region selected, while
    // a.pdf is still being checked.
    QTRY_COMPARE_WITH_TIMEOUT(window.documentCount(), 1, 30000);
    DocumentTab* current = window.currentTab();
    QVERIFY(current);
    QCOMPARE(current->document()->path(), b);
    QTRY_COMPARE(current->pageView()->currentPage(), 1);
    QCOMPARE(current->pageView()->selectionPage(), 1);
    QVERIFY(near(current->pageView()->selectionRect(), region));
    QCOMPARE(waiting->load(), 1);
    QVERIFY(restorer->isRestoring());
    QCOMPARE(finished.count(), 0);
    QTest::qWait(200);
    // Waiting for a.pdf's check would stall the GUI for as long as the hasher is held (until the release below).
    QVERIFY2(longestGapMs < 5000, qPrintable(QStringLiteral("the GUI stalled %1 ms").arg(longestGapMs)));

    // Released: a.pdf opens as a second tab, in the background (b.pdf stays current).
    gate->release();
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 30000);
    QCOMPARE(finished.first().at(0).toStringList(), (QStringList{b, a}));
    QCOMPARE(finished.first().at(1).toStringList(), (QStringList{changed, gone}));
    QCOMPARE(window.documentCount(), 2);
    QVERIFY(tabPaths(window).contains(a));
    QVERIFY(!tabPaths(window).contains(gone) && !tabPaths(window).contains(changed));
    QCOMPARE(window.currentTab()->document()->path(), b);
    QCOMPARE(window.currentTab()->pageView()->currentPage(), 1);
    QVERIFY(!restorer->isRestoring());
    // The chips of the documents left closed say why.
    AttachmentChipsRow* first = window.chatPanel()->attachmentRow(0);
    AttachmentChipsRow* last = window.chatPanel()->attachmentRow(2);
    QVERIFY(first && last);
    QTRY_COMPARE(w->controller->attachmentChecker()->pendingCount(), 0);
    QCOMPARE(first->checks().value(1).availability, AttachmentAvailability::Missing);
    QVERIFY(first->buttons().value(1)->property("missing").toBool());
    QCOMPARE(last->checks().value(0).availability, AttachmentAvailability::Changed);
    QVERIFY(last->buttons().value(0)->property("missing").toBool());

    // Opened again (the list's context menu): nothing is opened twice; b.pdf is current again, on its page.
    window.tabs()->setCurrentIndex(int(tabPaths(window).indexOf(a)));
    QCOMPARE(window.currentTab()->document()->path(), a);
    std::unique_ptr<QMenu> menu(window.conversationSidebar()->createContextMenu(
        window.conversationSidebar()->model()->rowOf(conv)));
    QVERIFY(menu);
    menu->actions().first()->trigger();  // Open
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 30000);
    QCOMPARE(finished.last().at(0).toStringList(), (QStringList{b, a}));
    QCOMPARE(window.documentCount(), 2);
    QCOMPARE(window.currentTab()->document()->path(), b);

    // Another conversation opened while a.pdf is still being checked stops the restore: a.pdf never opens.
    while (window.documentCount() > 0) window.closeCurrentTab();
    QVERIFY(clickInList(*w, other));  // nothing to restore
    QCOMPARE(finished.count(), 3);
    QVERIFY(finished.last().at(0).toStringList().isEmpty());
    w->controller->attachmentChecker()->clearCache();  // a.pdf is hashed (slowly) again
    const int waitedBefore = waiting->load();
    QVERIFY(clickInList(*w, conv));
    QTRY_COMPARE_WITH_TIMEOUT(window.documentCount(), 1, 30000);
    QTRY_COMPARE(waiting->load(), waitedBefore + 1);
    QVERIFY(restorer->isRestoring());
    QVERIFY(clickInList(*w, other));
    QVERIFY(!restorer->isRestoring());
    QCOMPARE(finished.count(), 4);  // the conversation without documents: an empty restore
    gate->release();
    QTRY_COMPARE(w->controller->attachmentChecker()->pendingCount(), 0);
    QTest::qWait(300);
    QCOMPARE(tabPaths(window), QStringList{b});
    QCOMPARE(finished.count(), 4);

    // At most limit() documents: the most recently referenced.
    while (window.documentCount() > 0) window.closeCurrentTab();
    restorer->setLimit(1);
    QVERIFY(clickInList(*w, conv));
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 5, 30000);
    QCOMPARE(finished.last().at(0).toStringList(), QStringList{b});
    QCOMPARE(finished.last().at(1).toStringList(), QStringList());
    QCOMPARE(tabPaths(window), QStringList{b});
  }

  void missingOrLockedDocumentsOpenNothingAndDoNotBlock() {
    const QString a = copyOfPdf(QStringLiteral("early.pdf"));
    const QString gone = copyOfPdf(QStringLiteral("vanished.pdf"));
    QVERIFY(!a.isEmpty() && !gone.isEmpty());
    const QString hash = fileContentHash(m_pdf);
    QVERIFY(QFile::remove(gone));
    QString why;
    const QString locked = test::encryptedPdf(m_dir.path(), QStringLiteral("secret"), &why);
    const QString lockedPath = locked.isEmpty() ? QString() : QFileInfo(locked).absoluteFilePath();
    const QString db = newDbPath();
    qint64 conv = 0, allGone = 0;
    {
      ConversationStore store;
      QVERIFY(store.open(db));
      conv = *store.createConversation(QStringLiteral("Last one missing"));
      QList<Attachment> atts{pageAttachment(a, 1, hash)};
      if (!lockedPath.isEmpty()) atts << pageAttachment(lockedPath, 0, fileContentHash(lockedPath));
      atts << pageAttachment(gone, 0, hash);
      QVERIFY(store.addUserMessage(conv, 0, QStringLiteral("Pages?"), atts));
      allGone = *store.createConversation(QStringLiteral("All gone"));
      QVERIFY(store.addUserMessage(allGone, 0, QStringLiteral("Where?"), {pageAttachment(gone, 3, hash)}));
    }
    auto w = makeWindow(db);
    QVERIFY(w);
    MainWindow& window = *w->window;
    int prompts = 0;
    window.setPasswordPrompt([&](const QString&, bool) -> std::optional<QString> {
      ++prompts;
      return std::nullopt;
    });
    QSignalSpy finished(window.documentRestorer(), &DocumentRestorer::finished);

    // Only missing documents: the conversation opens, the restore ends at once with nothing opened.
    QVERIFY(clickInList(*w, allGone));
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 30000);
    QVERIFY(finished.first().at(0).toStringList().isEmpty());
    QCOMPARE(finished.first().at(1).toStringList(), QStringList{gone});
    QCOMPARE(window.documentCount(), 0);
    QCOMPARE(w->controller->messages().size(), 1);

    // The last-referenced document is missing (and the one before needs a password): the earlier one that
    // opens becomes current, on its attachment's page; no password is asked for in the background.
    QVERIFY(clickInList(*w, conv));
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 30000);
    QCOMPARE(finished.last().at(0).toStringList(), QStringList{a});
    QStringList skipped{gone};
    if (!lockedPath.isEmpty()) skipped << lockedPath;
    QCOMPARE(finished.last().at(1).toStringList(), skipped);
    QCOMPARE(tabPaths(window), QStringList{a});
    QCOMPARE(window.currentTab()->document()->path(), a);
    QTRY_COMPARE(window.currentTab()->pageView()->currentPage(), 1);
    QCOMPARE(prompts, 0);
    if (lockedPath.isEmpty()) qWarning("encrypted PDF part not run: %s", qPrintable(why));
  }
};

QTEST_MAIN(TestChatRestore)
#include "tst_chat_restore.moc"
