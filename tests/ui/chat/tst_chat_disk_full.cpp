// SPDX-License-Identifier: GPL-3.0-or-later
// The disk fills while an answer streams (PRAGMA max_page_count on the ChatController's own store; the tiny
// fixture model on its worker thread): the chat says so while the answer goes on, the answer stays on screen in
// full, the question and what was committed are in the database (reopened, intact), a question that cannot be
// saved is refused with the message and its text kept, and once space is back the answer is saved in full before
// the next question. The worker is parked inside chosen pieces while the GUI thread acts (piece_gate.h).
#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/prompt_box.h"
#include "fixture_case.h"
#include "inference/inference_thread.h"
#include "inference/inference_worker.h"
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

class TestChatDiskFull : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  std::unique_ptr<InferenceThread> m_thread;
  ModelLoadInfo m_info;

  void configure(ChatController& c, int maxTokens) { test::configureGreedy(c, m_info, maxTokens); }

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_disk_full"));
    QVERIFY(m_dir.isValid());
    const test::FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    if (c.name.isEmpty()) QSKIP("tests/fixtures/models/tiny-bf16 not found");
    m_thread = std::make_unique<InferenceThread>();
    const QString failure =
        test::loadModelOnWorker(*m_thread, c.modelDir + QStringLiteral("/native"), &m_info, kTimeoutMs);
    QVERIFY2(failure.isEmpty(), qPrintable(failure));
  }

  void cleanupTestCase() { m_thread.reset(); }

  void diskFullWhileStreamingLosesNothing() {
    const QString db = m_dir.filePath(QStringLiteral("full.sqlite"));
    const QString question = QStringLiteral("What does the disk hold?");
    ConversationStore store;
    QVERIFY(store.open(db));
    store.setCommitInterval(0, 1);  // every piece is committed as it comes
    ChatController controller(&store, m_thread->worker());
    configure(controller, 24);
    ChatPanel panel(&controller);
    panel.resize(500, 700);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));

    QString streamed;  // every piece the chat received
    connect(&controller, &ChatController::messageUpdated, this,
            [&](int, const QString& piece) { streamed += piece; });

    auto gate = std::make_unique<PieceGate>(m_thread->worker(), std::set<int>{3, 6});
    panel.promptBox()->setPlainText(question);
    QTest::mouseClick(panel.sendButton(), Qt::LeftButton);
    QVERIFY2(controller.isGenerating(), qPrintable(controller.error()));
    QVERIFY(gate->reached());  // parked in piece 3; pieces 1–3 committed
    QTRY_COMPARE(int(controller.messages().last().tokenIds.size()), 3);
    const qint64 conversation = controller.conversationId();
    const qint64 questionId = controller.messages().first().id;
    const qint64 answerId = controller.messages().last().id;
    const QString committed = controller.messages().last().text;
    QCOMPARE(store.message(answerId)->text, committed);
    QVERIFY(!panel.errorLabel()->isVisible());

    // The disk fills up: a few pages left, taken by another conversation's messages.
    const qint64 filler = *store.createConversation(QStringLiteral("filler"));
    Database& dbc = store.database();
    dbc.exec(QStringLiteral("PRAGMA max_page_count = %1").arg(dbc.queryInt("PRAGMA page_count") + 4).toUtf8().constData());
    int added = 0;
    while (added < 2000 && store.addUserMessage(filler, 0, QStringLiteral("filler %1 ").arg(added).repeated(100)))
      ++added;
    QCOMPARE(store.lastError().kind(), StorageError::Kind::Full);

    gate->release();
    QVERIFY(gate->reached());  // parked in piece 6: pieces 4–5 could not be committed
    QTRY_VERIFY(panel.errorLabel()->isVisible());
    QVERIFY(controller.isGenerating());  // said while the answer goes on
    const QString message = panel.errorLabel()->text();
    QVERIFY2(message.contains(QStringLiteral("disk is full")), qPrintable(message));
    QVERIFY2(message.contains(QStringLiteral("saved")), qPrintable(message));
    gate->release();
    QTRY_VERIFY_WITH_TIMEOUT(!controller.isGenerating(), kTimeoutMs);
    gate.reset();

    // The whole answer stays on screen (not only the part the store holds), complete.
    const Message answer = controller.messages().last();
    QCOMPARE(answer.id, answerId);
    QCOMPARE(answer.state, MessageState::Complete);
    QCOMPARE(answer.text, streamed);
    QVERIFY(answer.text.size() > committed.size());
    QCOMPARE(panel.messageBrowser(1)->toPlainText(), rendered(answer.text));
    QVERIFY(panel.errorLabel()->isVisible());
    QVERIFY(panel.errorLabel()->text().contains(QStringLiteral("disk is full")));

    // Reopened, the database holds the question and what was committed; it is intact.
    {
      ConversationStore reopened;
      QVERIFY(reopened.open(db, StoreOpenOptions{true}));
      const QList<Message> path = reopened.activePath(conversation);
      QCOMPARE(path.size(), 2);
      QCOMPARE(path[0].id, questionId);
      QCOMPARE(path[0].text, question);
      QCOMPARE(path[1].id, answerId);
      QVERIFY2(path[1].text.startsWith(committed), qPrintable(path[1].text));
      QVERIFY(answer.text.startsWith(path[1].text));
      QVERIFY(path[1].tokenIds.size() >= 3);
      QCOMPARE(reopened.database().queryText("PRAGMA integrity_check"), QStringLiteral("ok"));
    }

    // The app goes on: a question that cannot be saved is refused with the message, its text kept.
    panel.promptBox()->setPlainText(QStringLiteral("And now?"));
    QVERIFY(panel.sendButton()->isEnabled());
    QTest::mouseClick(panel.sendButton(), Qt::LeftButton);
    QVERIFY(!controller.isGenerating());
    QCOMPARE(panel.promptBox()->toPlainText(), QStringLiteral("And now?"));
    QVERIFY(panel.errorLabel()->isVisible());
    QVERIFY(panel.errorLabel()->text().contains(QStringLiteral("disk is full")));
    QCOMPARE(controller.messages().size(), 2);

    // Space comes back: the next question first saves the earlier answer in full, then is answered.
    dbc.exec("PRAGMA max_page_count = 1073741823");
    QTest::mouseClick(panel.sendButton(), Qt::LeftButton);
    QVERIFY2(controller.isGenerating(), qPrintable(controller.error()));
    QTRY_VERIFY_WITH_TIMEOUT(!controller.isGenerating(), kTimeoutMs);
    QVERIFY(!panel.errorLabel()->isVisible());
    QCOMPARE(controller.messages().size(), 4);
    {
      ConversationStore reopened;
      QVERIFY(reopened.open(db, StoreOpenOptions{true}));
      const auto saved = reopened.message(answerId);
      QVERIFY(saved);
      QCOMPARE(saved->text, answer.text);
      QCOMPARE(saved->state, MessageState::Complete);
      QCOMPARE(saved->tokenIds, answer.tokenIds);
      const QList<Message> path = reopened.activePath(conversation);
      QCOMPARE(path.size(), 4);
      QCOMPARE(path[2].text, QStringLiteral("And now?"));
    }
  }
};

QTEST_MAIN(TestChatDiskFull)
#include "tst_chat_disk_full.moc"
