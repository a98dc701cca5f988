// SPDX-License-Identifier: GPL-3.0-or-later
// Settings ▸ Model validates the folder (OK only for a loadable layout; the message names what is missing) and
// remembers it; the conversation sidebar: Ctrl+K-focused search field filters, Delete removes, Undo restores;
// a page chip's resolution menu changes its resolution and token cost.
#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/chip_rows.h"
#include "chat/conversation_list_model.h"
#include "chat/conversation_sidebar.h"
#include "dialogs/model_dialog.h"
#include "inference/model_folder.h"
#include "store_helper.h"
#include "test_pdfs.h"
#include "documents/document_loader.h"

#include <QDialogButtonBox>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMenu>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QToolButton>
#include <QtTest>

using namespace quire;

class TestChatDialogs : public QObject {
  Q_OBJECT
  QTemporaryDir m_dir;

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_dialogs"));
    QSettings().clear();
  }

  void modelDialogValidatesAndRemembers() {
    ModelDialog d;
    QPushButton* ok = d.findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok);
    QVERIFY(!ok->isEnabled());
    d.setFolder(m_dir.path());  // an empty folder
    QVERIFY(!d.isValid());
    QVERIFY(!ok->isEnabled());
    QCOMPARE(d.statusLabel()->text(), checkModelFolder(m_dir.path()).message);
    QVERIFY(d.statusLabel()->text().contains(QStringLiteral("params.json")) ||
            d.statusLabel()->text().contains(QStringLiteral("safetensors")));
    const QString tiny = QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/native");
    if (!QFileInfo::exists(tiny)) QSKIP("tiny fixture model not found");
    d.setFolder(tiny);
    QVERIFY(d.isValid());
    QVERIFY(ok->isEnabled());
    d.accept();
    QCOMPARE(d.result(), int(QDialog::Accepted));
    QCOMPARE(QDir(savedModelFolder()).canonicalPath(), QDir(tiny).canonicalPath());
  }

  void sidebarSearchDeleteUndo() {
    auto store = test::openStore(m_dir.filePath(QStringLiteral("side.sqlite")));
    QVERIFY(store);
    ChatController c(store.get(), nullptr);
    ConversationSidebar side(&c);
    side.show();
    side.activateWindow();
    QVERIFY(QTest::qWaitForWindowActive(&side));
    QCOMPARE(side.model()->rowCount(), 0);
    // Conversations made through the model's store (the controller needs a model to create one by sending).
    ConversationListModel* m = side.model();
    QVERIFY(test::createConversation(*store, QStringLiteral("First")));
    QVERIFY(test::createConversation(*store, QStringLiteral("Second")));
    m->refresh();
    QCOMPARE(m->rowCount(), 2);
    side.list()->setCurrentIndex(m->index(0));
    side.list()->setFocus();
    QTest::keyClick(side.list(), Qt::Key_Delete);
    QCOMPARE(m->rowCount(), 1);
    QPushButton* undo = nullptr;
    for (auto* b : side.findChildren<QPushButton*>())
      if (b->text().contains(QStringLiteral("Undo"))) undo = b;
    QVERIFY(undo && undo->isEnabled());
    QTest::mouseClick(undo, Qt::LeftButton);
    QCOMPARE(m->rowCount(), 2);
    QVERIFY(!undo->isEnabled());
    side.focusSearch();
    QVERIFY(side.searchField()->hasFocus());
    QTest::keyClicks(side.searchField(), QStringLiteral("Seco"));
    QCOMPARE(side.searchField()->text(), QStringLiteral("Seco"));
    QCOMPARE(m->filter(), QStringLiteral("Seco"));
  }

  void pageChipResolutionMenu() {
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    DocumentLoader loader;
    LoadResult r = loader.load(pdf);
    QVERIFY2(r.ok(), qPrintable(r.message));
    auto store = test::openStore(m_dir.filePath(QStringLiteral("chips.sqlite")));
    ChatController c(store.get(), nullptr);
    ChatPanel panel(&c);
    c.addPageChip(r.document, 0);
    const int before = c.chips()[0].tokens;
    QCOMPARE(std::max(c.chips()[0].resolution.width(), c.chips()[0].resolution.height()), 1024);
    auto chips = panel.chipsRow()->chipButtons();
    QCOMPARE(chips.size(), 1);
    QVERIFY(chips[0]->menu());
    QAction* half = nullptr;
    for (QAction* a : chips[0]->menu()->actions())
      if (a->text().contains(QStringLiteral("512"))) half = a;
    QVERIFY(half);
    half->trigger();
    QTRY_COMPARE(std::max(c.chips()[0].resolution.width(), c.chips()[0].resolution.height()), 512);
    QVERIFY(c.chips()[0].tokens < before);
    QCOMPARE(c.chips()[0].tokens, imageTokenCount(c.chips()[0].resolution.width(), c.chips()[0].resolution.height()));
  }
};

QTEST_MAIN(TestChatDialogs)
#include "tst_chat_dialogs.moc"
