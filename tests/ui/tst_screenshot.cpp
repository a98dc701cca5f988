// SPDX-License-Identifier: GPL-3.0-or-later
// The main window with a real PDF open (a packaged manual + a tool-made chart), rendered offscreen to
// <build>/screenshots/main-window.png. Checks that the page area is not blank and that thumbnails show.
#include "documents/thumbnail_model.h"
#include "main_window.h"
#include "test_pdfs.h"
#include "viewer/document_tab.h"
#include "viewer/page_view.h"

#include "../app/image_stats.h"

#include <QDir>
#include <QListView>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

using namespace quire;

class TestScreenshot : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void mainWindowWithARealPdf() {
    QStandardPaths::setTestModeEnabled(true);
    QTemporaryDir dir;
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    MainWindow window;
    window.setErrorDialogsEnabled(false);
    window.resize(1280, 860);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    window.openFiles({pdf});
    QTRY_COMPARE_WITH_TIMEOUT(window.documentCount(), 1, 20000);
    DocumentTab* tab = window.currentTab();
    PageView* view = tab->pageView();
    const double scale = view->zoom() * 96.0 / 72.0 * view->viewport()->devicePixelRatioF();
    QTRY_VERIFY_WITH_TIMEOUT(!view->renderer()->cached(0, scale).isNull(), 20000);
    QTRY_VERIFY_WITH_TIMEOUT(tab->thumbnailModel()->renderer()->cachedCount() >= 3, 20000);
    QTest::qWait(100);

    const QImage shot = window.grab().toImage();
    const QString out = QStringLiteral(QUIRE_BINARY_DIR "/screenshots/main-window.png");
    QDir().mkpath(QFileInfo(out).absolutePath());
    QVERIFY(shot.save(out));
    qInfo("screenshot: %s", qPrintable(out));

    const qreal dpr = shot.devicePixelRatio();
    auto crop = [&](QWidget* w) {
      const QRect r(w->mapTo(&window, QPoint(0, 0)) * dpr, w->size() * dpr);
      return shot.copy(r);
    };
    const QImage pageArea = crop(view->viewport());
    QVERIFY2(test::greyVariance(pageArea) > 100, "the page area is blank");
    // The first page itself (inside the page area) has text on it, not just the white of a placeholder.
    const QRectF page0 = view->pageRectInViewport(0).intersected(QRectF(view->viewport()->rect()));
    QVERIFY(test::greyVariance(pageArea.copy(QRectF(page0.topLeft() * dpr, page0.size() * dpr).toRect())) > 20);
    QListView* thumbs = tab->thumbnailView();
    QVERIFY(thumbs->isVisible());
    QVERIFY(thumbs->width() > 60);
    const QRect first = thumbs->visualRect(thumbs->model()->index(0, 0));
    QVERIFY(first.isValid());
    const QImage thumbArea = crop(thumbs->viewport()).copy(QRect(first.topLeft() * dpr, first.size() * dpr));
    QVERIFY2(test::greyVariance(thumbArea) > 20, "the first thumbnail is blank");

    // A second picture for people: dark theme, the chart page with a region selected.
    window.setTheme(Theme::Dark);
    const int chart = view->pageCount() - 1;
    view->fitPage();
    view->goToPage(chart);
    view->setSelection(chart, QRectF(0.08, 0.05, 0.84, 0.85));
    const double s2 = view->zoom() * 96.0 / 72.0 * view->viewport()->devicePixelRatioF();
    QTRY_VERIFY_WITH_TIMEOUT(!view->renderer()->cached(chart, s2).isNull(), 20000);
    QTest::qWait(100);
    const QString out2 = QStringLiteral(QUIRE_BINARY_DIR "/screenshots/main-window-dark-selection.png");
    QVERIFY(window.grab().save(out2));
    window.setTheme(Theme::System);
  }
};

QTEST_MAIN(TestScreenshot)
#include "tst_screenshot.moc"
