// SPDX-License-Identifier: GPL-3.0-or-later
// Command line: parsing, and `quire --version` running with no display at all.
#include "cli/command_line.h"

#include <QProcess>
#include <QtTest>

using namespace quire;

class TestCommandLine : public QObject {
  Q_OBJECT

  static CommandLine parse(const QList<QByteArray>& args) {
    std::vector<const char*> argv{"quire"};
    for (const QByteArray& a : args) argv.push_back(a.constData());
    return parseCommandLine(int(argv.size()), argv.data());
  }

 private Q_SLOTS:
  void parses_data() {
    QTest::addColumn<QList<QByteArray>>("args");
    QTest::addColumn<int>("mode");
    QTest::addColumn<QStringList>("files");
    QTest::newRow("nothing") << QList<QByteArray>{} << int(CommandLine::Mode::Gui) << QStringList{};
    QTest::newRow("files") << QList<QByteArray>{"a.pdf", "b c.png"} << int(CommandLine::Mode::Gui) << QStringList{"a.pdf", "b c.png"};
    QTest::newRow("version") << QList<QByteArray>{"x.pdf", "--version"} << int(CommandLine::Mode::Version) << QStringList{"x.pdf"};
    QTest::newRow("help") << QList<QByteArray>{"-h"} << int(CommandLine::Mode::Help) << QStringList{};
    QTest::newRow("unknown option") << QList<QByteArray>{"--frobnicate"} << int(CommandLine::Mode::Error) << QStringList{};
    QTest::newRow("after --") << QList<QByteArray>{"--", "--version"} << int(CommandLine::Mode::Gui) << QStringList{"--version"};
    QTest::newRow("qt option skipped") << QList<QByteArray>{"-platform", "offscreen", "d.pdf"} << int(CommandLine::Mode::Gui) << QStringList{"d.pdf"};
  }
  void parses() {
    QFETCH(QList<QByteArray>, args);
    QFETCH(int, mode);
    QFETCH(QStringList, files);
    const CommandLine cl = parse(args);
    QCOMPARE(int(cl.mode), mode);
    if (mode == int(CommandLine::Mode::Gui)) QCOMPARE(cl.files, files);
  }

  void newInstanceFlag() { QVERIFY(parse({"--new-instance", "a.pdf"}).newInstance); }

  void versionRunsWithoutADisplay() {
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.remove(QStringLiteral("DISPLAY"));
    env.remove(QStringLiteral("WAYLAND_DISPLAY"));
    env.remove(QStringLiteral("QT_QPA_PLATFORM"));
    p.setProcessEnvironment(env);
    p.start(QStringLiteral(QUIRE_EXECUTABLE), {QStringLiteral("--version")});
    QVERIFY(p.waitForFinished(10000));
    QCOMPARE(p.exitCode(), 0);
    QCOMPARE(QString::fromUtf8(p.readAllStandardOutput()).trimmed(), QStringLiteral("quire " QUIRE_VERSION));
  }
};

QTEST_GUILESS_MAIN(TestCommandLine)
#include "tst_command_line.moc"
