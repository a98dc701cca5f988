// SPDX-License-Identifier: GPL-3.0-or-later
// Documents on files nobody here wrote: packaged manuals, a chart made by ImageMagick + Ghostscript, an
// encrypted PDF made by Ghostscript. Model image sizes/aspect, regions not blank, every bad input's message.
#include "documents/document_loader.h"
#include "documents/image_document.h"
#include "documents/model_image.h"
#include "image_stats.h"
#include "test_pdfs.h"

#include <QBuffer>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>
#include <unistd.h>

using namespace quire;

namespace {

// A device whose open() fails like a file without read permission (the injected failure).
class FailingDevice : public QIODevice {
 public:
  bool open(OpenMode) override {
    setErrorString(QStringLiteral("Permission denied"));
    return false;
  }
 protected:
  qint64 readData(char*, qint64) override { return -1; }
  qint64 writeData(const char*, qint64) override { return -1; }
};

void writeFile(const QString& path, const QByteArray& data) {
  QFile f(path);
  QVERIFY(f.open(QIODevice::WriteOnly));
  QCOMPARE(f.write(data), data.size());
}

quint32 crc32(const QByteArray& data) {
  quint32 c = 0xffffffffu;
  for (char ch : data) {
    c ^= quint8(ch);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

QByteArray pngChunk(const char* type, const QByteArray& payload) {
  QByteArray body = QByteArray(type, 4) + payload;
  QByteArray out;
  QDataStream s(&out, QIODevice::WriteOnly);
  s << quint32(payload.size());
  out += body;
  QByteArray crc;
  QDataStream cs(&crc, QIODevice::WriteOnly);
  cs << crc32(body);
  return out + crc;
}

// A PNG whose header says 40000 × 40000 RGBA (6.4 GB decoded) followed by a token of pixel data.
QByteArray hugePngHeader() {
  QByteArray ihdr;
  QDataStream s(&ihdr, QIODevice::WriteOnly);
  s << quint32(40000) << quint32(40000) << quint8(8) << quint8(6) << quint8(0) << quint8(0) << quint8(0);
  const QByteArray idat = qCompress(QByteArray(4001, '\0')).mid(4);  // zlib stream of the first row
  return QByteArray("\x89PNG\r\n\x1a\n", 8) + pngChunk("IHDR", ihdr) + pngChunk("IDAT", idat) + pngChunk("IEND", {});
}

}  // namespace

class TestDocuments : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_dir;
  DocumentLoader m_loader;
  QString path(const QString& name) const { return m_dir.filePath(name); }

 private Q_SLOTS:
  void initTestCase() { QVERIFY(m_dir.isValid()); }

  void packagedPdfsOpenAndRender_data() {
    QTest::addColumn<QString>("pdf");
    QString why;
    const QStringList pdfs = test::packagedPdfs(m_dir.path(), &why);
    if (pdfs.isEmpty()) QSKIP(qPrintable(why));
    for (const QString& p : pdfs.mid(0, 4)) QTest::newRow(qPrintable(QFileInfo(p).fileName())) << p;
  }
  void packagedPdfsOpenAndRender() {
    QFETCH(QString, pdf);
    const LoadResult r = m_loader.load(pdf);
    QVERIFY2(r.ok(), qPrintable(r.message));
    QCOMPARE(r.document->kind(), Document::Kind::Pdf);
    QVERIFY(r.document->pageCount() > 0);
    const QSizeF size = r.document->pageSize(0);
    QVERIFY(size.width() > 100 && size.height() > 100);
    const QImage page = r.document->render(0, 1.0);
    QCOMPARE(page.size(), size.toSize());
    QVERIFY(test::greyVariance(page) > 10);  // text on white
  }

  void multiPageDocumentWithFigure() {
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult manual = m_loader.load(test::packagedPdf(m_dir.path(), &why));
    const LoadResult r = m_loader.load(pdf);
    QVERIFY2(r.ok(), qPrintable(r.message));
    QCOMPARE(r.document->pageCount(), manual.document->pageCount() + 1);
    QVERIFY(r.document->pageCount() >= 3);
    // The last page is the chart: coloured bars, so high variance and real colour.
    const QImage chart = modelImageForPage(*r.document, r.document->pageCount() - 1, 512);
    QVERIFY(test::greyVariance(chart) > 100);
    bool coloured = false;
    for (int y = 0; y < chart.height() && !coloured; y += 4)
      for (int x = 0; x < chart.width() && !coloured; x += 4) {
        const QColor c = chart.pixelColor(x, y);
        coloured = std::abs(c.red() - c.blue()) > 80;
      }
    QVERIFY(coloured);
  }

  void modelImageSizes_data() {
    QTest::addColumn<int>("maxSide");
    QTest::newRow("pixtral-12b 1024") << 1024;
    QTest::newRow("smaller 512") << 512;
    QTest::newRow("odd 777") << 777;
    QTest::newRow("larger 1540") << 1540;
  }
  void modelImageSizes() {
    QFETCH(int, maxSide);
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult r = m_loader.load(pdf);
    QVERIFY(r.ok());
    for (int page : {0, r.document->pageCount() - 1}) {
      const QSizeF pts = r.document->pageSize(page);
      const QImage img = modelImageForPage(*r.document, page, maxSide);
      QCOMPARE(std::max(img.width(), img.height()), maxSide);
      const double want = pts.width() / pts.height(), got = double(img.width()) / img.height();
      QVERIFY2(std::abs(want - got) < 2.0 / maxSide * std::max(want, 1.0), qPrintable(QStringLiteral("%1 vs %2").arg(want).arg(got)));
      QVERIFY(test::greyVariance(img) > 10);
    }
  }

  void modelImageRegions_data() {
    QTest::addColumn<int>("pageFromEnd");  // 0: the chart page; 1..: manual pages
    QTest::addColumn<QRectF>("region");
    QTest::newRow("chart bars") << 0 << QRectF(0.1, 0.02, 0.8, 0.4);
    QTest::newRow("text top half of page 1") << -1 << QRectF(0.05, 0.05, 0.9, 0.45);
    QTest::newRow("tall narrow text strip") << -1 << QRectF(0.1, 0.1, 0.3, 0.7);
  }
  void modelImageRegions() {
    QFETCH(int, pageFromEnd);
    QFETCH(QRectF, region);
    QString why;
    const QString pdf = test::multiPagePdfWithFigure(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult r = m_loader.load(pdf);
    QVERIFY(r.ok());
    const int page = pageFromEnd < 0 ? 0 : r.document->pageCount() - 1 - pageFromEnd;
    const QSizeF pts = r.document->pageSize(page);
    const QImage img = modelImageForRegion(*r.document, page, region, 1024);
    QCOMPARE(std::max(img.width(), img.height()), 1024);
    const double want = region.width() * pts.width() / (region.height() * pts.height());
    QVERIFY(std::abs(want - double(img.width()) / img.height()) < 0.01 * std::max(want, 1.0));
    QVERIFY2(test::greyVariance(img) > 50, qPrintable(QString::number(test::greyVariance(img))));
    // A blank margin region, by contrast, is blank: the check can fail.
    const QImage margin = modelImageForRegion(*r.document, 0, QRectF(0.0, 0.97, 0.05, 0.03), 256);
    QVERIFY(test::greyVariance(margin) < 5);
  }

  void imageFilesKeepTheirResolution() {
    QString why;
    const QString png = test::chartPng(m_dir.path(), &why);
    if (png.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult r = m_loader.load(png);
    QVERIFY2(r.ok(), qPrintable(r.message));
    QCOMPARE(r.document->kind(), Document::Kind::Image);
    const QImage file(png);
    const QImage whole = modelImageForPage(*r.document, 0, 64);  // maxSide ignored: no resample
    QCOMPARE(whole.size(), file.size());
    QCOMPARE(whole.convertToFormat(QImage::Format_RGB32), file.convertToFormat(QImage::Format_RGB32));
    const QImage crop = modelImageForRegion(*r.document, 0, QRectF(0.25, 0.5, 0.5, 0.25), 64);
    QCOMPARE(crop.size(), QSize(300, 100));
    QCOMPARE(crop.convertToFormat(QImage::Format_RGB32), file.copy(150, 200, 300, 100).convertToFormat(QImage::Format_RGB32));
  }

  void searchFindsWordsPdftotextSees() {
    QString why;
    const QString pdf = test::packagedPdf(m_dir.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    QStringList words = test::pdfWords(pdf, 1, &why);
    if (words.isEmpty()) QSKIP(qPrintable(why));
    std::sort(words.begin(), words.end(), [](const QString& a, const QString& b) { return a.size() > b.size(); });
    const LoadResult r = m_loader.load(pdf);
    QVERIFY(r.ok());
    QVERIFY(r.document->hasText());
    const QList<QRectF> hits = r.document->search(0, words.first());
    QVERIFY2(!hits.isEmpty(), qPrintable(words.first()));
    for (const QRectF& h : hits) QVERIFY(QRectF(0, 0, 1, 1).contains(h));
    QVERIFY(r.document->search(0, QStringLiteral("qzxqzxnotaword")).isEmpty());
  }

  void encryptedPdfAsksForPassword() {
    QString why;
    const QString pdf = test::encryptedPdf(m_dir.path(), QStringLiteral("s3cret"), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const LoadResult r = m_loader.load(pdf);
    QCOMPARE(r.error, DocumentError::PasswordRequired);
    QVERIFY(r.document);
    QVERIFY(r.document->isLocked());
    QVERIFY(r.message.contains(QStringLiteral("password")));
    QCOMPARE(r.document->pageCount(), 0);
    QVERIFY(r.document->render(0, 1.0).isNull());
    QCOMPARE(r.document->unlock(QStringLiteral("wrong")), DocumentError::WrongPassword);
    QVERIFY(documentErrorMessage(DocumentError::WrongPassword, pdf).contains(QStringLiteral("wrong")));
    QVERIFY(r.document->isLocked());
    QCOMPARE(r.document->unlock(QStringLiteral("s3cret")), DocumentError::None);
    QVERIFY(!r.document->isLocked());
    QCOMPARE(r.document->pageCount(), 2);
    QVERIFY(test::greyVariance(r.document->render(0, 0.5)) > 10);
  }

  void badInputs_data() {
    QTest::addColumn<QString>("file");
    QTest::addColumn<int>("expected");
    QString why;
    const QString good = test::packagedPdf(m_dir.path(), &why);
    QByteArray real;
    if (!good.isEmpty()) {
      QFile f(good);
      if (f.open(QIODevice::ReadOnly)) real = f.readAll();
    }
    writeFile(path(QStringLiteral("corrupt.pdf")), QByteArray("%PDF-1.7\n") + QByteArray(4000, '\x07') + "\n%%EOF\n");
    if (!real.isEmpty()) writeFile(path(QStringLiteral("truncated.pdf")), real.left(real.size() / 50));
    writeFile(path(QStringLiteral("notes.pdf")), "These are plain-text notes, not a PDF at all.\n");
    writeFile(path(QStringLiteral("empty.pdf")), {});
    writeFile(path(QStringLiteral("huge.png")), hugePngHeader());
    QImage small(64, 64, QImage::Format_RGB32);
    small.fill(Qt::red);
    QByteArray png;
    QBuffer buf(&png);
    buf.open(QIODevice::WriteOnly);
    small.save(&buf, "PNG");
    writeFile(path(QStringLiteral("damaged.png")), png.left(png.size() / 2));
    writeFile(path(QStringLiteral("random.xyz")), QByteArray(512, '\x13'));
    QTest::newRow("corrupt PDF") << path(QStringLiteral("corrupt.pdf")) << int(DocumentError::Corrupt);
    if (!real.isEmpty()) QTest::newRow("truncated PDF") << path(QStringLiteral("truncated.pdf")) << int(DocumentError::Corrupt);
    QTest::newRow("non-PDF named .pdf") << path(QStringLiteral("notes.pdf")) << int(DocumentError::NotPdf);
    QTest::newRow("0-byte file") << path(QStringLiteral("empty.pdf")) << int(DocumentError::Empty);
    QTest::newRow("missing file") << path(QStringLiteral("nope.pdf")) << int(DocumentError::NotFound);
    QTest::newRow("40000x40000 PNG") << path(QStringLiteral("huge.png")) << int(DocumentError::TooLarge);
    QTest::newRow("damaged PNG") << path(QStringLiteral("damaged.png")) << int(DocumentError::BadImage);
    QTest::newRow("unknown format") << path(QStringLiteral("random.xyz")) << int(DocumentError::Unsupported);
    writeFile(path(QStringLiteral("locked.pdf")), real.isEmpty() ? QByteArray("%PDF-1.4\n") : real);
    QFile::setPermissions(path(QStringLiteral("locked.pdf")), QFileDevice::Permissions());
    QTest::newRow("unreadable (mode 000)") << path(QStringLiteral("locked.pdf")) << int(DocumentError::Unreadable);
  }
  void badInputs() {
    QFETCH(QString, file);
    QFETCH(int, expected);
    if (expected == int(DocumentError::Unreadable) && ::geteuid() == 0)
      QSKIP("running as root: mode 000 does not stop root (see unreadableThroughInjectedOpenFailure)");
    QString why;
    const LoadResult good = m_loader.load(test::packagedPdf(m_dir.path(), &why));  // open before the bad one
    const LoadResult r = m_loader.load(file);
    QCOMPARE(int(r.error), expected);
    QVERIFY(!r.document);
    QVERIFY(!r.message.isEmpty());
    QVERIFY2(r.message.contains(QFileInfo(file).fileName()), qPrintable(r.message));
    // Another open document is unaffected.
    if (good.ok()) QVERIFY(test::greyVariance(good.document->render(0, 0.5)) > 10);
  }

  void unreadableThroughInjectedOpenFailure() {
    const QString file = path(QStringLiteral("perm.pdf"));
    writeFile(file, "%PDF-1.4\n");
    DocumentLoader loader;
    loader.setDeviceOpener([](const QString&) { return std::make_unique<FailingDevice>(); });
    const LoadResult r = loader.load(file);
    QCOMPARE(r.error, DocumentError::Unreadable);
    QVERIFY(r.message.contains(QStringLiteral("perm.pdf")));
    QVERIFY(r.message.contains(QStringLiteral("Permission denied")));
  }

  void largeImagesOverBudgetAreDownscaledOrRefused() {
    // A 3000 × 2000 JPEG against a 4 MiB budget: JPEG decodes scaled, so it opens smaller; PNG cannot, so no.
    QImage big(3000, 2000, QImage::Format_RGB32);
    big.fill(Qt::darkCyan);
    QVERIFY(big.save(path(QStringLiteral("big.jpg")), "JPEG"));
    QVERIFY(big.save(path(QStringLiteral("big.png")), "PNG"));
    DocumentLoader loader;
    loader.setImageBudgetBytes(qint64(4) << 20);
    const LoadResult jpg = loader.load(path(QStringLiteral("big.jpg")));
    QVERIFY2(jpg.ok(), qPrintable(jpg.message));
    auto* image = static_cast<ImageDocument*>(jpg.document.get());
    QVERIFY(image->isDownscaled());
    QCOMPARE(image->originalSize(), QSize(3000, 2000));
    QVERIFY(qint64(image->image().width()) * image->image().height() * 4 <= loader.imageBudgetBytes());
    QCOMPARE(loader.load(path(QStringLiteral("big.png"))).error, DocumentError::TooLarge);
  }
};

QTEST_MAIN(TestDocuments)
#include "tst_documents.moc"
