// SPDX-License-Identifier: GPL-3.0-or-later
// Chips that point back: a reopened conversation shows its attachments as chips; clicking one (old or of the
// next question) opens the document if needed and lands on the page with the region selected; a document that
// is missing, unreadable or changed leaves the conversation usable and its chip marked. Image chips from the
// Attach button, a drop on the panel and a paste into the prompt box, stored by content hash. The page text
// layer joins the sent message. Export/Import from the File menu and the list's context menu. Offscreen, no
// model needed (the whole loop with the tiny model is tst_chat_window).
#include "chat_window.h"
#include "chat/attachment_check.h"
#include "chat/chat_controller.h"
#include "chat/chat_panel.h"
#include "chat/chip_rows.h"
#include "chat/conversation_file_actions.h"
#include "chat/conversation_list_model.h"
#include "chat/conversation_sidebar.h"
#include "chat/prompt_box.h"
#include "chat/reference_navigator.h"
#include "documents/document_loader.h"
#include "main_window.h"
#include "storage/conversation_store.h"
#include "test_pdfs.h"
#include "viewer/document_tab.h"
#include "viewer/page_view.h"

#include <QBuffer>
#include <QCheckBox>
#include <QClipboard>
#include <QCryptographicHash>
#include <QDropEvent>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMenu>
#include <QMenuBar>
#include <QMimeData>
#include <QPushButton>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QSemaphore>
#include <QThread>
#include <QTimer>
#include <QToolButton>
#include <QtTest>

#include <atomic>
#include <memory>

using namespace quire;

namespace {

QByteArray png(const QImage& image) {
  QByteArray bytes;
  QBuffer buf(&bytes);
  buf.open(QIODevice::WriteOnly);
  image.save(&buf, "PNG");
  return bytes;
}

QImage filled(int w, int h, QColor color) {
  QImage img(w, h, QImage::Format_RGB32);
  img.fill(color);
  return img;
}

bool near(const QRectF& a, const QRectF& b) {
  return std::abs(a.x() - b.x()) < 1e-6 && std::abs(a.y() - b.y()) < 1e-6 && std::abs(a.width() - b.width()) < 1e-6 &&
         std::abs(a.height() - b.height()) < 1e-6;
}

}  // namespace

