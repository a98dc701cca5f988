// SPDX-License-Identifier: GPL-3.0-or-later
// Esc pressed on the focused widget of the main window while an answer streams (the tiny fixture model on its
// worker thread) stops it within one token: the answer ends as stopped, on screen and in the store, and no piece
// arrives after. The worker is parked inside its first piece until Esc was pressed (tests/ui/chat/piece_gate.h).
#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/prompt_box.h"
#include "fixture_case.h"
#include "inference/inference_thread.h"
#include "inference/inference_worker.h"
#include "main_window.h"
#include "piece_gate.h"
#include "tiny_model.h"
#include "storage/conversation_store.h"

#include <QApplication>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QtTest>

using namespace quire;
using test::PieceGate;
using test::rendered;

namespace {
constexpr int kTimeoutMs = 120000;
}  // namespace

class TestChatStop : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  std::unique_ptr<InferenceThread> m_thread;
  ModelLoadInfo m_info;

  void configure(ChatController& c, int maxTokens) { test::configureGreedy(c, m_info, maxTokens); }

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_stop"));
    QVERIFY(m_dir.isValid());
    const test::FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    if (c.name.isEmpty()) QSKIP("tests/fixtures/models/tiny-bf16 not found");
    m_thread = std::make_unique<InferenceThread>();
    const QString failure =
        test::loadModelOnWorker(*m_thread, c.modelDir + QStringLiteral("/native"), &m_info, kTimeoutMs);
    QVERIFY2(failure.isEmpty(), qPrintable(failure));
  }

  void cleanupTestCase() { m_thread.reset(); }

  void escStopsTheStreamedAnswerWithinAToken() {
    ConversationStore store;
    QVERIFY(store.open(m_dir.filePath(QStringLiteral("esc.sqlite"))));
    ChatController controller(&store, m_thread->worker());
    configure(controller, 2000);  // far longer than the test: only Stop ends it early

    MainWindow window;
    window.setErrorDialogsEnabled(false);
    window.setChatController(&controller);
    window.resize(1200, 800);
    window.show();
    window.activateWindow();
    QVERIFY(QTest::qWaitForWindowActive(&window));
    ChatPanel* panel = window.chatPanel();

    PieceGate gate(m_thread->worker(), {1});
    PromptBox* prompt = panel->promptBox();
    prompt->setFocus();
    QTest::keyClicks(prompt, QStringLiteral("Tell me a long story"));
    QTest::keyClick(prompt, Qt::Key_Return);
    QVERIFY2(controller.isGenerating(), qPrintable(controller.error()));
    QVERIFY(gate.reached());  // the worker is inside its first piece
    QTRY_COMPARE(controller.messages().size(), 2);
    QTRY_COMPARE(int(controller.messages().last().tokenIds.size()), 1);  // the first piece reached the chat
    QCOMPARE(panel->messageViewCount(), 2);
    QCOMPARE(panel->messageBrowser(1)->toPlainText(), rendered(controller.messages().last().text));

    QWidget* focused = QApplication::focusWidget();
    QVERIFY(focused);
    QCOMPARE(focused->window(), &window);
    const int atEsc = gate.emitted();
    QTest::keyClick(focused, Qt::Key_Escape);
    gate.release();
    QTRY_VERIFY_WITH_TIMEOUT(!controller.isGenerating(), kTimeoutMs);

    // Within one token of the Esc; ended as stopped, on screen and in the store.
    QVERIFY2(gate.emitted() <= atEsc + 1, qPrintable(QStringLiteral("%1 pieces after Esc at %2")
                                                          .arg(gate.emitted()).arg(atEsc)));
    const Message answer = controller.messages().last();
    QCOMPARE(answer.state, MessageState::Stopped);
    QVERIFY(int(answer.tokenIds.size()) <= atEsc + 2);  // the pieces (+ a final </s> record at most)
    const auto stored = store.message(answer.id);
    QVERIFY(stored);
    QCOMPARE(stored->state, MessageState::Stopped);
    QCOMPARE(stored->text, answer.text);
    bool saidStopped = false;  // the answer's header in the panel
    for (const QLabel* l : panel->findChildren<QLabel*>())
      saidStopped = saidStopped || l->text() == QStringLiteral("Pixtral (stopped)");
    QVERIFY(saidStopped);

    // No piece arrives after: the worker emits none and the chat does not change.
    const QString shown = panel->messageBrowser(1)->toPlainText();
    const int emittedAtEnd = gate.emitted();
    QSignalSpy updated(&controller, &ChatController::messageUpdated);
    QTest::qWait(300);
    QCOMPARE(gate.emitted(), emittedAtEnd);
    QCOMPARE(updated.count(), 0);
    QCOMPARE(panel->messageBrowser(1)->toPlainText(), shown);
    QVERIFY(!panel->stopButton()->isEnabled());
  }
};

QTEST_MAIN(TestChatStop)
#include "tst_chat_stop.moc"
