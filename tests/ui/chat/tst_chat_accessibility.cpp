// SPDX-License-Identifier: GPL-3.0-or-later
// Every interactive control of the main window with the chat attached has an accessible name: the chat panel
// with an open conversation (messages with Copy/Edit and version arrows, attachment chips, context chips), the
// conversation list and its search, the document tabs and the viewer. Offscreen, no model needed.
#include "chat/chat_controller.h"
#include "main_window.h"
#include "storage/conversation_store.h"
#include "test_pdfs.h"
#include "viewer/document_tab.h"
#include "viewer/page_view.h"

#include <QAbstractButton>
#include <QAbstractItemView>
#include <QAbstractSlider>
#include <QAbstractSpinBox>
#include <QComboBox>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QTabBar>
#include <QTemporaryDir>
#include <QTextEdit>
#include <QtTest>

using namespace quire;

class TestChatAccessibility : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_accessibility"));
  }

  void everyControlOfTheChatWindowHasAnAccessibleName() {
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    ConversationStore store;
    QVERIFY(store.open(m_dir.filePath(QStringLiteral("a.sqlite"))));
    const qint64 conv = *store.createConversation(QStringLiteral("Named"));
    Attachment a;
    a.kind = AttachmentKind::Region;
    a.documentPath = QFileInfo(pdf).absoluteFilePath();
    a.page = 1;
    a.region = QRectF(0.1, 0.1, 0.5, 0.5);
    a.resolution = QSize(100, 100);
    const auto q = store.addUserMessage(conv, 0, QStringLiteral("What is this?"), {a});
    QVERIFY(q);
    for (const QString& text : {QStringLiteral("A first answer."), QStringLiteral("A second answer.")}) {
      const auto answer = store.beginAssistantMessage(conv, *q, QStringLiteral("m"));
      QVERIFY(answer);
      QVERIFY(store.appendToAssistantMessage(*answer, text, {}));
      QVERIFY(store.finishAssistantMessage(*answer, MessageState::Complete));
    }
    ChatController controller(&store, nullptr);
    MainWindow window;
    window.setErrorDialogsEnabled(false);
    window.setChatController(&controller);
    window.resize(1300, 800);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    window.openFiles({pdf});
    QTRY_COMPARE_WITH_TIMEOUT(window.documentCount(), 1, 30000);
    QVERIFY(controller.openConversation(conv));
    controller.addPageChip(window.currentTab()->document(), 0);
    window.currentTab()->showFindBar();
    QTRY_COMPARE(controller.attachmentChecker()->pendingCount(), 0);
    QCoreApplication::processEvents();

    QStringList unnamed;
    int controls = 0;
    for (QWidget* w : window.findChildren<QWidget*>()) {
      const bool control = qobject_cast<QAbstractButton*>(w) || qobject_cast<QLineEdit*>(w) ||
                           qobject_cast<QAbstractItemView*>(w) || qobject_cast<QTabBar*>(w) ||
                           qobject_cast<QAbstractSpinBox*>(w) || qobject_cast<QComboBox*>(w) ||
                           qobject_cast<QAbstractSlider*>(w) || qobject_cast<QTextEdit*>(w) ||
                           qobject_cast<QPlainTextEdit*>(w) || qobject_cast<PageView*>(w);
      // Qt's own sub-controls (a line edit's clear button, a tab's close button, a scroll area's bars, a dock's
      // title buttons) are named by Qt's accessibility layer.
      if (!control || !w->isVisible() || w->inherits("QLineEditIconButton") || w->inherits("CloseButton") ||
          w->inherits("QDockWidgetTitleButton") || qobject_cast<QAbstractSlider*>(w))
        continue;
      ++controls;
      if (w->accessibleName().isEmpty()) {
        const auto* b = qobject_cast<QAbstractButton*>(w);
        unnamed << QStringLiteral("%1 '%2' %3").arg(QString::fromLatin1(w->metaObject()->className()), w->objectName(),
                                                  b ? b->text() : QString());
      }
    }
    QVERIFY2(controls > 15, qPrintable(QString::number(controls)));
    QVERIFY2(unnamed.isEmpty(), qPrintable(unnamed.join(QStringLiteral(", "))));
  }
};

QTEST_MAIN(TestChatAccessibility)
#include "tst_chat_accessibility.moc"
