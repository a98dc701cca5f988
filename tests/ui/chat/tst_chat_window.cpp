// SPDX-License-Identifier: GPL-3.0-or-later
// The whole loop in the main window, offscreen, with the tiny fixture model on a worker thread: open a real PDF,
// select a region, "Ask about selection" (a region chip with its resolution and tokens), type a question, Enter,
// and the streamed answer appears in the chat panel and in the store; the conversation is in the sidebar and
// the region was saved as the question's attachment. Then "Ask about this page" and the no-Esc-theft check.
// Then a "restart": the window, the controller and the store are destroyed and made anew on the same database;
// the conversation is found by full-text search (Ctrl+K) and opened: its PDF opens again on the region's page;
// its chip clicked brings the viewer back to the page with the region selected.
#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/chip_rows.h"
#include "chat/conversation_list_model.h"
#include "chat/conversation_sidebar.h"
#include "chat/prompt_box.h"
#include "chat/reference_navigator.h"
#include "fixture_case.h"
#include "inference/inference_thread.h"
#include "main_window.h"
#include "store_helper.h"
#include "test_pdfs.h"
#include "viewer/document_tab.h"
#include "viewer/page_view.h"

#include <QAction>
#include <QLabel>
#include <QLineEdit>
#include <QToolButton>
#include <QListView>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QtTest>

using namespace quire;

