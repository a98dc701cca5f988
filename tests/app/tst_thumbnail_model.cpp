// SPDX-License-Identifier: GPL-3.0-or-later
// ThumbnailModel under QAbstractItemModelTester; thumbnails render on request and announce themselves.
#include "documents/document_loader.h"
#include "documents/thumbnail_model.h"
#include "image_stats.h"
#include "test_pdfs.h"

#include <QAbstractItemModelTester>
#include <QTemporaryDir>
#include <QtTest>

using namespace quire;

class TestThumbnailModel : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_dir;

 private Q_SLOTS:
  void modelIsConsistentAndRendersThumbnails() {
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult r = DocumentLoader().load(pdf);
    QVERIFY(r.ok());
    ThumbnailModel model;
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(model.rowCount(), 0);
    model.setDocument(r.document);
    QCOMPARE(model.rowCount(), r.document->pageCount());
    QCOMPARE(model.data(model.index(0), Qt::DisplayRole).toString(), QStringLiteral("1"));
    QVERIFY(model.data(model.index(0), Qt::AccessibleTextRole).toString().contains(QString::number(model.rowCount())));
    // Before rendering: a blank placeholder of the page's shape.
    const QImage before = model.data(model.index(0), Qt::DecorationRole).value<QImage>();
    QVERIFY(!before.isNull());
    QVERIFY(test::greyVariance(before) < 1);
    QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
    const int last = model.rowCount() - 1;
    model.requestVisible(last - 1, last + 5);  // clamped
    QTRY_VERIFY_WITH_TIMEOUT(changed.count() >= 2, 20000);
    const QImage chart = model.data(model.index(last), Qt::DecorationRole).value<QImage>();
    QVERIFY(test::greyVariance(chart) > 50);
    QVERIFY(std::max(chart.width(), chart.height()) <= model.thumbnailSize());
    const QImage manualPage = model.data(model.index(last - 1), Qt::DecorationRole).value<QImage>();
    QVERIFY(test::greyVariance(manualPage) > 5);
    QVERIFY(std::max(manualPage.width(), manualPage.height()) <= model.thumbnailSize());
    QVERIFY(model.renderer()->cached(0, 0.1).isNull());  // only what was asked
    model.setThumbnailSize(100);
    model.setDocument(nullptr);
    QCOMPARE(model.rowCount(), 0);
  }
};

QTEST_MAIN(TestThumbnailModel)
#include "tst_thumbnail_model.moc"
