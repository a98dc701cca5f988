// SPDX-License-Identifier: GPL-3.0-or-later
// The GUI's startup wiring (ui/chat/chat_startup.h, what app/main.cpp runs): a corrupt history file is kept
// aside byte for byte, a fresh one started, and the user is told in the chat panel — still told after a document
// has loaded (a status-bar message was cleared by the load), until they dismiss it. A history that cannot be
// opened (written by a newer Quire) is said the same way; a healthy one shows no notice. A model that fails to
// load is said there too, and lasts past a document load.
#include "chat/chat_panel.h"
#include "chat/chat_startup.h"
#include "inference/inference_thread.h"
#include "inference/inference_worker.h"
#include "main_window.h"
#include "storage/conversation_store.h"
#include "test_pdfs.h"

#include <QDir>
#include <QFile>
#include <QLabel>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QToolButton>
#include <QtTest>

using namespace quire;

namespace {

QByteArray readAll(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}


}  // namespace

class TestChatStartup : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  QString m_pdf;

  // Opens a document in @p window and waits for it.
  bool openDocument(MainWindow& window) {
    QSignalSpy opened(&window, &MainWindow::fileOpened);
    window.openFiles({m_pdf});
    return QTest::qWaitFor([&] { return opened.count() == 1; }, 30000);
  }

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_startup"));
    QVERIFY(m_dir.isValid());
    QString why;
    m_pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (m_pdf.isEmpty()) QSKIP(qPrintable(why));
  }

  void corruptHistoryIsKeptAsideAndTheNoticeLasts() {
    const QString db = m_dir.filePath(QStringLiteral("corrupt.sqlite"));
    const QByteArray notes("These are my notes, not a database.\n");
    {
      QFile f(db);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(notes);
    }

    ChatStartup chat(nullptr, db);
    MainWindow window;
    window.setErrorDialogsEnabled(false);
    chat.attachTo(window);
    window.resize(1200, 800);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));  // nothing modal held up the start

    // The damaged file is kept aside byte for byte; a fresh, working history took its place.
    QVERIFY(chat.storeOpen());
    const QString aside = chat.store().movedAsidePath();
    QVERIFY2(aside.startsWith(db + QStringLiteral(".corrupt-")), qPrintable(aside));
    QCOMPARE(readAll(aside), notes);
    QVERIFY(readAll(db) != notes);

    // The user is told, in the chat panel, where the old history went.
    ChatPanel* panel = window.chatPanel();
    QVERIFY(panel);
    QTRY_VERIFY(panel->noticeBanner()->isVisible());
    QVERIFY2(panel->noticeLabel()->text().contains(aside), qPrintable(panel->noticeLabel()->text()));
    QCOMPARE(panel->noticeLabel()->text(), chat.store().movedAsideMessage());

    // A document loads (the status bar's message is replaced): the notice is still shown.
    QVERIFY(openDocument(window));
    QVERIFY(!window.statusBar()->currentMessage().contains(aside));
    QVERIFY(panel->noticeBanner()->isVisible());
    QVERIFY(panel->noticeLabel()->text().contains(aside));
    QTest::qWait(50);
    QVERIFY(panel->noticeBanner()->isVisible());

    // Until the user dismisses it.
    QTest::mouseClick(panel->dismissNoticeButton(), Qt::LeftButton);
    QTRY_VERIFY(!panel->noticeBanner()->isVisible());
    QVERIFY(!panel->dismissNoticeButton()->accessibleName().isEmpty());
  }

  void historyThatCannotBeOpenedIsSaidAndLasts() {
    const QString db = m_dir.filePath(QStringLiteral("newer.sqlite"));
    {  // a history written by a newer Quire
      ConversationStore newer;
      QVERIFY(newer.open(db));
      newer.database().exec("PRAGMA user_version = 9999");
    }

    ChatStartup chat(nullptr, db);
    QVERIFY(!chat.storeOpen());
    MainWindow window;
    window.setErrorDialogsEnabled(false);
    chat.attachTo(window);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    ChatPanel* panel = window.chatPanel();
    QTRY_VERIFY(panel->noticeBanner()->isVisible());
    const QString text = panel->noticeLabel()->text();
    QVERIFY2(text.contains(db), qPrintable(text));
    QVERIFY2(text.contains(chat.store().lastError().message()), qPrintable(text));
    QVERIFY(openDocument(window));
    QVERIFY(panel->noticeBanner()->isVisible());
    QCOMPARE(panel->noticeLabel()->text(), text);
    QCOMPARE(readAll(db).isEmpty(), false);  // the newer history is left as it is
    QVERIFY(chat.store().movedAsidePath().isEmpty());
  }

  void modelLoadFailureIsSaidInTheChatAndLasts() {
    const QString db = m_dir.filePath(QStringLiteral("model-fails.sqlite"));
    const QString model = m_dir.filePath(QStringLiteral("broken-model"));
    QVERIFY(QDir().mkpath(model));
    {  // a folder that looks like a model but whose params.json is not JSON
      QFile f(QDir(model).filePath(QStringLiteral("params.json")));
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("{ not json");
      QFile t(QDir(model).filePath(QStringLiteral("consolidated.safetensors")));
      QVERIFY(t.open(QIODevice::WriteOnly));
      t.write("garbage");
    }
    InferenceThread inference;
    ChatStartup chat(inference.worker(), db);
    MainWindow window;
    window.setErrorDialogsEnabled(false);
    chat.attachTo(window);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    ChatPanel* panel = window.chatPanel();
    QVERIFY(!panel->noticeBanner()->isVisible());
    // Received on this thread (queued from the worker's): a QSignalSpy on the worker would append on the worker
    // thread while this one reads, and its wait() only counts emissions after it is called — the worker may
    // already have failed by then.
    QStringList failures;
    QObject receiver;
    connect(inference.worker(), &InferenceWorker::modelLoadFailed, &receiver,
            [&](const QString& m) { failures << m; });
    inference.worker()->loadModel(model);
    QTRY_COMPARE_WITH_TIMEOUT(failures.size(), 1, 30000);
    const QString message = failures.first();
    QVERIFY(!message.isEmpty());
    QTRY_VERIFY(panel->noticeBanner()->isVisible());
    QVERIFY2(panel->noticeLabel()->text().contains(message), qPrintable(panel->noticeLabel()->text()));
    QVERIFY(openDocument(window));
    QVERIFY(panel->noticeBanner()->isVisible());
    QVERIFY(panel->noticeLabel()->text().contains(message));
  }

  void healthyHistoryShowsNoNotice() {
    const QString db = m_dir.filePath(QStringLiteral("healthy.sqlite"));
    { ChatStartup first(nullptr, db); }
    ChatStartup chat(nullptr, db);
    QVERIFY(chat.storeOpen());
    QVERIFY(chat.notice().isEmpty());
    MainWindow window;
    window.setErrorDialogsEnabled(false);
    chat.attachTo(window);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QVERIFY(!window.chatPanel()->noticeBanner()->isVisible());
    QVERIFY(!window.chatPanel()->readOnlyNotice()->isVisible());
  }
};

QTEST_MAIN(TestChatStartup)
#include "tst_chat_startup.moc"
