// SPDX-License-Identifier: GPL-3.0-or-later
// SingleInstance: a second launch hands its files to the running one over a per-user local socket.
#include "instance/single_instance.h"

#include <QDir>
#include <QLocalServer>
#include <QUuid>
#include <QtConcurrent/QtConcurrentRun>
#include <QtTest>

using namespace quire;

class TestSingleInstance : public QObject {
  Q_OBJECT

  static QString uniqueName() { return QStringLiteral("quire-test-") + QUuid::createUuid().toString(QUuid::Id128).left(12); }

 private Q_SLOTS:
  void defaultNameIsPerUserAndStable() {
    QCOMPARE(SingleInstance::defaultServerName(), SingleInstance::defaultServerName());
    QVERIFY(SingleInstance::defaultServerName().startsWith(QStringLiteral("quire-")));
    const QByteArray user = qgetenv("USER");
    qputenv("USER", user + "-someone-else");
    const QString other = SingleInstance::defaultServerName();
    qputenv("USER", user);
    QVERIFY(other != SingleInstance::defaultServerName());
  }

  void noRunningInstanceMeansNoHandOff() {
    SingleInstance second(uniqueName());
    QVERIFY(!second.sendToRunning({QStringLiteral("a.pdf")}, 300));
  }

  void secondLaunchHandsFilesToTheFirst() {
    const QString name = uniqueName();
    SingleInstance first(name);
    QVERIFY(first.listen());
    QSignalSpy spy(&first, &SingleInstance::filesReceived);
    // The second launch blocks on its socket, so it runs on another thread while this one serves.
    QFuture<bool> sent = QtConcurrent::run([name] {
      // 10 s a wait (not the default 2 s): this thread serves it from inside QTRY's loop, slowly when loaded.
      return SingleInstance(name).sendToRunning({QStringLiteral("relative.pdf"), QStringLiteral("/abs/ü b.png")},
                                                10000);
    });
    QTRY_COMPARE_WITH_TIMEOUT(spy.count(), 1, 20000);
    QTRY_VERIFY(sent.isFinished());
    QVERIFY(sent.result());
    const QStringList files = spy.at(0).at(0).toStringList();
    QCOMPARE(files, QStringList({QDir::current().absoluteFilePath(QStringLiteral("relative.pdf")), QStringLiteral("/abs/ü b.png")}));
  }

  void staleSocketFromACrashIsReplaced() {
    const QString name = uniqueName();
    {
      QLocalServer crashed;
      QVERIFY(crashed.listen(name));
    }  // closed normally here; a crash would leave the file, which listen() also handles
    SingleInstance first(name);
    QVERIFY(first.listen());
    QVERIFY(first.isListening());
    SingleInstance another(name);
    QVERIFY(!another.listen());  // the name is really in use
  }
};

QTEST_MAIN(TestSingleInstance)
#include "tst_single_instance.moc"
