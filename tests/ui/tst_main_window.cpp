// SPDX-License-Identifier: GPL-3.0-or-later
// MainWindow: several documents at once, bad files leave the others alone, passwords asked (wrong → again),
// paste and drop, find with hits, page status, themes, recent files, accessible names on every control.
#include "documents/document.h"
#include "main_window.h"
#include "test_pdfs.h"
#include "viewer/document_tab.h"
#include "viewer/find_bar.h"
#include "viewer/page_view.h"

#include <QAbstractButton>
#include <QAbstractItemView>
#include <QClipboard>
#include <QLineEdit>
#include <QMimeData>
#include <QSettings>
#include <QStandardPaths>
#include <QTabBar>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QtTest>

using namespace quire;

class TestMainWindow : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_dir;
  QString m_pdf;
  std::unique_ptr<MainWindow> m_window;

  QString write(const QString& name, const QByteArray& data) {
    QFile f(m_dir.filePath(name));
    if (!f.open(QIODevice::WriteOnly)) return {};
    f.write(data);
    return f.fileName();
  }

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTests"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_main_window"));
    QSettings().clear();
    QString why;
    m_pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (m_pdf.isEmpty()) QSKIP(qPrintable(why));
  }

  void init() {
    m_window = std::make_unique<MainWindow>();
    m_window->setErrorDialogsEnabled(false);
    m_window->resize(1000, 700);
    m_window->show();
    QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
  }
  void cleanup() { m_window.reset(); }

  void badFilesDoNotDisturbTheOthers() {
    QString why;
    const QString png = test::chartPng(m_dir.path(), &why);
    const QString notPdf = write(QStringLiteral("notes.pdf"), "plain text\n");
    const QString empty = write(QStringLiteral("empty.pdf"), {});
    QSignalSpy failed(m_window.get(), &MainWindow::fileFailed);
    m_window->openFiles({m_pdf, notPdf, png, empty, m_pdf});  // the duplicate opens once
    QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 2, 20000);
    QTRY_COMPARE_WITH_TIMEOUT(m_window->documentCount(), 2, 20000);
    const QString errors = m_window->errors().join(QLatin1Char('\n'));
    QVERIFY2(errors.contains(QStringLiteral("notes.pdf")) && errors.contains(QStringLiteral("empty.pdf")), qPrintable(errors));
    for (int i = 0; i < m_window->documentCount(); ++i) {
      PageView* v = m_window->tabAt(i)->pageView();
      QVERIFY(v->pageCount() > 0);
    }
    m_window->tabs()->setCurrentIndex(m_window->tabs()->indexOf(m_window->tabAt(0)));
    const int pages = m_window->currentTab()->pageView()->pageCount();
    QCOMPARE(m_window->pageStatusText(), QStringLiteral("Page 1 of %1").arg(pages));
    // Recent files remember what opened, newest first.
    const QStringList recent = QSettings().value(QStringLiteral("recentFiles")).toStringList();
    QVERIFY(recent.contains(QFileInfo(m_pdf).absoluteFilePath()));
    QVERIFY(!recent.contains(QFileInfo(notPdf).absoluteFilePath()));
    // Closing one tab leaves the other working.
    m_window->closeCurrentTab();
    QCOMPARE(m_window->documentCount(), 1);
    QVERIFY(m_window->currentTab()->pageView()->pageCount() > 0);
  }

  void passwordIsAskedAgainWhenWrong() {
    QString why;
    const QString pdf = test::encryptedPdf(m_dir.path(), QStringLiteral("open-sesame"), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    QList<bool> asked;
    m_window->setPasswordPrompt([&](const QString&, bool retry) -> std::optional<QString> {
      asked << retry;
      return asked.size() == 1 ? QStringLiteral("wrong") : QStringLiteral("open-sesame");
    });
    m_window->openFiles({pdf});
    QTRY_COMPARE_WITH_TIMEOUT(m_window->documentCount(), 1, 20000);
    QCOMPARE(asked, QList<bool>({false, true}));
    QVERIFY(m_window->errors().join(QString()).contains(QStringLiteral("wrong")));
    QCOMPARE(m_window->currentTab()->pageView()->pageCount(), 2);

    // Cancelling leaves a clear message and no tab.
    m_window->closeCurrentTab();
    m_window->setPasswordPrompt([](const QString&, bool) { return std::nullopt; });
    QSignalSpy failed(m_window.get(), &MainWindow::fileFailed);
    m_window->openFiles({pdf});
    QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, 20000);
    QVERIFY(failed.at(0).at(1).toString().contains(QStringLiteral("password")));
    QCOMPARE(m_window->documentCount(), 0);
  }

  void pasteImageAndFile() {
    QImage img(320, 200, QImage::Format_RGB32);
    img.fill(Qt::darkGreen);
    QApplication::clipboard()->setImage(img);
    if (QApplication::clipboard()->image().isNull()) QSKIP("this platform plugin has no clipboard");
    m_window->pasteFromClipboard();
    QCOMPARE(m_window->documentCount(), 1);
    QCOMPARE(m_window->currentTab()->document()->kind(), Document::Kind::Image);
    auto* mime = new QMimeData;
    mime->setUrls({QUrl::fromLocalFile(m_pdf)});
    QApplication::clipboard()->setMimeData(mime);
    m_window->pasteFromClipboard();
    QTRY_COMPARE_WITH_TIMEOUT(m_window->documentCount(), 2, 20000);
  }

  void dropOpensFiles() {
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(m_pdf)});
    const QPoint pos = m_window->rect().center();
    QDragEnterEvent enter(pos, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(m_window.get(), &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(pos), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(m_window.get(), &drop);
    QTRY_COMPARE_WITH_TIMEOUT(m_window->documentCount(), 1, 20000);
  }

  void findHighlightsHits() {
    QString why;
    QStringList words = test::pdfWords(m_pdf, 2, &why);
    if (words.isEmpty()) QSKIP(qPrintable(why));
    std::sort(words.begin(), words.end(), [](const QString& a, const QString& b) { return a.size() > b.size(); });
    m_window->openFiles({m_pdf});
    QTRY_COMPARE_WITH_TIMEOUT(m_window->documentCount(), 1, 20000);
    DocumentTab* tab = m_window->currentTab();
    QTest::keySequence(m_window.get(), QKeySequence::Find);
    QVERIFY(tab->findBar()->isVisible());
    tab->search(words.first());
    QTRY_VERIFY_WITH_TIMEOUT(tab->hitCount() > 0, 20000);
    QVERIFY(tab->currentHit() >= 0);
    const int first = tab->currentHit();
    tab->nextHit();
    QCOMPARE(tab->currentHit(), tab->hitCount() > 1 ? first + 1 : first);
    tab->search(QStringLiteral("zzqqxxnotthere"));
    QTest::qWait(50);
    QTRY_VERIFY_WITH_TIMEOUT(tab->hitCount() == 0 && tab->currentHit() == -1, 20000);
  }

  void themesSwitch() {
    m_window->setTheme(Theme::Dark);
    QVERIFY(QApplication::palette().color(QPalette::Window).lightness() < 100);
    m_window->setTheme(Theme::Light);
    QVERIFY(QApplication::palette().color(QPalette::Window).lightness() > 150);
    m_window->setTheme(Theme::System);
    QCOMPARE(savedTheme(), Theme::System);
  }

  void everyControlHasAnAccessibleName() {
    m_window->openFiles({m_pdf});
    QTRY_COMPARE_WITH_TIMEOUT(m_window->documentCount(), 1, 20000);
    m_window->currentTab()->showFindBar();
    QStringList unnamed;
    for (QWidget* w : m_window->findChildren<QWidget*>()) {
      const bool control = qobject_cast<QAbstractButton*>(w) || qobject_cast<QLineEdit*>(w) ||
                           qobject_cast<QAbstractItemView*>(w) || qobject_cast<QTabBar*>(w) ||
                           qobject_cast<PageView*>(w);
      if (!control || !w->isVisible() || w->inherits("QLineEditIconButton") || w->inherits("CloseButton")) continue;
      if (w->accessibleName().isEmpty()) unnamed << QString::fromLatin1(w->metaObject()->className()) + QLatin1Char(' ') + w->objectName();
    }
    QVERIFY2(unnamed.isEmpty(), qPrintable(unnamed.join(QStringLiteral(", "))));
  }
};

QTEST_MAIN(TestMainWindow)
#include "tst_main_window.moc"