class TestChatReferences : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  QString m_pdf;
  int m_dbCount = 0;

  QString newDbPath() { return m_dir.filePath(QStringLiteral("refs-%1.sqlite").arg(++m_dbCount)); }

  Attachment pageAttachment(const QString& path, int page, const QString& hash, const QRectF& region = {}) {
    Attachment a;
    a.kind = region.isEmpty() ? AttachmentKind::Page : AttachmentKind::Region;
    a.documentPath = path;
    a.contentHash = hash;
    a.page = page;
    a.region = region;
    a.resolution = QSize(40, 30);
    a.imageData = png(filled(40, 30, Qt::red));
    a.imageMime = QStringLiteral("image/png");
    return a;
  }

  // A store, a controller without a model and a shown main window with the chat (tests/ui/chat/chat_window.h).
  using Window = test::ChatWindow;
  static std::unique_ptr<Window> makeWindow(const QString& db) { return test::makeChatWindow(db); }

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_chat_references"));
    QString why;
    m_pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (m_pdf.isEmpty()) QSKIP(qPrintable(why));
    m_pdf = QFileInfo(m_pdf).absoluteFilePath();
  }

  // 1. Reopening: chips restored, missing/unreadable/changed documents marked; clicking lands on the page. ----
  void reopenedConversationMarksMissingDocumentsAndLands() {
    const QString gone = m_dir.filePath(QStringLiteral("gone.pdf"));
    const QString changed = m_dir.filePath(QStringLiteral("changed.pdf"));
    const QString folder = m_dir.filePath(QStringLiteral("folder.pdf"));
    QVERIFY(QFile::copy(m_pdf, gone) && QFile::copy(m_pdf, changed));
    const QString pdfHash = fileContentHash(m_pdf);
    QVERIFY(!pdfHash.isEmpty());
    QCOMPARE(fileContentHash(changed), pdfHash);
    const QRectF region(0.1, 0.2, 0.5, 0.3);
    QList<Attachment> atts{pageAttachment(m_pdf, 1, pdfHash, region), pageAttachment(gone, 0, pdfHash),
                           pageAttachment(changed, 0, pdfHash), pageAttachment(folder, 0, pdfHash)};
    QVERIFY(QFile::remove(gone));
    {
      QFile f(changed);
      QVERIFY(f.open(QIODevice::Append));
      f.write("\n% edited after it was attached\n");
    }
    QVERIFY(QDir(m_dir.path()).mkdir(QStringLiteral("folder.pdf")));

    const QString db = newDbPath();
    qint64 id = 0;
    {
      ConversationStore store;
      QVERIFY(store.open(db));
      id = *store.createConversation(QStringLiteral("Old one"));
      QVERIFY(store.addUserMessage(id, 0, QStringLiteral("What is on these pages?"), atts));
    }
    auto w = makeWindow(db);
    QVERIFY(w);
    QVERIFY(w->controller->openConversation(id));  // opens despite the missing documents
    ChatPanel* panel = w->window->chatPanel();
    QCOMPARE(panel->messageViewCount(), 1);
    AttachmentChipsRow* row = panel->attachmentRow(0);
    QVERIFY(row);
    QTRY_VERIFY(row->isVisible());
    // The documents are checked on a worker thread; the chips are updated when each answer comes back.
    QTRY_COMPARE(w->controller->attachmentChecker()->pendingCount(), 0);
    const QList<QToolButton*> chips = row->buttons();
    QCOMPARE(chips.size(), 4);
    QVERIFY(!chips[0]->property("missing").toBool());
    QVERIFY(!chips[0]->text().contains(QStringLiteral("⚠")));
    QVERIFY(chips[0]->text().contains(QStringLiteral("region on page 2")));
    const QStringList what{QStringLiteral("no longer exists"), QStringLiteral("has changed"),
                           QStringLiteral("cannot be read")};
    const QStringList paths{gone, changed, folder};
    for (int i = 1; i < 4; ++i) {
      QVERIFY2(chips[i]->property("missing").toBool(), qPrintable(chips[i]->text()));
      QVERIFY(chips[i]->text().startsWith(QStringLiteral("⚠")));
      QVERIFY2(chips[i]->toolTip().contains(paths[i - 1]), qPrintable(chips[i]->toolTip()));
      QVERIFY2(chips[i]->toolTip().contains(what[i - 1]), qPrintable(chips[i]->toolTip()));
      QVERIFY(!chips[i]->accessibleName().isEmpty());
    }
    QCOMPARE(row->checks()[1].availability, AttachmentAvailability::Missing);
    QCOMPARE(row->checks()[2].availability, AttachmentAvailability::Changed);
    QCOMPARE(row->checks()[3].availability, AttachmentAvailability::Unreadable);

    // The good chip: the document is not open yet; it opens and lands on page 2 with the region selected.
    QCOMPARE(w->window->documentCount(), 0);
    QSignalSpy landed(w->window->referenceNavigator(), &ReferenceNavigator::landed);
    QTest::mouseClick(chips[0], Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(landed.count(), 1, 30000);
    QCOMPARE(w->window->documentCount(), 1);
    DocumentTab* tab = w->window->currentTab();
    QCOMPARE(tab->document()->path(), m_pdf);
    QTRY_COMPARE(tab->pageView()->currentPage(), 1);
    QCOMPARE(tab->pageView()->selectionPage(), 1);
    QVERIFY(near(tab->pageView()->selectionRect(), region));

    // The missing one: said in the status bar, the image the model was given shown instead; nothing crashes.
    QSignalSpy failed(w->window->referenceNavigator(), &ReferenceNavigator::failed);
    QTest::mouseClick(row->buttons()[1], Qt::LeftButton);
    QCOMPARE(failed.count(), 1);
    QVERIFY(failed.first().first().toString().contains(gone));
    QVERIFY(w->window->statusBar()->currentMessage().contains(QStringLiteral("no longer exists")));
    QTRY_COMPARE(w->window->documentCount(), 2);  // the stored model image, in a tab of its own
    // Unreadable: the same.
    QTest::mouseClick(row->buttons()[3], Qt::LeftButton);
    QCOMPARE(failed.count(), 2);
    QTRY_COMPARE(w->window->documentCount(), 3);
    // Changed: it still opens (with the warning), on its page.
    QTest::mouseClick(row->buttons()[2], Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(landed.count(), 2, 30000);
    QCOMPARE(w->window->currentTab()->document()->path(), QFileInfo(changed).absoluteFilePath());
    QVERIFY(w->window->statusBar()->currentMessage().contains(QStringLiteral("has changed")));
    // Clicking the first chip again goes back to the already open tab (no second tab).
    QTest::mouseClick(row->buttons()[0], Qt::LeftButton);
    QTRY_COMPARE(landed.count(), 3);
    QCOMPARE(w->window->documentCount(), 4);
    QCOMPARE(w->window->currentTab(), tab);
  }

  // 1b. The check of an old attachment never holds up the GUI thread: a 200 MB document and a hasher that
  //     blocks until released. The conversation opens at once, the event loop keeps turning, the chip says
  //     "checking…", and the verdict arrives afterwards. Switching conversations or closing everything while a
  //     check runs is safe.
  void openingDoesNotWaitForTheDocumentCheck() {
    const QString big = m_dir.filePath(QStringLiteral("big.pdf"));
    const QString big2 = m_dir.filePath(QStringLiteral("big2.pdf"));
    for (const QString& p : {big, big2}) {
      QFile f(p);
      QVERIFY(f.open(QIODevice::WriteOnly));
      QVERIFY(f.resize(200ll << 20));  // sparse: 200 MB to hash, no disk used
    }
    const QString recorded = QString(64, QLatin1Char('0'));  // not the file's hash: the verdict is "changed"
    const QString db = newDbPath();
    qint64 first = 0, second = 0;
    {
      ConversationStore store;
      QVERIFY(store.open(db));
      first = *store.createConversation(QStringLiteral("Big one"));
      QVERIFY(store.addUserMessage(first, 0, QStringLiteral("What is on page 1?"), {pageAttachment(big, 0, recorded)}));
      second = *store.createConversation(QStringLiteral("Another big one"));
      QVERIFY(store.addUserMessage(second, 0, QStringLiteral("And here?"), {pageAttachment(big2, 0, recorded)}));
    }
    auto w = makeWindow(db);
    QVERIFY(w);

    // The fake hasher: records its thread, waits for the test's go (10 s at most), then hashes for real.
    struct Gate {
      QSemaphore go;
      std::atomic<int> started{0}, finished{0};
      std::atomic<bool> onGuiThread{false};
    };
    auto gate = std::make_shared<Gate>();
    QThread* gui = QThread::currentThread();
    w->controller->attachmentChecker()->setHasher([gate, gui](const QString& path, QString* error) {
      if (QThread::currentThread() == gui) gate->onGuiThread = true;
      ++gate->started;
      QString hash;
      if (gate->go.tryAcquire(1, 10000)) hash = fileContentHash(path, error);
      else *error = QStringLiteral("the test never released the hasher");
      ++gate->finished;
      return hash;
    });

    // The event loop's pulse while the conversation opens and its document is hashed.
    QElapsedTimer sinceTick;
    qint64 longestGapMs = 0;
    int ticks = 0;
    QTimer pulse;
    pulse.setInterval(5);
    connect(&pulse, &QTimer::timeout, this, [&] {
      if (sinceTick.isValid()) longestGapMs = std::max(longestGapMs, sinceTick.elapsed());
      sinceTick.start();
      ++ticks;
    });
    pulse.start();

    QElapsedTimer opening;
    opening.start();
    QVERIFY(w->controller->openConversation(first));
    const qint64 openMs = opening.elapsed();
    // Waiting for the hash would take the hasher's 10 s (it is held until released below); 5 s leaves a loaded
    // machine room.
    QVERIFY2(openMs < 5000, qPrintable(QStringLiteral("opening took %1 ms: it waited for the hash").arg(openMs)));
    ChatPanel* panel = w->window->chatPanel();
    AttachmentChipsRow* row = panel->attachmentRow(0);
    QVERIFY(row);
    QCOMPARE(row->buttons().size(), 1);
    QCOMPARE(row->checks().value(0).availability, AttachmentAvailability::Checking);
    QVERIFY2(row->buttons()[0]->text().contains(QStringLiteral("checking")), qPrintable(row->buttons()[0]->text()));
    QVERIFY(!row->buttons()[0]->property("missing").toBool());
    QTRY_COMPARE(gate->started.load(), 1);  // the hasher is running (blocked) on its worker
    const int ticksBefore = ticks;
    QTest::qWait(300);
    // A GUI thread that waited for the hash would tick 0 times; qWait's passes (each with a 10 ms sleep) allow at
    // most ~27, fewer on a loaded machine.
    QVERIFY2(ticks - ticksBefore >= 3, qPrintable(QStringLiteral("%1 ticks in 300 ms").arg(ticks - ticksBefore)));
    QCOMPARE(row->checks().value(0).availability, AttachmentAvailability::Checking);  // still waiting
    QVERIFY(!gate->onGuiThread);

    // Released: the 200 MB are hashed off the GUI thread and the verdict reaches the chip.
    sinceTick.invalidate();
    longestGapMs = 0;
    gate->go.release();
    QTRY_COMPARE_WITH_TIMEOUT(gate->finished.load(), 1, 30000);
    QTRY_COMPARE(w->controller->attachmentChecker()->pendingCount(), 0);
    row = panel->attachmentRow(0);
    QCOMPARE(row->checks().value(0).availability, AttachmentAvailability::Changed);
    QVERIFY(row->buttons()[0]->property("missing").toBool());
    QVERIFY(row->buttons()[0]->text().contains(QStringLiteral("(changed)")));
    qInfo("longest event-loop gap while 200 MB were hashed: %lld ms", longestGapMs);

    // Reopened: the known state at once (no "checking…"), confirmed in the background without rehashing
    // (same size and time).
    w->controller->newConversation();
    QVERIFY(w->controller->openConversation(first));
    QCOMPARE(panel->attachmentRow(0)->checks().value(0).availability, AttachmentAvailability::Changed);
    QTRY_COMPARE(w->controller->attachmentChecker()->pendingCount(), 0);
    QCOMPARE(gate->started.load(), 1);
    QCOMPARE(panel->attachmentRow(0)->checks().value(0).availability, AttachmentAvailability::Changed);

    // Switching while a check runs: the other conversation's chip is not touched by the late answer, and
    // closing the window and the controller while the hasher is still blocked is safe.
    QVERIFY(w->controller->openConversation(second));  // big2: blocks in the hasher
    QTRY_COMPARE(gate->started.load(), 2);
    QVERIFY(w->controller->openConversation(first));
    QCOMPARE(panel->attachmentRow(0)->checks().value(0).availability, AttachmentAvailability::Changed);
    w.reset();  // window, controller and checker gone while the hasher holds big2
    gate->go.release();
    QTRY_COMPARE_WITH_TIMEOUT(gate->finished.load(), 2, 30000);
    QTest::qWait(50);  // the finished job's result has nowhere to go: nothing happens
    QCOMPARE(gate->started.load(), 2);
  }

  void clickingAChipOfTheNextQuestionShowsItsRegion() {
    auto w = makeWindow(newDbPath());
    QVERIFY(w);
    QSignalSpy opened(w->window.get(), &MainWindow::fileOpened);
    w->window->openFiles({m_pdf});
    QTRY_COMPARE_WITH_TIMEOUT(opened.count(), 1, 30000);
    DocumentTab* tab = w->window->currentTab();
    const QRectF region(0.2, 0.1, 0.4, 0.4);
    w->controller->addRegionChip(tab->document(), 1, region);
    tab->pageView()->clearSelection();
    tab->pageView()->goToPage(0);
    QCOMPARE(tab->pageView()->currentPage(), 0);
    QSignalSpy landed(w->window->referenceNavigator(), &ReferenceNavigator::landed);
    QTest::mouseClick(w->window->chatPanel()->chipsRow()->chipButtons()[0], Qt::LeftButton);
    QCOMPARE(landed.count(), 1);
    QTRY_COMPARE(tab->pageView()->currentPage(), 1);
    QVERIFY(near(tab->pageView()->selectionRect(), region));
    QCOMPARE(w->controller->chips().size(), 1);  // showing is not removing
    // Its tab closed: the click opens the file again.
    w->window->closeCurrentTab();
    QCOMPARE(w->window->documentCount(), 0);
    QTest::mouseClick(w->window->chatPanel()->chipsRow()->chipButtons()[0], Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(landed.count(), 2, 30000);
    QTRY_COMPARE(w->window->currentTab()->pageView()->currentPage(), 1);
    QCOMPARE(w->window->currentTab()->pageView()->selectionPage(), 1);
  }

  // 2. Image chips: Attach button, drop, paste — stored by content hash. ----------------------------------------
  void imagesFromAttachDropAndPasteAreStoredByContentHash() {
    auto w = makeWindow(newDbPath());
    QVERIFY(w);
    ChatPanel* panel = w->window->chatPanel();
    ChatController& c = *w->controller;
    const QString photo = m_dir.filePath(QStringLiteral("photo.png"));
    QVERIFY(filled(300, 200, Qt::blue).save(photo));
    const QString chart = m_dir.filePath(QStringLiteral("chart.jpg"));
    QVERIFY(filled(120, 90, Qt::green).save(chart));

    // Attach button (its file dialog replaced).
    QVERIFY(!panel->attachButton()->accessibleName().isEmpty());
    panel->setImageFileProvider([&] { return QStringList{photo}; });
    QTest::mouseClick(panel->attachButton(), Qt::LeftButton);
    QCOMPARE(c.chips().size(), 1);
    QCOMPARE(c.chips()[0].kind, AttachmentKind::Image);
    QCOMPARE(c.chips()[0].resolution, QSize(300, 200));
    QCOMPARE(c.chips()[0].tokens, imageTokenCount(300, 200, c.patchSize(), c.maxImageSize()));
    QVERIFY(panel->chipsRow()->chipButtons()[0]->text().contains(QStringLiteral("300×200")));

    // Drop an image file and a PDF on the panel: the image becomes a chip, the PDF opens in the viewer.
    auto* mime = new QMimeData;
    mime->setUrls({QUrl::fromLocalFile(chart), QUrl::fromLocalFile(m_pdf)});
    QSignalSpy opened(w->window.get(), &MainWindow::fileOpened);
    QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(panel, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(10, 10), Qt::CopyAction, mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(panel, &drop);
    QCOMPARE(c.chips().size(), 2);
    QCOMPARE(c.chips()[1].label, QStringLiteral("chart.jpg"));
    QCOMPARE(c.chips()[1].resolution, QSize(120, 90));
    QTRY_COMPARE_WITH_TIMEOUT(opened.count(), 1, 30000);
    QCOMPARE(w->window->documentCount(), 1);
    delete mime;

    // Paste an image from the clipboard into the prompt box: a chip, no text.
    const QImage pasted = filled(64, 48, Qt::yellow);
    QApplication::clipboard()->setImage(pasted);
    PromptBox* prompt = panel->promptBox();
    prompt->setFocus();
    prompt->paste();
    QCOMPARE(c.chips().size(), 3);
    QCOMPARE(c.chips()[2].resolution, QSize(64, 48));
    QVERIFY(c.chips()[2].path.isEmpty());
    QVERIFY(prompt->toPlainText().isEmpty());
    QCOMPARE(panel->chipsRow()->chipButtons().size(), 3);
    // Ctrl+V in the box does the same.
    QTest::keyClick(prompt, Qt::Key_V, Qt::ControlModifier);
    QCOMPARE(c.chips().size(), 4);
    c.removeChip(3);

    // What the question stores: each image by content hash (the same bytes once), its resolution and file.
    const Prepared p = prepareAttachments(c.chips(), c.maxImageSize());
    QVERIFY2(p.error.isEmpty(), qPrintable(p.error));
    QCOMPARE(p.attachments.size(), 3);
    const qint64 conv = *w->store.createConversation(QStringLiteral("images"));
    const auto msg = w->store.addUserMessage(conv, 0, QStringLiteral("compare"), p.attachments);
    QVERIFY(msg);
    QVERIFY(w->store.addUserMessage(conv, *msg, QStringLiteral("again"), p.attachments));
    QCOMPARE(w->store.database().queryInt("SELECT count(*) FROM images"), 3);
    const Message m = *w->store.message(*msg);
    QCOMPARE(m.attachments.size(), 3);
    for (const Attachment& a : m.attachments) {
      QCOMPARE(a.kind, AttachmentKind::Image);
      QCOMPARE(a.imageHash, QString::fromLatin1(QCryptographicHash::hash(a.imageData, QCryptographicHash::Sha256).toHex()));
      QImage back;
      QVERIFY(back.loadFromData(a.imageData));
      QCOMPARE(back.size(), a.resolution);
    }
    QCOMPARE(m.attachments[0].documentPath, QFileInfo(photo).absoluteFilePath());
    QCOMPARE(m.attachments[0].contentHash, fileContentHash(photo));
    QCOMPARE(m.attachments[2].resolution, QSize(64, 48));
    QVERIFY(m.attachments[2].documentPath.isEmpty());

    // Reopened, an image chip is never "missing" (its pixels are in the database) even when its file is gone.
    QVERIFY(QFile::remove(photo));
    w->controller->openConversation(conv);
    const QList<QToolButton*> old = panel->attachmentRow(0)->buttons();
    QCOMPARE(old.size(), 3);
    for (QToolButton* b : old) QVERIFY(!b->property("missing").toBool());
    const int before = w->window->documentCount();
    QTest::mouseClick(old[0], Qt::LeftButton);  // its file is gone: the stored image opens
    QTRY_COMPARE(w->window->documentCount(), before + 1);
  }

  // 3. The page text layer goes with the page image, as a text part before the question. ---------------------
  void pageTextLayerIsCountedAndSent() {
    QString why;
    const QStringList words = test::pdfWords(m_pdf, 1, &why);
    if (words.size() < 3) QSKIP(qPrintable(QStringLiteral("no words on page 1: ") + why));
    ConversationStore store;
    QVERIFY(store.open(newDbPath()));
    ChatController c(&store, nullptr);
    ChatPanel panel(&c);
    LoadResult r = DocumentLoader().load(m_pdf);
    QVERIFY2(r.ok(), qPrintable(r.message));
    c.addPageChip(r.document, 0);
    const int imageOnly = c.chipTokens();
    QVERIFY(!c.chips()[0].includeText);
    QCOMPARE(c.chips()[0].textTokens, 0);

    // The per-chip toggle (the chip's menu).
    QAction* toggle = nullptr;
    for (QAction* a : panel.chipsRow()->chipButtons()[0]->menu()->actions())
      if (a->objectName() == QLatin1String("includeText")) toggle = a;
    QVERIFY(toggle && toggle->isCheckable() && !toggle->isChecked());
    toggle->trigger();
    QTRY_VERIFY(c.chips()[0].includeText);
    const ContextChip chip = c.chips()[0];
    for (const QString& word : words.mid(0, 3)) QVERIFY2(chip.pageText.contains(word), qPrintable(word));
    QVERIFY(chip.textTokens > 0);
    QCOMPARE(c.chipTokens(), imageOnly + chip.textTokens);
    QVERIFY(panel.chipsRow()->chipButtons()[0]->text().contains(QStringLiteral("text")));

    // The message the question sends: image, then the text layer, then the question.
    const Prepared p = prepareAttachments(c.chips(), c.maxImageSize());
    QVERIFY2(p.error.isEmpty(), qPrintable(p.error));
    QCOMPARE(p.attachments[0].pageText, chip.pageText);
    const qint64 conv = *store.createConversation(QStringLiteral("text"));
    QVERIFY(store.addUserMessage(conv, 0, QStringLiteral("Summarise this page."), p.attachments));
    c.openConversation(conv);  // the stored message, as a later turn or a reopened conversation sends it
    QCOMPARE(c.messages()[0].attachments[0].pageText, chip.pageText);
    const QList<InferenceMessage> sent = c.inferenceMessages();
    QCOMPARE(sent.size(), 1);
    QCOMPARE(sent[0].parts.size(), 3);
    QCOMPARE(sent[0].parts[0].kind, InferencePart::Kind::Image);
    QCOMPARE(sent[0].parts[1].kind, InferencePart::Kind::Text);
    for (const QString& word : words.mid(0, 3)) QVERIFY(sent[0].parts[1].text.contains(word));
    QVERIFY(sent[0].parts[1].text.contains(QStringLiteral("page 1")));
    QCOMPARE(sent[0].parts[2].text, QStringLiteral("Summarise this page."));
    QVERIFY(c.conversationTokens() > imageOnly + chip.textTokens - 1);

    // The panel's checkbox: every page/region chip, and the new ones.
    c.clearChips();
    panel.includeTextBox()->setChecked(true);
    c.addRegionChip(r.document, 0, QRectF(0, 0, 1, 0.5));
    QVERIFY(c.chips()[0].includeText);
    QVERIFY(!c.chips()[0].pageText.isEmpty());
    QVERIFY(c.chips()[0].pageText.size() < chip.pageText.size());  // only the text inside the region
    panel.includeTextBox()->setChecked(false);
    QVERIFY(!c.chips()[0].includeText);
    QCOMPARE(c.chips()[0].textTokens, 0);

    // The JSON export carries it as a text part (replayable) and imports back as the attachment's text.
    const QByteArray json = store.exportJson(conv);
    const QJsonArray parts = QJsonDocument::fromJson(json).object()["messages"].toArray()[0].toObject()["content"].toArray();
    QCOMPARE(parts.size(), 3);
    QVERIFY(parts[1].toObject()["text"].toString().contains(words[0]));
    const auto back = store.importJson(json);
    QVERIFY(back);
    const QList<Message> imported = store.activePath(*back);
    QCOMPARE(imported[0].text, QStringLiteral("Summarise this page."));
    QCOMPARE(imported[0].attachments[0].pageText, chip.pageText);
  }

  // 4. Export and import from the menus (the file dialog replaced). ------------------------------------------
  void exportAndImportFromTheMenus() {
    auto w = makeWindow(newDbPath());
    QVERIFY(w);
    ConversationStore& store = w->store;
    const qint64 id = *store.createConversation(QStringLiteral("Budget / review"));
    const auto q = store.addUserMessage(id, 0, QStringLiteral("How much was spent on travel?"));
    Message answer;
    answer.role = MessageRole::Assistant;
    answer.text = QStringLiteral("About **4200** euros.");
    QVERIFY(store.addMessage(id, *q, answer));
    emit w->controller->conversationsChanged();
    ConversationFileActions* actions = w->window->conversationFileActions();
    QVERIFY(actions);
    actions->setErrorDialogsEnabled(false);
    QVERIFY(!actions->exportMarkdownAction()->isEnabled());  // no conversation open
    w->controller->openConversation(id);
    QVERIFY(actions->exportMarkdownAction()->isEnabled());

    // They are in the File menu.
    QMenu* file = w->window->menuBar()->actions().first()->menu();
    QVERIFY(file->actions().contains(actions->importAction()));
    QVERIFY(file->actions().contains(actions->exportMenu()->menuAction()));

    QString asked;
    QString target;
    actions->setPathProvider([&](ConversationFileActions::Purpose, const QString& suggested) {
      asked = suggested;
      return target;
    });
    target = m_dir.filePath(QStringLiteral("export.md"));
    QSignalSpy exported(actions, &ConversationFileActions::exported);
    actions->exportMarkdownAction()->trigger();
    QCOMPARE(exported.count(), 1);
    QCOMPARE(asked, QStringLiteral("Budget _ review.md"));
    QFile md(target);
    QVERIFY(md.open(QIODevice::ReadOnly));
    const QString mdText = QString::fromUtf8(md.readAll());
    QCOMPARE(mdText, store.exportMarkdown(id));
    QVERIFY(mdText.contains(QStringLiteral("How much was spent on travel?")));

    target = m_dir.filePath(QStringLiteral("export.json"));
    actions->exportJsonAction()->trigger();
    QCOMPARE(exported.count(), 2);
    QFile js(target);
    QVERIFY(js.open(QIODevice::ReadOnly));
    const QByteArray jsonBytes = js.readAll();
    QCOMPARE(jsonBytes, store.exportJson(id));
    QCOMPARE(QJsonDocument::fromJson(jsonBytes).object()["messages"].toArray().size(), 2);

    // The list's context menu exports the clicked conversation.
    ConversationSidebar* sidebar = w->window->conversationSidebar();
    QTRY_COMPARE(sidebar->model()->rowCount(), 1);
    std::unique_ptr<QMenu> menu(sidebar->createContextMenu(0));
    QVERIFY(menu);
    QAction* viaMenu = nullptr;
    for (QAction* a : menu->findChildren<QAction*>())
      if (a->objectName() == QLatin1String("exportJson")) viaMenu = a;
    QVERIFY(viaMenu);
    target = m_dir.filePath(QStringLiteral("from-list.json"));
    viaMenu->trigger();
    QCOMPARE(exported.count(), 3);
    QVERIFY(QFileInfo::exists(target));

    // Cancelled: nothing written.
    target.clear();
    actions->exportJsonAction()->trigger();
    QCOMPARE(exported.count(), 3);

    // Import: a new conversation, listed and opened.
    target = m_dir.filePath(QStringLiteral("export.json"));
    QSignalSpy imported(actions, &ConversationFileActions::imported);
    actions->importAction()->trigger();
    QCOMPARE(imported.count(), 1);
    const qint64 newId = imported.first().first().toLongLong();
    QVERIFY(newId != id);
    QCOMPARE(w->controller->conversationId(), newId);
    QCOMPARE(w->controller->messages().size(), 2);
    QCOMPARE(w->controller->messages()[1].text, answer.text);
    QTRY_COMPARE(sidebar->model()->rowCount(), 2);

    // A broken file: a message, nothing imported.
    const QString bad = m_dir.filePath(QStringLiteral("bad.json"));
    QFile b(bad);
    QVERIFY(b.open(QIODevice::WriteOnly));
    b.write("{ not json");
    b.close();
    target = bad;
    QSignalSpy failed(actions, &ConversationFileActions::failed);
    actions->importAction()->trigger();
    QCOMPARE(failed.count(), 1);
    QCOMPARE(store.conversations().size(), 2);
  }
};

QTEST_MAIN(TestChatReferences)
#include "tst_chat_references.moc"
