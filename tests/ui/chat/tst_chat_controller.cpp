// SPDX-License-Identifier: GPL-3.0-or-later
// ChatController with the tiny fixture model on a real worker thread and a temp-file store: a question's answer
// streams into the last message and is committed (the exact greedy tokens of the engine's reference case),
// regenerate and edit keep the earlier versions as siblings, Stop ends the answer as "stopped"; context chips
// and their token costs (checked against the engine's own Model::image_token_count); the list models under
// QAbstractItemModelTester.
#include "chat/chat_controller.h"
#include "chat/chat_message_model.h"
#include "chat/conversation_list_model.h"
#include "fixture_case.h"
#include "inference/inference_thread.h"
#include "piece_gate.h"
#include "storage/conversation_store.h"
#include "tiny_model.h"
#include "documents/document_loader.h"
#include "test_pdfs.h"

#include <pixtral/model.h>

#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>

using namespace quire;
using test::PieceGate;

namespace {
constexpr int kTimeoutMs = 120000;
}

class TestChatController : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  std::unique_ptr<InferenceThread> m_thread;
  test::FixtureCase m_case;
  ModelLoadInfo m_info;
  int m_dbCount = 0;

  QString newDbPath() { return m_dir.filePath(QStringLiteral("chat-%1.sqlite").arg(++m_dbCount)); }

  void configure(ChatController& c, int maxTokens) { test::configureGreedy(c, m_info, maxTokens); }

  QString question() const {
    return m_case.json.value(QStringLiteral("messages")).toArray().at(0).toObject().value(QStringLiteral("content")).toString();
  }

  static bool waitIdle(ChatController& c) {
    return QTest::qWaitFor([&] { return !c.isGenerating(); }, kTimeoutMs);
  }

 private Q_SLOTS:
  void initTestCase() {
    QVERIFY(m_dir.isValid());
    m_case = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    if (m_case.name.isEmpty()) QSKIP("tests/fixtures/models/tiny-bf16 not found (run tests/fixtures/models/make_fixtures.py)");
    m_thread = std::make_unique<InferenceThread>();
    const QString failure =
        test::loadModelOnWorker(*m_thread, m_case.modelDir + QStringLiteral("/native"), &m_info, kTimeoutMs);
    QVERIFY2(failure.isEmpty(), qPrintable(failure));
  }

  void cleanupTestCase() { m_thread.reset(); }

  // Token costs -----------------------------------------------------------------------------------------------
  void imageTokenCountMatchesTheEngine() {
    pixtral::LoadOptions options;
    options.device = pixtral::Device::cpu;
    options.threads = 1;
    auto model = pixtral::Model::load((m_case.modelDir + QStringLiteral("/native")).toStdString(), options);
    QVERIFY(model.ok());
    const auto& info = (*model)->info();
    for (int w : {1, 7, 8, 9, 63, 64, 65, 100, 333, 1024, 2000})
      for (int h : {1, 8, 17, 64, 129, 500, 3000})
        QCOMPARE(imageTokenCount(w, h, info.patch_size, info.max_image_size), (*model)->image_token_count(w, h));
  }

  // The patch size comes with the model (ModelLoadInfo::patchSize): 16 before a model, the model's after, the
  // chips already in the row recounted; an info without one keeps it.
  void patchSizeComesWithTheModelInfo() {
    QVERIFY(m_info.patchSize > 0);
    QVERIFY2(m_info.patchSize != 16, "the tiny model's patch size must differ from the default for this test");
    ChatController c(nullptr, nullptr);
    QCOMPARE(c.patchSize(), 16);
    c.addImageChip(QImage(100, 50, QImage::Format_RGB32), QStringLiteral("a.png"));
    QCOMPARE(c.chips()[0].tokens, imageTokenCount(100, 50, 16, c.maxImageSize()));
    c.setModelInfo(m_info);
    QCOMPARE(c.patchSize(), m_info.patchSize);
    QCOMPARE(c.chips()[0].tokens, imageTokenCount(100, 50, m_info.patchSize, m_info.maxImageSize));
    ModelLoadInfo noPatch = m_info;
    noPatch.patchSize = 0;
    c.setModelInfo(noPatch);
    QCOMPARE(c.patchSize(), m_info.patchSize);
  }

  void chipsAddRemoveAndTotal() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 4);
    QSignalSpy changed(&c, &ChatController::chipsChanged);
    c.addImageChip(QImage(100, 50, QImage::Format_RGB32), QStringLiteral("a.png"));
    c.addImageChip(QImage(30, 200, QImage::Format_RGB32), QStringLiteral("b.png"));
    QCOMPARE(c.chips().size(), 2);
    QCOMPARE(changed.count(), 2);
    QCOMPARE(c.chips()[0].resolution, QSize(100, 50));
    QCOMPARE(c.chips()[0].tokens, imageTokenCount(100, 50, m_info.patchSize, m_info.maxImageSize));
    QVERIFY(c.chips()[0].tokens > 0);
    QCOMPARE(c.chipTokens(), c.chips()[0].tokens + c.chips()[1].tokens);
    QVERIFY(c.estimatedPromptTokens(QStringLiteral("hi")) >= c.chipTokens());
    c.removeChip(0);
    QCOMPARE(c.chips().size(), 1);
    QCOMPARE(c.chips()[0].label, QStringLiteral("b.png"));
    QCOMPARE(c.chipTokens(), imageTokenCount(30, 200, m_info.patchSize, m_info.maxImageSize));
    c.removeChip(5);  // out of range: ignored
    QCOMPARE(c.chips().size(), 1);
    QVERIFY(!c.addImageChip(m_dir.filePath(QStringLiteral("missing.png"))));
    QVERIFY(!c.error().isEmpty());
    c.clearChips();
    QCOMPARE(c.chipTokens(), 0);
  }

  void cpuTimeEstimateBeforeAsking() {
    QVERIFY(m_info.onCpu());
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    QSignalSpy estimated(&c, &ChatController::estimateChanged);
    configure(c, 8);
    c.addImageChip(QImage(64, 64, QImage::Format_RGB32), QStringLiteral("a.png"));
    QTRY_VERIFY_WITH_TIMEOUT(!c.timeEstimate().isEmpty(), 10000);
    QVERIFY2(c.timeEstimate().contains(QLatin1Char('s')), qPrintable(c.timeEstimate()));
  }

  void overTheContextIsRefusedNotCut() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 4);
    c.setContextLength(40);
    c.addImageChip(QImage(64, 64, QImage::Format_RGB32), QStringLiteral("big.png"));
    QVERIFY(c.chipTokens() + 10 > 40);
    QVERIFY(!c.send(question()));
    QVERIFY(c.error().contains(QStringLiteral("40")));
    QCOMPARE(c.chips().size(), 1);  // kept: nothing dropped silently
    QVERIFY(store.conversations().isEmpty());
  }

  // Asking ----------------------------------------------------------------------------------------------------
  void sendStreamsAndCommits() {
    const QString db = newDbPath();
    qint64 convId = 0;
    std::vector<std::int32_t> stored;
    QString streamed;
    {
      ConversationStore store;
      QVERIFY(store.open(db));
      ChatController c(&store, m_thread->worker());
      configure(c, m_case.maxTokens);
      ChatMessageModel model(&c);
      QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
      QSignalSpy updated(&c, &ChatController::messageUpdated);
      QVERIFY2(c.send(question()), qPrintable(c.error()));
      QVERIFY(c.isGenerating());
      QCOMPARE(model.rowCount(), 2);
      QCOMPARE(model.index(0).data(ChatMessageModel::RoleRole).toString(), QStringLiteral("user"));
      // The user message is in the store before any answer arrives.
      convId = c.conversationId();
      QVERIFY(convId > 0);
      QVERIFY(waitIdle(c));
      for (const QList<QVariant>& u : updated) streamed += u.at(1).toString();
      QVERIFY(updated.count() >= 2);
      QCOMPARE(model.index(1).data().toString(), c.messages().last().text);
      QVERIFY(c.messages().last().text.startsWith(streamed));
      QCOMPARE(model.index(1).data(ChatMessageModel::StateRole).toString(), QStringLiteral("complete"));
      QVERIFY(c.lastTtftMs() > 0);
      QVERIFY(c.lastTokensPerSecond() > 0);
    }
    ConversationStore reopened;
    QVERIFY(reopened.open(db));
    const QList<Message> path = reopened.activePath(convId);
    QCOMPARE(path.size(), 2);
    QCOMPARE(path[0].text, question());
    QCOMPARE(path[1].role, MessageRole::Assistant);
    QCOMPARE(path[1].state, MessageState::Complete);
    QCOMPARE(path[1].text, streamed);
    const std::vector<int> ids(path[1].tokenIds.begin(), path[1].tokenIds.end());
    QCOMPARE(ids, m_case.greedyTokens);  // the engine's reference answer, token for token
  }

  void regenerateAndEditKeepEarlierVersions() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 6);
    ChatMessageModel model(&c);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QVERIFY(c.send(question()));
    QVERIFY(waitIdle(c));
    const qint64 firstAnswer = c.messages().last().id;
    const QString firstText = c.messages().last().text;

    pixtral::GenerateParams p = c.generateParams();
    p.temperature = 1.0f;
    p.seed = 7;
    c.setGenerateParams(p);
    QVERIFY2(c.regenerate(), qPrintable(c.error()));
    QVERIFY(waitIdle(c));
    QCOMPARE(c.messages().size(), 2);
    QVERIFY(c.messages().last().id != firstAnswer);
    QCOMPARE(c.siblingCount(1), 2);
    QCOMPARE(c.siblingIndex(1), 1);
    QCOMPARE(model.index(1).data(ChatMessageModel::SiblingCountRole).toInt(), 2);
    QVERIFY(c.showSibling(1, -1));
    QCOMPARE(c.messages().last().id, firstAnswer);
    QCOMPARE(c.messages().last().text, firstText);
    QVERIFY(!c.showSibling(1, -1));  // no earlier version

    QVERIFY2(c.editAndResend(0, QStringLiteral("Describe the lazy dog.")), qPrintable(c.error()));
    QVERIFY(waitIdle(c));
    QCOMPARE(c.messages().size(), 2);
    QCOMPARE(c.messages().first().text, QStringLiteral("Describe the lazy dog."));
    QCOMPARE(c.siblingCount(0), 2);
    QVERIFY(c.showSibling(0, -1));
    QCOMPARE(c.messages().first().text, question());
    QCOMPARE(c.siblingCount(1), 2);  // both answers of the first question are still there
  }

  // Opening another conversation while an answer streams stops that answer (its request only) and the controller
  // is ready again once it ended: stored as stopped, and a question in the new conversation is answered.
  void switchingConversationsStopsTheAnswer() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 2000);
    // The worker waits in its 2nd piece until the switch is done: the tiny model's whole answer takes ~30 ms, so
    // without the gate a slow GUI thread could switch after the answer had ended on its own.
    PieceGate gate(m_thread->worker(), {2});
    bool switched = false;
    qint64 answerId = 0;
    connect(&c, &ChatController::messageUpdated, &c, [&](int row, const QString&) {
      if (switched || row >= c.messages().size() || c.messages()[row].role != MessageRole::Assistant) return;
      switched = true;
      answerId = c.messages()[row].id;
      QTimer::singleShot(0, &c, [&c, &gate] {
        c.newConversation();
        gate.release();
      });
    });
    QVERIFY(c.send(question()));
    QVERIFY(waitIdle(c));
    QVERIFY(switched);
    QCOMPARE(c.conversationId(), qint64(0));
    const auto stored = store.message(answerId);
    QVERIFY(stored);
    QCOMPARE(stored->state, MessageState::Stopped);
    QVERIFY2(c.send(QStringLiteral("Something else?")), qPrintable(c.error()));
    QVERIFY(waitIdle(c));
    QCOMPARE(c.messages().size(), 2);
  }

  void stopEndsTheAnswerAsStopped() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 2000);
    // Stopped on the answer's first update, while the worker waits in its 2nd piece (the tiny model's whole answer
    // takes ~30 ms: a later stop could come after it had ended on its own).
    PieceGate gate(m_thread->worker(), {2});
    int pieces = 0;
    connect(&c, &ChatController::messageUpdated, &c, [&](int, const QString&) {
      if (++pieces == 1) {
        c.stop();
        gate.release();
      }
    });
    QVERIFY(c.send(question()));
    QVERIFY(waitIdle(c));
    const Message answer = c.messages().last();
    QCOMPARE(answer.state, MessageState::Stopped);
    QVERIFY2(answer.tokenIds.size() < 2000, qPrintable(QString::number(answer.tokenIds.size())));
    const auto stored = store.message(answer.id);
    QVERIFY(stored);
    QCOMPARE(stored->state, MessageState::Stopped);
    QCOMPARE(stored->text, answer.text);
    // The next question works after a Stop.
    pieces = 100;
    QVERIFY2(c.send(QStringLiteral("And now?")), qPrintable(c.error()));
    QVERIFY(waitIdle(c));
    QCOMPARE(c.messages().size(), 4);
  }

  void imageChipGoesAlongAndIsStored() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 3);
    QImage img(40, 24, QImage::Format_RGB32);
    img.fill(Qt::red);
    c.addImageChip(img, QStringLiteral("red.png"));
    QVERIFY2(c.send(QStringLiteral("What colour?")), qPrintable(c.error()));
    QVERIFY(c.chips().isEmpty());
    QVERIFY(waitIdle(c));
    QCOMPARE(c.messages().last().state, MessageState::Complete);
    const Message user = c.messages().first();
    QCOMPARE(user.attachments.size(), 1);
    QCOMPARE(user.attachments[0].resolution, QSize(40, 24));
    const auto timings = c.messages().last().timings;
    QVERIFY(timings.value(QStringLiteral("prompt_tokens")).toInt() >= imageTokenCount(40, 24, m_info.patchSize, m_info.maxImageSize));
  }

  // An image chip's resolution is adjustable: scaled down to the chosen side, the model gets exactly that many
  // pixels (stored so), and the prompt is shorter by the difference of the two token costs.
  void imageChipResolutionIsAdjustableAndSent() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 2);
    QImage img(40, 24, QImage::Format_RGB32);
    img.fill(Qt::blue);
    int promptTokens[2] = {0, 0};
    for (int scaled = 0; scaled < 2; ++scaled) {
      c.newConversation();
      c.addImageChip(img, QStringLiteral("blue.png"));
      QCOMPARE(c.chips()[0].resolution, QSize(40, 24));
      if (scaled) {
        c.setChipMaxSide(0, 20);
        QCOMPARE(c.chips()[0].resolution, QSize(20, 12));
        QCOMPARE(c.chips()[0].tokens, imageTokenCount(20, 12, m_info.patchSize, m_info.maxImageSize));
        QVERIFY(c.chips()[0].tokens < imageTokenCount(40, 24, m_info.patchSize, m_info.maxImageSize));
      }
      QVERIFY2(c.send(QStringLiteral("What colour?")), qPrintable(c.error()));
      QVERIFY(waitIdle(c));
      QCOMPARE(c.messages().last().state, MessageState::Complete);
      const Attachment a = c.messages().first().attachments.value(0);
      const QSize expected = scaled ? QSize(20, 12) : QSize(40, 24);
      QCOMPARE(a.resolution, expected);
      QImage stored;
      QVERIFY(stored.loadFromData(a.imageData));
      QCOMPARE(stored.size(), expected);
      promptTokens[scaled] = c.messages().last().timings.value(QStringLiteral("prompt_tokens")).toInt();
    }
    QCOMPARE(promptTokens[0] - promptTokens[1], imageTokenCount(40, 24, m_info.patchSize, m_info.maxImageSize) -
                                                    imageTokenCount(20, 12, m_info.patchSize, m_info.maxImageSize));
  }

  void pageChipRendersOffThreadAndStopGivesItBack() {
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult doc = DocumentLoader().load(pdf);
    QVERIFY2(doc.ok(), qPrintable(doc.message));
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 3);
    // Stopped while the page renders: no message is written, the chip comes back.
    c.addPageChip(doc.document, 1);
    QVERIFY(c.send(QStringLiteral("What is on this page?")));
    QVERIFY(c.isGenerating());
    QVERIFY(c.chips().isEmpty());
    c.stop();
    QVERIFY(waitIdle(c));
    QCOMPARE(c.chips().size(), 1);
    QVERIFY(c.messages().isEmpty());
    QVERIFY(store.conversations().isEmpty());
    // Sent for real: the rendered page goes along at the size the chip announced.
    const QSize announced = c.chips()[0].resolution;
    QVERIFY(c.send(QStringLiteral("What is on this page?")));
    QVERIFY(waitIdle(c));
    QCOMPARE(c.messages().size(), 2);
    const Attachment a = c.messages().first().attachments.value(0);
    QCOMPARE(a.kind, AttachmentKind::Page);
    QCOMPARE(a.page, 1);
    QVERIFY2(qAbs(a.resolution.width() - announced.width()) <= 1 && qAbs(a.resolution.height() - announced.height()) <= 1,
             qPrintable(QStringLiteral("%1x%2 vs %3x%4").arg(a.resolution.width()).arg(a.resolution.height())
                            .arg(announced.width()).arg(announced.height())));
    QCOMPARE(c.messages().last().state, MessageState::Complete);
  }

  // The page's text layer goes to the engine as text: the same page and question cost the engine more prompt
  // tokens with it than without, and the stored question carries the text.
  void pageTextLayerReachesTheEngine() {
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const QStringList words = test::pdfWords(pdf, 1, &why);
    if (words.size() < 3) QSKIP(qPrintable(QStringLiteral("page 1 has no words: ") + why));
    const LoadResult doc = DocumentLoader().load(pdf);
    QVERIFY2(doc.ok(), qPrintable(doc.message));
    auto promptTokens = [&](bool withText, QString* sentText) -> int {
      ConversationStore store;
      if (!store.open(newDbPath())) return -1;
      ChatController c(&store, m_thread->worker());
      configure(c, 2);
      c.addPageChip(doc.document, 0);
      c.setChipMaxSide(0, 64);  // a small image: the text dominates
      c.setChipIncludeText(0, withText);
      if (!c.send(QStringLiteral("What does it say?")) || !waitIdle(c) || c.messages().size() != 2) return -1;
      *sentText = c.messages()[0].attachments.value(0).pageText;
      return c.messages()[1].timings.value(QStringLiteral("prompt_tokens")).toInt();
    };
    QString none, text;
    const int without = promptTokens(false, &none);
    const int with = promptTokens(true, &text);
    QVERIFY(without > 0);
    QVERIFY(none.isEmpty());
    for (const QString& w : words.mid(0, 3)) QVERIFY2(text.contains(w), qPrintable(w));
    QVERIFY2(with > without + 3, qPrintable(QStringLiteral("%1 vs %2").arg(with).arg(without)));
  }

  void systemPromptAndSamplingStayWithTheConversation() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, m_thread->worker());
    configure(c, 3);
    QVERIFY(c.setSystemPrompt(QStringLiteral("Answer in French.")));
    pixtral::GenerateParams p = c.generateParams();
    p.temperature = 0.9f;
    p.top_k = 5;
    p.seed = 42;
    c.setGenerateParams(p);
    QVERIFY(c.send(question()));
    QVERIFY(waitIdle(c));
    const qint64 id = c.conversationId();
    QCOMPARE(store.conversation(id)->systemPrompt, QStringLiteral("Answer in French."));
    // The system prompt went to the engine: the prompt is longer than the same question without it.
    const int withSystem = c.messages().last().timings.value(QStringLiteral("prompt_tokens")).toInt();
    QVERIFY2(withSystem > int(m_case.promptTokens.size()), qPrintable(QString::number(withSystem)));
    c.newConversation();
    QVERIFY(c.systemPrompt().isEmpty());
    c.setGenerateParams({});
    QVERIFY(c.openConversation(id));
    QCOMPARE(c.systemPrompt(), QStringLiteral("Answer in French."));
    QCOMPARE(c.generateParams().top_k, 5);
    QCOMPARE(c.generateParams().seed, std::uint64_t(42));
    QCOMPARE(c.generateParams().temperature, 0.9f);
  }

  void noModelRefusesWithAMessage() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, nullptr);
    QVERIFY(!c.send(QStringLiteral("hello")));
    QVERIFY(c.error().contains(QStringLiteral("Settings")));
  }

  // Conversation list -----------------------------------------------------------------------------------------
  void conversationListRenameDeleteUndoSearch() {
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    const auto a = store.createConversation(QStringLiteral("Alpha"));
    const auto b = store.createConversation(QStringLiteral("Beta"));
    QVERIFY(a && b);
    QVERIFY(store.addUserMessage(*a, 0, QStringLiteral("the zebra crossing")));
    QVERIFY(store.addUserMessage(*b, 0, QStringLiteral("an elephant")));
    ConversationListModel list(&store);
    QAbstractItemModelTester tester(&list, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(list.rowCount(), 2);
    const int rowA = list.rowOf(*a);
    QVERIFY(list.setData(list.index(rowA), QStringLiteral("Zebras")));
    QCOMPARE(store.conversation(*a)->title, QStringLiteral("Zebras"));
    QVERIFY(!list.setData(list.index(rowA), QStringLiteral("   ")));  // an empty title is refused

    QVERIFY(list.remove(list.rowOf(*b)));
    QCOMPARE(list.rowCount(), 1);
    QCOMPARE(store.conversations().size(), 1);
    QVERIFY(list.canUndoDelete());
    QVERIFY(list.undoDelete());
    QCOMPARE(list.rowCount(), 2);
    QVERIFY(list.rowOf(*b) >= 0);
    QCOMPARE(store.activePath(*b).size(), 1);  // its messages came back with it
  }

  void conversationListSearch() {
    // Regression: the store's hit type was once also named quire::SearchHit, like the viewer's text-search hit (an
    // ODR clash that corrupted the heap in binaries linking both); it is ConversationHit now.
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    const auto a = store.createConversation(QStringLiteral("Zebras"));
    const auto b = store.createConversation(QStringLiteral("Beta"));
    QVERIFY(a && b);
    QVERIFY(store.addUserMessage(*a, 0, QStringLiteral("the zebra crossing")));
    QVERIFY(store.addUserMessage(*b, 0, QStringLiteral("an elephant")));
    ConversationListModel list(&store);
    QAbstractItemModelTester tester(&list, QAbstractItemModelTester::FailureReportingMode::QtTest);
    list.setFilter(QStringLiteral("zebr"));
    QCOMPARE(list.rowCount(), 1);
    QCOMPARE(list.idAt(0), *a);
    QVERIFY(list.index(0).data(ConversationListModel::SnippetRole).toString().contains(QStringLiteral("zebra")));
    list.setFilter({});
    QCOMPARE(list.rowCount(), 2);

  }
};

QTEST_MAIN(TestChatController)
#include "tst_chat_controller.moc"