class TestChatWindow : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  QString m_pdf;
  std::unique_ptr<InferenceThread> m_thread;
  ModelLoadInfo m_info;

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_window"));
    QString why;
    m_pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (m_pdf.isEmpty()) QSKIP(qPrintable(why));
    const test::FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    if (c.name.isEmpty()) QSKIP("tests/fixtures/models/tiny-bf16 not found");
    m_thread = std::make_unique<InferenceThread>();
    bool loaded = false;
    connect(m_thread->worker(), &InferenceWorker::modelLoaded, this, [&](const ModelLoadInfo& i) {
      m_info = i;
      loaded = true;
    });
    m_thread->worker()->loadModel(c.modelDir + QStringLiteral("/native"), {pixtral::Device::cpu, 2});
    QVERIFY(QTest::qWaitFor([&] { return loaded; }, 120000));
  }

  void cleanupTestCase() { m_thread.reset(); }

  void selectRegionAskAndSeeTheAnswerStream() {
    const QString db = m_dir.filePath(QStringLiteral("history.sqlite"));
    const QRectF region(0.1, 0.2, 0.5, 0.3);
    qint64 conversationId = 0;
    {  // the first session
      const auto storePtr = test::openStore(db);
      QVERIFY(storePtr);
      ConversationStore& store = *storePtr;
      ChatController controller(&store, m_thread->worker());
      controller.setModelInfo(m_info);
      pixtral::GenerateParams p;
      p.temperature = 0;
      p.max_tokens = 12;
      controller.setGenerateParams(p);
      controller.setContextLength(4096);

      MainWindow window;
      window.setErrorDialogsEnabled(false);
      window.setChatController(&controller);
      window.resize(1300, 800);
      window.show();
      QVERIFY(QTest::qWaitForWindowExposed(&window));
      QVERIFY(window.chatPanel() && window.chatPanel()->isVisible());
      QVERIFY(window.conversationSidebar()->isVisible());
      QVERIFY(!window.askSelectionAction()->isEnabled());

      QSignalSpy opened(&window, &MainWindow::fileOpened);
      window.openFiles({m_pdf});
      QTRY_COMPARE_WITH_TIMEOUT(opened.count(), 1, 30000);
      DocumentTab* tab = window.currentTab();
      QVERIFY(tab);
      QVERIFY(window.askPageAction()->isEnabled());

      // Select a region on page 2 the way the viewer does, then ask about it.
      tab->pageView()->setSelection(1, region);
      QTRY_VERIFY(window.askSelectionAction()->isEnabled());
      window.askSelectionAction()->trigger();
      QCOMPARE(controller.chips().size(), 1);
      const ContextChip chip = controller.chips().first();
      QCOMPARE(chip.kind, AttachmentKind::Region);
      QCOMPARE(chip.page, 1);
      QVERIFY(chip.tokens > 0);
      QVERIFY(chip.resolution.width() > 0);

      PromptBox* prompt = window.chatPanel()->promptBox();
      prompt->setFocus();
      QTest::keyClicks(prompt, QStringLiteral("What is in this region?"));
      QTest::keyClick(prompt, Qt::Key_Return);
      QVERIFY2(controller.isGenerating(), qPrintable(controller.error()));
      QVERIFY(prompt->toPlainText().isEmpty());
      QVERIFY(controller.chips().isEmpty());
      QVERIFY(window.chatPanel()->stopButton()->isEnabled());  // the page image renders off the GUI thread
      QVERIFY(!window.chatPanel()->sendButton()->isEnabled());
      QTRY_COMPARE_WITH_TIMEOUT(window.chatPanel()->messageViewCount(), 2, 30000);

      QTRY_VERIFY_WITH_TIMEOUT(!controller.isGenerating(), 120000);
      const QString answer = controller.messages().last().text;
      QVERIFY(!answer.isEmpty());
      // The panel shows what streamed (Markdown-rendered: compare the plain text of both renderings).
      QTextDocument expected;
      expected.setMarkdown(answer);
      QCOMPARE(window.chatPanel()->messageBrowser(1)->toPlainText(), expected.toPlainText());
      QVERIFY(!window.chatPanel()->statsLabel()->text().isEmpty());
      QVERIFY(window.chatPanel()->regenerateButton()->isEnabled());

      // Stored: the question with the region attachment, the complete answer; listed in the sidebar.
      const QList<Message> path = test::activePath(store, controller.conversationId());
      QCOMPARE(path.size(), 2);
      QCOMPARE(path[0].attachments.size(), 1);
      QCOMPARE(path[0].attachments[0].kind, AttachmentKind::Region);
      QCOMPARE(path[0].attachments[0].page, 1);
      QCOMPARE(path[0].attachments[0].documentPath, QFileInfo(m_pdf).absoluteFilePath());
      QVERIFY(!path[0].attachments[0].contentHash.isEmpty());
      QCOMPARE(path[1].text, answer);
      QCOMPARE(path[1].state, MessageState::Complete);
      QTRY_COMPARE(window.conversationSidebar()->model()->rowCount(), 1);
      QCOMPARE(window.conversationSidebar()->model()->idAt(0), controller.conversationId());

      // "Ask about this page" adds the page the viewer shows.
      window.askPageAction()->trigger();
      QCOMPARE(controller.chips().size(), 1);
      QCOMPARE(controller.chips()[0].kind, AttachmentKind::Page);
      QCOMPARE(controller.chips()[0].page, tab->pageView()->currentPage());

      // Esc is not taken from the viewer while nothing is generating: it still clears the selection.
      tab->pageView()->setFocus();
      QTest::keyClick(tab->pageView(), Qt::Key_Escape);
      QTRY_COMPARE(tab->pageView()->selectionPage(), -1);
      conversationId = controller.conversationId();
    }  // the window, the controller and the store are gone: a restart

    const auto store = test::openStore(db);
    QVERIFY(store);
    ChatController controller(store.get(), m_thread->worker());
    controller.setModelInfo(m_info);
    MainWindow window;
    window.setErrorDialogsEnabled(false);
    window.setChatController(&controller);
    window.resize(1300, 800);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QCOMPARE(window.documentCount(), 0);
    QCOMPARE(controller.conversationId(), 0);

    // Ctrl+K, a word of the question: the conversation is the one found.
    ConversationSidebar* sidebar = window.conversationSidebar();
    QTest::keyClick(&window, Qt::Key_K, Qt::ControlModifier);
    QTRY_VERIFY(sidebar->searchField()->hasFocus());
    QTest::keyClicks(sidebar->searchField(), QStringLiteral("region"));
    QTRY_COMPARE(sidebar->model()->rowCount(), 1);
    QCOMPARE(sidebar->model()->idAt(0), conversationId);
    const QModelIndex found = sidebar->model()->index(0);
    QTest::mouseClick(sidebar->list()->viewport(), Qt::LeftButton, {}, sidebar->list()->visualRect(found).center());
    QTRY_COMPARE(controller.conversationId(), conversationId);
    QCOMPARE(window.chatPanel()->messageViewCount(), 2);

    // Opened from the list, the conversation brings its document back: the PDF opens (off the GUI thread) and is
    // current on the region's page, the region selected.
    QTRY_COMPARE_WITH_TIMEOUT(window.documentCount(), 1, 30000);
    QCOMPARE(window.currentTab()->document()->path(), QFileInfo(m_pdf).absoluteFilePath());
    QTRY_COMPARE(window.currentTab()->pageView()->currentPage(), 1);
    QCOMPARE(window.currentTab()->pageView()->selectionPage(), 1);
    QTest::qWait(100);  // the landing's second pass, once the new tab is laid out
    window.currentTab()->pageView()->goToPage(0);  // elsewhere, for the chip to bring it back
    window.currentTab()->pageView()->clearSelection();
    QTRY_COMPARE(window.currentTab()->pageView()->currentPage(), 0);

    // Its chip: the region on page 2; clicked, the PDF's tab shows it again with the region selected.
    AttachmentChipsRow* chips = window.chatPanel()->attachmentRow(0);
    QVERIFY(chips);
    QTRY_VERIFY(chips->isVisible());
    QCOMPARE(chips->buttons().size(), 1);
    // Its document is checked off the GUI thread; once known it is there, unchanged.
    QTRY_COMPARE(controller.attachmentChecker()->pendingCount(), 0);
    QCOMPARE(chips->checks().value(0).availability, AttachmentAvailability::Available);
    QVERIFY(!chips->buttons()[0]->property("missing").toBool());
    QSignalSpy landed(window.referenceNavigator(), &ReferenceNavigator::landed);
    QTest::mouseClick(chips->buttons()[0], Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(landed.count(), 1, 30000);
    DocumentTab* reopened = window.currentTab();
    QVERIFY(reopened);
    QCOMPARE(reopened->document()->path(), QFileInfo(m_pdf).absoluteFilePath());
    QTRY_COMPARE(reopened->pageView()->currentPage(), 1);
    QCOMPARE(reopened->pageView()->selectionPage(), 1);
    const QRectF shown = reopened->pageView()->selectionRect();
    QVERIFY2(std::abs(shown.x() - region.x()) < 1e-6 && std::abs(shown.y() - region.y()) < 1e-6 &&
                 std::abs(shown.width() - region.width()) < 1e-6 && std::abs(shown.height() - region.height()) < 1e-6,
             qPrintable(QStringLiteral("%1 %2 %3 %4").arg(shown.x()).arg(shown.y()).arg(shown.width()).arg(shown.height())));
    // The region is in view.
    QVERIFY(reopened->pageView()->pageRectInViewport(1).intersects(QRectF(reopened->pageView()->viewport()->rect())));
    QVERIFY(window.pageStatusText().contains(QStringLiteral("2")));
  }
};

QTEST_MAIN(TestChatWindow)
#include "tst_chat_window.moc"
