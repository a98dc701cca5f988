// SPDX-License-Identifier: GPL-3.0-or-later
// A measurement, not a unit test: scroll through a 500-page PDF at a steady pace and print the longest gap
// in the GUI event loop (a 0 ms timer records how late it fires). The PDF is generated with QPdfWriter only
// for this measurement. On a desktop the longest gap should stay under a frame (16 ms). Also printed: the
// longest gap in the GUI thread's own CPU time, which tells "our code was busy" apart from "the OS did not
// schedule us" on a loaded machine.
#include "documents/document_loader.h"
#include "viewer/page_view.h"

#include <QElapsedTimer>
#include <QPainter>
#include <QPdfWriter>
#include <QScrollBar>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>
#include <algorithm>
#include <ctime>

using namespace quire;

class TestScroll500Pages : public QObject {
  Q_OBJECT

  static qint64 threadCpuNs() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return qint64(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  }

  static QString makePdf(const QString& path, int pages) {
    QPdfWriter writer(path);
    writer.setPageSize(QPageSize(QPageSize::A4));
    writer.setResolution(144);
    QPainter p(&writer);
    for (int i = 0; i < pages; ++i) {
      if (i) writer.newPage();
      p.setFont(QFont(QStringLiteral("Sans"), 14));
      p.drawText(QRect(100, 80, 900, 60), Qt::AlignLeft, QStringLiteral("Page %1 of %2").arg(i + 1).arg(pages));
      p.setFont(QFont(QStringLiteral("Serif"), 9));
      for (int line = 0; line < 40; ++line)
        p.drawText(100, 200 + line * 32, QStringLiteral("Line %1: the quick brown fox jumps over the lazy dog, %2.").arg(line).arg(i * 40 + line));
      for (int b = 0; b < 6; ++b) p.fillRect(200 + b * 110, 1700 - (b * 37 + i) % 300, 80, (b * 37 + i) % 300, QColor::fromHsv(b * 60, 160, 220));
    }
    return path;
  }

 private Q_SLOTS:
  void scrollThrough500Pages() {
    QTemporaryDir dir;
    const QString pdf = makePdf(dir.filePath(QStringLiteral("500.pdf")), 500);
    const LoadResult r = DocumentLoader().load(pdf);
    QVERIFY2(r.ok(), qPrintable(r.message));
    QCOMPARE(r.document->pageCount(), 500);
    PageView view;
    view.resize(1000, 800);
    view.setDocument(r.document);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));

    QElapsedTimer clock;
    clock.start();
    qint64 last = clock.nsecsElapsed(), longest = 0, lastCpu = threadCpuNs(), longestCpu = 0;
    // Gaps go into a fixed histogram of 1 µs buckets (allocated before the clock starts): a growing vector of
    // millions of gaps reallocated at doubling sizes and was itself the longest "GUI stall" (6, 12, … 203 ms).
    std::vector<std::uint64_t> histogram(200001, 0);  // [0, 200 ms) in µs, last bucket = longer
    std::uint64_t turns = 0;
    QTimer probe;
    probe.setTimerType(Qt::PreciseTimer);
    probe.setInterval(0);
    connect(&probe, &QTimer::timeout, this, [&] {
      const qint64 now = clock.nsecsElapsed();
      const qint64 cpu = threadCpuNs();
      longest = std::max(longest, now - last);
      longestCpu = std::max(longestCpu, cpu - lastCpu);
      lastCpu = cpu;
      ++histogram[std::size_t(std::min<qint64>((now - last) / 1000, qint64(histogram.size() - 1)))];
      ++turns;
      last = now;
    });
    QScrollBar* bar = view.verticalScrollBar();
    QTimer scroller;
    scroller.setInterval(16);  // one step a frame, a third of a screen each: a fast, steady fling
    connect(&scroller, &QTimer::timeout, this, [&] { bar->setValue(bar->value() + view.viewport()->height() / 3); });
    probe.start();
    scroller.start();
    const qint64 started = clock.elapsed();
    // Under Qt Test's 300 s watchdog (QTEST_FUNCTION_TIMEOUT), so that a slow run fails with this line.
    QTRY_VERIFY_WITH_TIMEOUT(bar->value() >= bar->maximum(), 250000);
    const qint64 took = clock.elapsed() - started;
    scroller.stop();
    probe.stop();
    double p99 = 0;
    for (std::uint64_t seen = 0, i = 0; i < histogram.size(); ++i) {
      seen += histogram[i];
      if (seen * 100 >= turns * 99) {
        p99 = double(i) / 1e3;
        break;
      }
    }
    std::printf("scroll 500 pages: %lld ms, %zu event-loop turns, longest GUI gap %.2f ms (GUI-thread CPU in "
                "the longest gap %.2f ms), p99 %.3f ms, pages rendered %d, cancelled %d\n",
                took, std::size_t(turns), longest / 1e6, longestCpu / 1e6, p99, view.renderer()->renderedCount(), view.renderer()->cancelledCount());
    QCOMPARE(view.currentPage(), 499);
  }
};

QTEST_MAIN(TestScroll500Pages)
#include "tst_scroll_500_pages.moc"
