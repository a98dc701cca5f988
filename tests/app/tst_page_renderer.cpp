// SPDX-License-Identifier: GPL-3.0-or-later
// PageRenderer: results arrive as queued signals, stale requests are cancelled before they start, nothing is
// rendered twice, and the cache stays under its budget by evicting the pages farthest from the current one.
#include "documents/document_loader.h"
#include "documents/page_renderer.h"
#include "image_stats.h"
#include "test_pdfs.h"

#include <QSemaphore>
#include <QTemporaryDir>
#include <QThread>
#include <QtTest>

using namespace quire;

class TestPageRenderer : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_dir;
  std::shared_ptr<Document> m_doc;

 private Q_SLOTS:
  void initTestCase() {
    QString why;
    const QStringList pdfs = test::packagedPdfs(m_dir.path(), &why);
    // The renderer tests want a longer document: the largest packaged manual.
    if (pdfs.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult r = DocumentLoader().load(pdfs.last());
    QVERIFY2(r.ok(), qPrintable(r.message));
    m_doc = r.document;
    QVERIFY(m_doc->pageCount() >= 12);
  }

  void resultsArriveOnTheCallersThread() {
    PageRenderer renderer;
    renderer.setDocument(m_doc);
    QSignalSpy spy(&renderer, &PageRenderer::pageReady);
    QThread* const gui = QThread::currentThread();
    QThread* seen = nullptr;
    connect(&renderer, &PageRenderer::pageReady, this, [&] { seen = QThread::currentThread(); });
    renderer.request({0, 1}, 1.5, 0);
    QCOMPARE(spy.count(), 0);  // never synchronous: the GUI thread does not wait
    QTRY_COMPARE_WITH_TIMEOUT(spy.count(), 2, 20000);
    QCOMPARE(seen, gui);
    const QImage image = renderer.cached(0, 1.5);
    QCOMPARE(image.size(), (m_doc->pageSize(0) * 1.5).toSize());
    QVERIFY(test::greyVariance(image) > 10);
    QVERIFY(renderer.cached(0, 1.0).isNull());  // other scales are other entries
  }

  void staleRequestsAreCancelled() {
    PageRenderer renderer;
    renderer.setMaxThreads(1);
    renderer.setDocument(m_doc);
    QSignalSpy spy(&renderer, &PageRenderer::pageReady);
    // The only worker is held until both requests are in, so no page can start between them.
    QSemaphore gate;
    renderer.threadPool()->start([&gate] { gate.acquire(); });
    QList<int> all;
    for (int p = 0; p < 12; ++p) all << p;
    renderer.request(all, 1.0, 0);
    // The user scrolled on at once: only page 11 is wanted now.
    renderer.request({11}, 1.0, 11);
    gate.release();
    QTRY_VERIFY_WITH_TIMEOUT(!renderer.cached(11, 1.0).isNull(), 20000);
    QTRY_COMPARE_WITH_TIMEOUT(renderer.cancelledCount(), 11, 20000);
    QTRY_VERIFY_WITH_TIMEOUT(!renderer.isPending(0, 1.0) && !renderer.isPending(10, 1.0), 20000);
    // Page 11 alone was rendered (once, though both requests wanted it); pages 0..10 never started.
    QCOMPARE(renderer.renderedCount(), 1);
    QCOMPARE(spy.count(), 1);
    QCOMPARE(spy.at(0).at(0).toInt(), 11);
    for (int p = 0; p < 11; ++p) QVERIFY(renderer.cached(p, 1.0).isNull());
  }

  void nothingIsRenderedTwice() {
    PageRenderer renderer;
    renderer.setDocument(m_doc);
    renderer.request({2, 3}, 1.0, 2);
    renderer.request({2, 3}, 1.0, 2);  // same request again while pending
    QTRY_VERIFY_WITH_TIMEOUT(!renderer.cached(2, 1.0).isNull() && !renderer.cached(3, 1.0).isNull(), 20000);
    renderer.request({2, 3}, 1.0, 2);  // and once cached
    QTest::qWait(100);
    QCOMPARE(renderer.renderedCount(), 2);
  }

  void cacheStaysUnderBudgetEvictingFarthest() {
    PageRenderer renderer;
    renderer.setDocument(m_doc);
    const qint64 onePage = m_doc->render(0, 0.5).sizeInBytes();
    renderer.setMemoryBudget(onePage * 3 + onePage / 2);  // room for three pages
    for (int p = 0; p < 8; ++p) {
      renderer.request({p}, 0.5, p);
      QTRY_VERIFY_WITH_TIMEOUT(!renderer.cached(p, 0.5).isNull(), 20000);
      QVERIFY(renderer.cacheBytes() <= renderer.memoryBudget());
    }
    QCOMPARE(renderer.cachedCount(), 3);
    for (int p : {5, 6, 7}) QVERIFY(!renderer.cached(p, 0.5).isNull());
    QVERIFY(renderer.cached(0, 0.5).isNull());
    // Reading moves back to page 4: the farthest (7) goes first.
    renderer.request({4}, 0.5, 4);
    QTRY_VERIFY_WITH_TIMEOUT(!renderer.cached(4, 0.5).isNull(), 20000);
    QVERIFY(renderer.cached(7, 0.5).isNull());
    QVERIFY(!renderer.cached(5, 0.5).isNull());
    // Shrinking the budget evicts at once.
    renderer.setMemoryBudget(onePage + onePage / 2);
    QCOMPARE(renderer.cachedCount(), 1);
  }

  void switchingDocumentsDropsOldResults() {
    PageRenderer renderer;
    renderer.setDocument(m_doc);
    QSignalSpy spy(&renderer, &PageRenderer::pageReady);
    renderer.request({0, 1, 2, 3}, 2.0, 0);
    renderer.setDocument(nullptr);
    QTest::qWait(1500);
    QCOMPARE(spy.count(), 0);
    QCOMPARE(renderer.cachedCount(), 0);
  }

  void destroyingWhileRenderingIsSafe() {
    auto* renderer = new PageRenderer;
    renderer->setDocument(m_doc);
    renderer->request({0, 1, 2, 3, 4, 5}, 2.0, 0);
    QTest::qWait(10);
    delete renderer;  // waits for the page in progress, drops the rest
    QTest::qWait(200);  // queued deliveries to the dead object must not arrive
  }
};

QTEST_MAIN(TestPageRenderer)
#include "tst_page_renderer.moc"
