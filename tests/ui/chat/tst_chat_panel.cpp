// SPDX-License-Identifier: GPL-3.0-or-later
// ChatPanel widgets offscreen: the prompt box (Enter sends, Shift+Enter is a newline, nothing is sent during
// IME composition), the chips row (add/remove, resolution and token cost, total vs the context), the no-model
// notice, and accessible names on every control.
#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/chip_rows.h"
#include "chat/prompt_box.h"
#include "chat/sampling_dialog.h"
#include "inference/inference_worker.h"
#include "storage/conversation_store.h"

#include <QAbstractButton>
#include <QAction>
#include <QCheckBox>
#include <QClipboard>
#include <QTextBlock>
#include <QTextBrowser>
#include <QTextList>
#include <QTextTable>
#include <QDoubleSpinBox>
#include <QSpinBox>
#include <QInputMethodEvent>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QToolButton>
#include <QtTest>

using namespace quire;

class TestChatPanel : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void enterSendsShiftEnterMakesANewline() {
    PromptBox box;
    box.show();
    QSignalSpy sent(&box, &PromptBox::submitted);
    QTest::keyClicks(&box, QStringLiteral("first line"));
    QTest::keyClick(&box, Qt::Key_Return, Qt::ShiftModifier);
    QTest::keyClicks(&box, QStringLiteral("second"));
    QCOMPARE(sent.count(), 0);
    QCOMPARE(box.toPlainText(), QStringLiteral("first line\nsecond"));
    QTest::keyClick(&box, Qt::Key_Return);
    QCOMPARE(sent.count(), 1);
    QCOMPARE(sent.first().first().toString(), QStringLiteral("first line\nsecond"));
    QTest::keyClick(&box, Qt::Key_Enter, Qt::KeypadModifier);  // the keypad's Enter sends too
    QCOMPARE(sent.count(), 2);
  }

  void enterDuringImeCompositionDoesNotSend() {
    PromptBox box;
    box.show();
    QSignalSpy sent(&box, &PromptBox::submitted);
    QInputMethodEvent preedit(QStringLiteral("にほ"), {});
    QApplication::sendEvent(&box, &preedit);
    QVERIFY(box.isComposing());
    QTest::keyClick(&box, Qt::Key_Return);
    QCOMPARE(sent.count(), 0);
    QInputMethodEvent commit;
    commit.setCommitString(QStringLiteral("日本"));
    QApplication::sendEvent(&box, &commit);
    QVERIFY(!box.isComposing());
    QCOMPARE(box.toPlainText(), QStringLiteral("日本"));
    QTest::keyClick(&box, Qt::Key_Return);
    QCOMPARE(sent.count(), 1);
    QCOMPARE(sent.first().first().toString(), QStringLiteral("日本"));
  }

  void chipsRowShowsCostsAndRemoves() {
    QTemporaryDir dir;
    ConversationStore store;
    QVERIFY(store.open(dir.filePath(QStringLiteral("c.sqlite"))));
    ChatController c(&store, nullptr);
    c.setContextLength(100);
    ChatPanel panel(&c);
    panel.show();
    c.addImageChip(QImage(64, 32, QImage::Format_RGB32), QStringLiteral("wide.png"));
    c.addImageChip(QImage(2000, 3000, QImage::Format_RGB32), QStringLiteral("huge.png"));
    QList<QToolButton*> chips = panel.chipsRow()->chipButtons();
    QCOMPARE(chips.size(), 2);
    QCOMPARE(panel.chipsRow()->removeButtons().size(), 2);
    QVERIFY(chips[0]->text().contains(QStringLiteral("wide.png")));
    QVERIFY(chips[0]->text().contains(QStringLiteral("64×32")));
    QVERIFY(chips[0]->text().contains(QString::number(c.chips()[0].tokens)));
    QVERIFY(panel.totalLabel()->text().contains(QStringLiteral("/ 100")));
    QVERIFY(panel.totalLabel()->text().startsWith(QString::number(c.estimatedPromptTokens({}))));
    QVERIFY(!panel.totalLabel()->styleSheet().isEmpty());  // over the context: shown in red
    QSignalSpy shown(&panel, &ChatPanel::contextChipActivated);
    QTest::mouseClick(chips[1], Qt::LeftButton);  // the chip itself shows what it refers to
    QCOMPARE(shown.count(), 1);
    QCOMPARE(shown.first().first().toInt(), 1);
    QCOMPARE(c.chips().size(), 2);
    QTest::mouseClick(panel.chipsRow()->removeButtons()[1], Qt::LeftButton);  // × removes it
    QTRY_COMPARE(c.chips().size(), 1);
    QCOMPARE(c.chips()[0].label, QStringLiteral("wide.png"));
    QTRY_COMPARE(panel.chipsRow()->chipButtons().size(), 1);
  }

  // An image chip's arrow menu sets its resolution like a page's: its own size, or a smaller longest side (never
  // larger than the image); the chip's size and token cost follow.
  void imageChipResolutionFromItsMenu() {
    ChatController c(nullptr, nullptr);
    ChatPanel panel(&c);
    panel.show();
    c.addImageChip(QImage(2000, 1000, QImage::Format_RGB32), QStringLiteral("wide.png"));
    const int full = imageTokenCount(2000, 1000, c.patchSize(), c.maxImageSize());
    QCOMPARE(c.chips()[0].tokens, full);
    QToolButton* chip = panel.chipsRow()->chipButtons().value(0);
    QVERIFY(chip && chip->menu());
    QStringList sides;
    for (QAction* a : chip->menu()->actions())
      if (a->objectName().startsWith(QLatin1String("side"))) sides << a->objectName();
    QCOMPARE(sides, (QStringList{QStringLiteral("side%1").arg(c.maxImageSize()), QStringLiteral("side768"),
                                 QStringLiteral("side512"), QStringLiteral("side384"), QStringLiteral("side256")}));
    QVERIFY(chip->menu()->findChild<QAction*>(QStringLiteral("side%1").arg(c.maxImageSize()))->isChecked());
    QVERIFY(!chip->menu()->findChild<QAction*>(QStringLiteral("includeText")));  // an image has no text layer
    chip->menu()->findChild<QAction*>(QStringLiteral("side512"))->trigger();
    QTRY_COMPARE(c.chips()[0].resolution, QSize(512, 256));
    QCOMPARE(c.chips()[0].tokens, imageTokenCount(512, 256, c.patchSize(), c.maxImageSize()));
    QVERIFY(c.chips()[0].tokens < full);
    chip = panel.chipsRow()->chipButtons().value(0);
    QTRY_VERIFY(chip->text().contains(QStringLiteral("512×256")));
    QVERIFY(chip->text().contains(QString::number(c.chips()[0].tokens)));
    QVERIFY(chip->menu()->findChild<QAction*>(QStringLiteral("side512"))->isChecked());
    QVERIFY(panel.totalLabel()->text().startsWith(QString::number(c.estimatedPromptTokens({}))));
    // Back to its own size.
    chip->menu()->findChild<QAction*>(QStringLiteral("side%1").arg(c.maxImageSize()))->trigger();
    QTRY_COMPARE(c.chips()[0].resolution, QSize(2000, 1000));
    QCOMPARE(c.chips()[0].tokens, full);
    // A small image offers only sides below its own.
    c.addImageChip(QImage(300, 200, QImage::Format_RGB32), QStringLiteral("small.png"));
    QStringList small;
    for (QAction* a : panel.chipsRow()->chipButtons().value(1)->menu()->actions())
      if (a->objectName().startsWith(QLatin1String("side"))) small << a->objectName();
    QCOMPARE(small, (QStringList{QStringLiteral("side%1").arg(c.maxImageSize()), QStringLiteral("side256")}));
  }

  void withoutAModelThePanelExplainsAndOffersSettings() {
    QTemporaryDir dir;
    ConversationStore store;
    QVERIFY(store.open(dir.filePath(QStringLiteral("c.sqlite"))));
    ChatController c(&store, nullptr);
    ChatPanel panel(&c);
    panel.show();
    QVERIFY(!panel.sendButton()->isEnabled());
    QAbstractButton* settings = nullptr;
    for (auto* b : panel.findChildren<QAbstractButton*>())
      if (b->text().contains(QStringLiteral("Settings"))) settings = b;
    QVERIFY(settings && settings->isVisible());
    bool mentions = false;
    for (auto* l : panel.findChildren<QLabel*>()) mentions = mentions || l->text().contains(QStringLiteral("Pixtral-12B-2409"));
    QVERIFY(mentions);
    QSignalSpy asked(&panel, &ChatPanel::modelSettingsRequested);
    QTest::mouseClick(settings, Qt::LeftButton);
    QCOMPARE(asked.count(), 1);
    ModelLoadInfo info;
    info.maxImageSize = 1024;
    c.setModelInfo(info);
    QVERIFY(!settings->isVisible());
    QVERIFY(panel.sendButton()->isEnabled());
  }

  void everyControlHasAnAccessibleName() {
    QTemporaryDir dir;
    ConversationStore store;
    QVERIFY(store.open(dir.filePath(QStringLiteral("c.sqlite"))));
    ChatController c(&store, nullptr);
    c.addImageChip(QImage(8, 8, QImage::Format_RGB32), QStringLiteral("x.png"));
    ChatPanel panel(&c);
    for (auto* b : panel.findChildren<QAbstractButton*>())
      QVERIFY2(!b->accessibleName().isEmpty(), qPrintable(b->text()));
    QVERIFY(!panel.promptBox()->accessibleName().isEmpty());
    for (auto* e : panel.findChildren<QLineEdit*>()) QVERIFY(!e->accessibleName().isEmpty());
    QVERIFY(panel.attachButton() && !panel.attachButton()->accessibleName().isEmpty());
    QVERIFY(panel.includeTextBox() && !panel.includeTextBox()->accessibleName().isEmpty());
  }

  void modelLoadShowsProgressAndCancel() {
    QTemporaryDir dir;
    ConversationStore store;
    QVERIFY(store.open(dir.filePath(QStringLiteral("c.sqlite"))));
    InferenceWorker worker;  // not on a thread: its signals are emitted here by hand
    ChatController c(&store, &worker);
    ChatPanel panel(&c);
    panel.show();
    auto* row = panel.findChild<QWidget*>(QStringLiteral("modelLoad"));
    QVERIFY(row && !row->isVisible());
    emit worker.modelLoadProgress(0.25, QStringLiteral("mapping weights"));
    QVERIFY(row->isVisible());
    auto* bar = row->findChild<QProgressBar*>();
    QCOMPARE(bar->value(), 250);
    QVERIFY(bar->text().contains(QStringLiteral("mapping weights")));
    ModelLoadInfo info;
    info.device = QStringLiteral("CPU (2 threads)");
    info.precision = QStringLiteral("bf16");
    info.backend = QStringLiteral("cpu");
    info.maxImageSize = 1024;
    info.weightBytes = 24'000'000'000;      // the checkpoint as stored (bf16)
    info.loadedWeightBytes = 6'500'000'000;  // as loaded: what the memory holds
    info.precision = QStringLiteral("int4");
    info.kvBytesPerToken = 100'000;
    emit worker.modelLoaded(info);
    QVERIFY(!row->isVisible());
    // Device, precision and memory in use stay shown (the answer speed has its own label).
    QLabel* model = panel.modelInfoLabel();
    QVERIFY(model->isVisible());
    QVERIFY(model->text().contains(QStringLiteral("CPU (2 threads)")));
    QVERIFY(model->text().contains(QStringLiteral("int4")));
    QVERIFY2(model->text().contains(QStringLiteral("6.5 GB")), qPrintable(model->text()));
    const QString kv = QString::number(double(info.kvCacheBytes(c.contextLength())) / 1e9, 'f', 2);
    QVERIFY2(model->text().contains(kv + QStringLiteral(" GB")), qPrintable(model->text()));
    emit c.statsChanged(120, 30);
    QVERIFY(panel.statsLabel()->text().contains(QStringLiteral("tokens/s")));
    QVERIFY(model->text().contains(QStringLiteral("CPU (2 threads)")));
    c.setContextLength(4096);
    QVERIFY2(model->text().contains(QStringLiteral("(4096 tokens)")), qPrintable(model->text()));
    QVERIFY(panel.sendButton()->isEnabled());
  }

  void systemPromptFieldSetsTheConversationsPrompt() {
    QTemporaryDir dir;
    ConversationStore store;
    QVERIFY(store.open(dir.filePath(QStringLiteral("c.sqlite"))));
    const auto id = store.createConversation(QStringLiteral("t"), QStringLiteral("Be brief."));
    QVERIFY(id);
    ChatController c(&store, nullptr);
    ChatPanel panel(&c);
    auto* field = panel.findChild<QLineEdit*>(QStringLiteral("systemPrompt"));
    QVERIFY(field);
    c.openConversation(*id);
    QCOMPARE(field->text(), QStringLiteral("Be brief."));
    field->setText(QStringLiteral("Be thorough."));
    emit field->editingFinished();
    QCOMPARE(store.conversation(*id)->systemPrompt, QStringLiteral("Be thorough."));
  }

  void samplingSettingsFromTheirDialog() {
    QTemporaryDir dir;
    ConversationStore store;
    QVERIFY(store.open(dir.filePath(QStringLiteral("c.sqlite"))));
    const auto id = store.createConversation(QStringLiteral("t"));
    QVERIFY(id);
    ChatController c(&store, nullptr);
    ChatPanel panel(&c);
    panel.show();
    QVERIFY(c.openConversation(*id));
    const pixtral::GenerateParams defaults;
    QVERIFY(panel.samplingButton() && !panel.samplingButton()->accessibleName().isEmpty());

    // The dialog starts from the conversation's values (the engine's defaults); accepted, they are applied and
    // kept with the conversation.
    QTest::mouseClick(panel.samplingButton(), Qt::LeftButton);
    auto* dialog = panel.findChild<SamplingDialog*>();
    QVERIFY(dialog && dialog->isVisible());
    for (QWidget* w : dialog->findChildren<QWidget*>())
      if (qobject_cast<QAbstractButton*>(w) || qobject_cast<QAbstractSpinBox*>(w))
        QVERIFY2(!w->accessibleName().isEmpty(), w->metaObject()->className());
    QCOMPARE(float(dialog->temperatureBox()->value()), defaults.temperature);
    QCOMPARE(dialog->maxTokensBox()->value(), defaults.max_tokens);
    dialog->temperatureBox()->setValue(0.0);
    dialog->topPBox()->setValue(0.5);
    dialog->topKBox()->setValue(40);
    dialog->maxTokensBox()->setValue(77);
    dialog->seedBox()->setValue(12345);
    dialog->accept();
    QCOMPARE(c.generateParams().temperature, 0.0f);
    QCOMPARE(c.generateParams().top_p, 0.5f);
    QCOMPARE(c.generateParams().top_k, 40);
    QCOMPARE(c.generateParams().max_tokens, 77);
    QCOMPARE(c.generateParams().seed, std::uint64_t(12345));
    const QJsonObject stored = store.conversation(*id)->sampling;
    QCOMPARE(stored.value(QStringLiteral("max_tokens")).toInt(), 77);
    QCOMPARE(stored.value(QStringLiteral("top_k")).toInt(), 40);
    QTRY_VERIFY(!panel.findChild<SamplingDialog*>());  // deleted on close

    // Engine Defaults fills the engine's values; Cancel keeps the conversation's.
    QTest::mouseClick(panel.samplingButton(), Qt::LeftButton);
    dialog = panel.findChild<SamplingDialog*>();
    QVERIFY(dialog);
    QCOMPARE(dialog->maxTokensBox()->value(), 77);
    auto* reset = dialog->findChild<QPushButton*>(QStringLiteral("samplingDefaults"));
    QVERIFY(reset);
    QTest::mouseClick(reset, Qt::LeftButton);
    QCOMPARE(dialog->params().max_tokens, defaults.max_tokens);
    QCOMPARE(dialog->params().top_k, defaults.top_k);
    QCOMPARE(float(dialog->params().temperature), defaults.temperature);
    dialog->reject();
    QCOMPARE(c.generateParams().max_tokens, 77);

    // A seed beyond the box's range survives the dialog untouched.
    pixtral::GenerateParams big;
    big.seed = 1ull << 40;
    SamplingDialog bigDialog(big);
    QCOMPARE(bigDialog.params().seed, big.seed);
  }

  void markdownStreamingCopyAndVersions() {
    QTemporaryDir dir;
    ConversationStore store;
    QVERIFY(store.open(dir.filePath(QStringLiteral("c.sqlite"))));
    const QString answer = QStringLiteral(
        "First paragraph.\n\nSecond paragraph.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "```\nint main() { return 0; }\n```\n");
    const qint64 conv = *store.createConversation(QStringLiteral("md"));
    const auto q = store.addUserMessage(conv, 0, QStringLiteral("Show me Markdown"));
    QVERIFY(q);
    for (const QString& text : {QStringLiteral("An earlier answer."), answer}) {
      const auto a = store.beginAssistantMessage(conv, *q, QStringLiteral("m"));
      QVERIFY(a);
      QVERIFY(store.appendToAssistantMessage(*a, text, {}));
      QVERIFY(store.finishAssistantMessage(*a, MessageState::Complete));
    }
    const qint64 streaming = *store.createConversation(QStringLiteral("streaming"));
    const auto q2 = store.addUserMessage(streaming, 0, QStringLiteral("Go on"));
    const auto a2 = store.beginAssistantMessage(streaming, *q2, QStringLiteral("m"));
    QVERIFY(a2 && store.appendToAssistantMessage(*a2, QStringLiteral("Hello"), {}) && store.flushAssistantMessage(*a2));

    ChatController c(&store, nullptr);
    ChatPanel panel(&c);
    panel.resize(600, 800);
    panel.show();
    QVERIFY(c.openConversation(conv));
    QCOMPARE(panel.messageViewCount(), 2);

    // Rendered as Markdown: paragraphs, a list, a table, a code block.
    QTextDocument* doc = panel.messageBrowser(1)->document();
    const QString plain = doc->toPlainText();
    QVERIFY2(plain.contains(QStringLiteral("First paragraph.")) && !plain.contains(QStringLiteral("|---|")) &&
                 !plain.contains(QStringLiteral("```")),
             qPrintable(plain));
    bool list = false, table = false, code = false;
    for (QTextBlock b = doc->begin(); b.isValid(); b = b.next()) {
      list = list || b.textList();
      table = table || QTextCursor(b).currentTable();
      if (b.text().contains(QStringLiteral("int main")))
        code = b.blockFormat().hasProperty(QTextFormat::BlockCodeFence) || QTextCursor(b).charFormat().fontFixedPitch();
    }
    QVERIFY(list);
    QVERIFY(table);
    QVERIFY(code);

    // Copy puts the message's own text (the Markdown source) on the clipboard.
    QToolButton* copy = nullptr;
    for (auto* b : panel.messageBrowser(1)->parentWidget()->findChildren<QToolButton*>())
      if (b->text() == QStringLiteral("Copy")) copy = b;
    QVERIFY(copy);
    QTest::mouseClick(copy, Qt::LeftButton);
    QCOMPARE(QApplication::clipboard()->text(), answer);

    // The earlier answer is a version away.
    auto* prev = panel.messageBrowser(1)->parentWidget()->findChild<QToolButton*>(QStringLiteral("prev"));
    QVERIFY(prev);
    QCOMPARE(c.siblingCount(1), 2);
    QTRY_VERIFY(prev->isVisible());  // new frames are shown by their layout, queued
    QTest::mouseClick(prev, Qt::LeftButton);
    QCOMPARE(c.siblingIndex(1), 0);
    QCOMPARE(panel.messageBrowser(1)->toPlainText(), QStringLiteral("An earlier answer."));

    // Streaming re-renders only the streaming message: the question's document is not touched, no view rebuilt.
    QVERIFY(c.openConversation(streaming));
    QCOMPARE(panel.messageViewCount(), 2);
    QTextBrowser* question = panel.messageBrowser(0);
    QTextBrowser* streamed = panel.messageBrowser(1);
    const int questionRevision = question->document()->revision();
    emit c.messageUpdated(1, QStringLiteral(" **world**"));
    emit c.messageUpdated(1, QStringLiteral(", and more."));
    QCOMPARE(panel.messageBrowser(0), question);
    QCOMPARE(panel.messageBrowser(1), streamed);
    QCOMPARE(question->document()->revision(), questionRevision);
    QCOMPARE(streamed->toPlainText(), QStringLiteral("Hello world, and more."));
  }

  void readOnlyHistoryIsSaidAndNothingIsSent() {
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("c.sqlite"));
    qint64 conv = 0;
    {
      ConversationStore writable;
      QVERIFY(writable.open(path));
      conv = *writable.createConversation(QStringLiteral("old"));
      QVERIFY(writable.addUserMessage(conv, 0, QStringLiteral("An old question")));
    }
    ConversationStore store;
    QVERIFY(store.open(path, {true}));
    QVERIFY(store.isReadOnly());
    ChatController c(&store, nullptr);
    ModelLoadInfo info;
    info.maxImageSize = 1024;
    c.setModelInfo(info);
    ChatPanel panel(&c);
    panel.show();
    QVERIFY(panel.readOnlyNotice()->isVisible());
    QVERIFY2(panel.readOnlyNotice()->text().contains(store.readOnlyReason()), qPrintable(panel.readOnlyNotice()->text()));
    QVERIFY(!panel.readOnlyNotice()->accessibleName().isEmpty());
    QVERIFY(c.openConversation(conv));  // the history still reads
    QCOMPARE(panel.messageViewCount(), 1);
    QVERIFY(!panel.sendButton()->isEnabled());
    QVERIFY(!panel.regenerateButton()->isEnabled());

    // A writable history shows no notice and sends.
    ConversationStore other;
    QVERIFY(other.open(dir.filePath(QStringLiteral("w.sqlite"))));
    ChatController w(&other, nullptr);
    w.setModelInfo(info);
    ChatPanel writablePanel(&w);
    writablePanel.show();
    QVERIFY(!writablePanel.readOnlyNotice()->isVisible());
    QVERIFY(writablePanel.sendButton()->isEnabled());
  }
};

QTEST_MAIN(TestChatPanel)
#include "tst_chat_panel.moc"
