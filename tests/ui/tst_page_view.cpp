// SPDX-License-Identifier: GPL-3.0-or-later
// PageView: zoom limits and anchors, fit modes, keyboard and wheel navigation, only visible pages ± 1 are
// requested, HiDPI render scale, and region selection by mouse (draw, adjust by handle, move, Esc).
#include "documents/document_loader.h"
#include "test_pdfs.h"
#include "viewer/page_view.h"

#include <QScrollBar>
#include <QTemporaryDir>
#include <QtTest>

using namespace quire;

class TestPageView : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_dir;
  std::shared_ptr<Document> m_doc;
  std::unique_ptr<PageView> m_view;

  void drag(const QPointF& from, const QPointF& to) {
    QWidget* vp = m_view->viewport();
    QTest::mousePress(vp, Qt::LeftButton, {}, from.toPoint());
    QTest::mouseMove(vp, ((from + to) / 2).toPoint());
    QTest::mouseMove(vp, to.toPoint());
    QTest::mouseRelease(vp, Qt::LeftButton, {}, to.toPoint());
  }

 private Q_SLOTS:
  void initTestCase() {
    QString why;
    const QStringList pdfs = test::packagedPdfs(m_dir.path(), &why);
    if (pdfs.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult r = DocumentLoader().load(pdfs.last());
    QVERIFY(r.ok());
    m_doc = r.document;
    QVERIFY(m_doc->pageCount() >= 10);
  }

  void init() {
    m_view = std::make_unique<PageView>();
    m_view->resize(800, 600);
    m_view->setDocument(m_doc);
    m_view->show();
    QVERIFY(QTest::qWaitForWindowExposed(m_view.get()));
  }
  void cleanup() { m_view.reset(); }

  void fitWidthFillsTheViewport() {
    m_view->fitWidth();
    const QRectF page = m_view->pageRectInViewport(0);
    QVERIFY(std::abs(page.width() - (m_view->viewport()->width() - 24)) <= 2);
    m_view->fitPage();
    QVERIFY(m_view->pageRectInViewport(m_view->currentPage()).height() <= m_view->viewport()->height());
    QCOMPARE(m_view->fitMode(), PageView::FitMode::Page);
  }

  void zoomIsClampedAndKeepsTheCentre() {
    m_view->setZoom(100.0);
    QCOMPARE(m_view->zoom(), PageView::kMaxZoom);
    m_view->setZoom(0.01);
    QCOMPARE(m_view->zoom(), PageView::kMinZoom);
    m_view->setZoom(1.0);
    m_view->goToPage(3);
    const int page = m_view->currentPage();
    QSignalSpy zoomSpy(m_view.get(), &PageView::zoomChanged);
    m_view->zoomIn();
    QCOMPARE(zoomSpy.count(), 1);
    QVERIFY(m_view->zoom() > 1.0);
    QCOMPARE(m_view->currentPage(), page);
    QCOMPARE(m_view->fitMode(), PageView::FitMode::None);
  }

  void ctrlWheelZooms() {
    m_view->setZoom(1.0);
    QWheelEvent wheel(QPointF(400, 300), m_view->viewport()->mapToGlobal(QPointF(400, 300)), QPoint(), QPoint(0, 240),
                      Qt::NoButton, Qt::ControlModifier, Qt::NoScrollPhase, false);
    QApplication::sendEvent(m_view->viewport(), &wheel);
    QVERIFY(std::abs(m_view->zoom() - 1.21) < 1e-6);
  }

  void keyboardNavigates() {
    m_view->setZoom(1.0);
    QSignalSpy pageSpy(m_view.get(), &PageView::currentPageChanged);
    QTest::keyClick(m_view.get(), Qt::Key_End);
    QCOMPARE(m_view->currentPage(), m_doc->pageCount() - 1);
    QTest::keyClick(m_view.get(), Qt::Key_Home);
    QCOMPARE(m_view->currentPage(), 0);
    const int before = m_view->verticalScrollBar()->value();
    QTest::keyClick(m_view.get(), Qt::Key_PageDown);
    QVERIFY(m_view->verticalScrollBar()->value() > before);
    QTest::keyClick(m_view.get(), Qt::Key_Down);
    QTest::keyClick(m_view.get(), Qt::Key_PageUp);
    QTest::keyClick(m_view.get(), Qt::Key_Up);
    QCOMPARE(m_view->verticalScrollBar()->value(), before);
    QVERIFY(pageSpy.count() >= 2);
  }

  void onlyVisiblePagesAndNeighboursAreRendered() {
    m_view->setZoom(1.0);
    m_view->goToPage(5);
    PageRenderer* r = m_view->renderer();
    QTRY_VERIFY_WITH_TIMEOUT(r->renderedCount() >= 2 && !r->isPending(5, m_view->zoom() * 96 / 72 * m_view->devicePixelRatioF()), 20000);
    QTest::qWait(300);
    const double scale = m_view->zoom() * 96.0 / 72.0 * m_view->viewport()->devicePixelRatioF();
    QVERIFY(!r->cached(5, scale).isNull());
    for (int p = 0; p < m_doc->pageCount(); ++p) {
      const bool near = p >= 3 && p <= 8;  // visible pages (5, maybe 6, 7) ± 1
      if (!near) QVERIFY2(r->cached(p, scale).isNull(), qPrintable(QString::number(p)));
    }
    // The render has device pixels: width = logical width × device pixel ratio.
    QCOMPARE(r->cached(5, scale).width(), qRound(m_view->pageRectInViewport(5).width() * m_view->viewport()->devicePixelRatioF()));
  }

  void dragSelectsANormalisedRegion() {
    m_view->setZoom(1.0);
    m_view->goToPage(0);
    QSignalSpy spy(m_view.get(), &PageView::selectionChanged);
    const QRectF page = m_view->pageRectInViewport(0);
    const QPointF a = page.topLeft() + QPointF(page.width() * 0.2, 50), b = page.topLeft() + QPointF(page.width() * 0.6, 250);
    drag(a, b);
    QCOMPARE(spy.count(), 1);
    QCOMPARE(spy.at(0).at(0).toInt(), 0);
    const QRectF sel = spy.at(0).at(1).toRectF();
    QVERIFY(std::abs(sel.left() - 0.2) < 0.01);
    QVERIFY(std::abs(sel.top() - 50 / page.height()) < 0.01);
    QVERIFY(std::abs(sel.right() - 0.6) < 0.01);
    QVERIFY(std::abs(sel.bottom() - 250 / page.height()) < 0.01);

    // Adjust: drag the bottom-right handle further out.
    drag(b, b + QPointF(40, 30));
    QCOMPARE(spy.count(), 2);
    const QRectF grown = spy.at(1).at(1).toRectF();
    QVERIFY(std::abs(grown.left() - sel.left()) < 1e-6);
    QVERIFY(grown.right() > sel.right() + 0.03);
    QVERIFY(grown.bottom() > sel.bottom());

    // Move: drag from inside.
    const QPointF inside = RegionSelection::toScreen(grown, page).center();
    drag(inside, inside + QPointF(-20, 10));
    QVERIFY(std::abs(m_view->selectionRect().width() - grown.width()) < 1e-6);
    QVERIFY(m_view->selectionRect().left() < grown.left());

    // Redrawing elsewhere replaces it.
    drag(page.topLeft() + QPointF(5, 5), page.topLeft() + QPointF(60, 60));
    QVERIFY(m_view->selectionRect().width() < 0.2);

    // Esc clears.
    QTest::keyClick(m_view.get(), Qt::Key_Escape);
    QCOMPARE(m_view->selectionPage(), -1);
    QCOMPARE(spy.last().at(0).toInt(), -1);
  }

  void selectionSurvivesZoom() {
    m_view->setSelection(1, QRectF(0.1, 0.2, 0.3, 0.4));
    m_view->setZoom(2.0);
    QCOMPARE(m_view->selectionRect(), QRectF(0.1, 0.2, 0.3, 0.4));
    QCOMPARE(m_view->selectionPage(), 1);
  }
};

QTEST_MAIN(TestPageView)
#include "tst_page_view.moc"
