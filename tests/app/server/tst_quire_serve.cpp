// SPDX-License-Identifier: GPL-3.0-or-later
// `quire serve` as a child process with no display: --help says conversations are not saved; bad arguments exit
// 2, a bad model folder 3; with a tiny fixture model it prints the URL and the token, answers a real HTTP client
// (and refuses one without the token), keeps the same token across restarts (QSettings), and stops cleanly
// (exit 0) on SIGINT even with a generation running.
#include "fixture_case.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QNetworkAccessManager>
#include <QNetworkReply>
#include <QProcess>
#include <QSignalSpy>
#include <QTcpServer>
#include <QTemporaryDir>
#include <QtTest>

#include <csignal>

namespace {

struct Started {
  QString url, token;
};

}  // namespace

class TestQuireServe : public QObject {
  Q_OBJECT

  QTemporaryDir m_home;
  QNetworkAccessManager m_nam;

  void setup(QProcess* p) {
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    for (const char* v : {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}) env.remove(QString::fromLatin1(v));
    env.insert(QStringLiteral("XDG_CONFIG_HOME"), m_home.filePath(QStringLiteral("config")));
    env.insert(QStringLiteral("XDG_DATA_HOME"), m_home.filePath(QStringLiteral("data")));
    p->setProcessEnvironment(env);
  }

  static quint16 freePort() {
    QTcpServer s;
    s.listen(QHostAddress::LocalHost, 0);
    return s.serverPort();
  }

  static QString model() { return quire::test::modelsDir() + QStringLiteral("/tiny-f32/native"); }

  // Starts the server and reads the URL and token it prints.
  Started start(QProcess* p, quint16 port, const QStringList& extra = {}) {
    setup(p);
    p->start(QStringLiteral(QUIRE_EXECUTABLE),
             QStringList{QStringLiteral("serve"), QStringLiteral("--model"), model(), QStringLiteral("--port"),
                         QString::number(port), QStringLiteral("--device"), QStringLiteral("cpu")} + extra);
    Started s;
    QByteArray out;
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < 60000 && p->state() != QProcess::NotRunning) {
      p->waitForReadyRead(200);
      out += p->readAllStandardOutput();
      for (const QByteArray& line : out.split('\n')) {
        if (line.startsWith("URL:")) s.url = QString::fromUtf8(line.mid(4).trimmed());
        if (line.startsWith("Token:") && line.endsWith("")) s.token = QString::fromUtf8(line.mid(6).trimmed());
      }
      if (!s.url.isEmpty() && !s.token.isEmpty() && out.contains("Ctrl+C")) break;
    }
    return s;
  }

  int get(const QString& url, const QString& token, QJsonObject* json = nullptr) {
    QNetworkRequest r{QUrl(url)};
    if (!token.isEmpty()) r.setRawHeader("Authorization", "Bearer " + token.toUtf8());
    QNetworkReply* reply = m_nam.get(r);
    QSignalSpy done(reply, &QNetworkReply::finished);
    done.wait(20000);
    if (json) *json = QJsonDocument::fromJson(reply->readAll()).object();
    const int status = reply->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
    reply->deleteLater();
    return status;
  }

  static int stop(QProcess* p) {
    ::kill(pid_t(p->processId()), SIGINT);
    if (!p->waitForFinished(20000)) {
      p->kill();
      p->waitForFinished();
      return -100;
    }
    return p->exitStatus() == QProcess::NormalExit ? p->exitCode() : -1;
  }

 private Q_SLOTS:
  void initTestCase() {
    QVERIFY(m_home.isValid());
    if (!QFileInfo::exists(model() + QStringLiteral("/params.json")))
      QSKIP("tests/fixtures/models/tiny-f32 not found (make_fixtures.py)");
  }

  void helpAndExitCodes() {
    QProcess p;
    setup(&p);
    p.start(QStringLiteral(QUIRE_EXECUTABLE), {QStringLiteral("serve"), QStringLiteral("--help")});
    QVERIFY(p.waitForFinished(20000));
    QCOMPARE(p.exitCode(), 0);
    const QByteArray help = p.readAllStandardOutput();
    QVERIFY(help.contains("NOT saved"));
    QVERIFY(help.contains("--allow-local-files"));

    p.start(QStringLiteral(QUIRE_EXECUTABLE), {QStringLiteral("serve"), QStringLiteral("--port"), QStringLiteral("http")});
    QVERIFY(p.waitForFinished(20000));
    QCOMPARE(p.exitCode(), 2);
    p.start(QStringLiteral(QUIRE_EXECUTABLE), {QStringLiteral("serve"), QStringLiteral("--bogus")});
    QVERIFY(p.waitForFinished(20000));
    QCOMPARE(p.exitCode(), 2);
    p.start(QStringLiteral(QUIRE_EXECUTABLE), {QStringLiteral("serve"), QStringLiteral("--model"), m_home.filePath("nothing")});
    QVERIFY(p.waitForFinished(20000));
    QCOMPARE(p.exitCode(), 3);
  }

  void servesPrintsTokenAndStopsOnSigint() {
    const quint16 port = freePort();
    QProcess p;
    const Started s = start(&p, port);
    QCOMPARE(s.url, QStringLiteral("http://127.0.0.1:%1/v1").arg(port));
    QVERIFY(s.token.startsWith(QLatin1String("quire-")));
    QJsonObject models;
    QCOMPARE(get(s.url + QStringLiteral("/models"), s.token, &models), 200);
    QCOMPARE(models.value("data").toArray().at(0).toObject().value("id").toString(), QStringLiteral("native"));
    QCOMPARE(get(s.url + QStringLiteral("/models"), QString()), 401);

    // A long streamed answer is running when Ctrl+C arrives: the server still stops cleanly.
    QNetworkRequest r{QUrl(s.url + QStringLiteral("/chat/completions"))};
    r.setRawHeader("Authorization", "Bearer " + s.token.toUtf8());
    r.setHeader(QNetworkRequest::ContentTypeHeader, QByteArrayLiteral("application/json"));
    const QJsonObject body{{"messages", QJsonArray{QJsonObject{{"role", "user"}, {"content", "Tell me a long story."}}}},
                           {"max_tokens", 100000}, {"stream", true}, {"temperature", 1.0}, {"seed", 3}};
    QNetworkReply* reply = m_nam.post(r, QJsonDocument(body).toJson(QJsonDocument::Compact));
    QByteArray got;
    connect(reply, &QNetworkReply::readyRead, reply, [&] { got += reply->readAll(); });
    QTRY_VERIFY_WITH_TIMEOUT(got.count("data: ") >= 2 || reply->isFinished(), 20000);
    QElapsedTimer t;
    t.start();
    QCOMPARE(stop(&p), 0);
    QVERIFY2(t.elapsed() < 10000, qPrintable(QStringLiteral("%1 ms").arg(t.elapsed())));
    QVERIFY(p.readAllStandardError().contains("stopping"));
    reply->abort();
    reply->deleteLater();

    // The token was stored: a restart prints the same one.
    QProcess again;
    const Started s2 = start(&again, port);
    QCOMPARE(s2.token, s.token);
    QCOMPARE(stop(&again), 0);
  }

  // A prompt longer than --context is the client's to fix: 400 with OpenAI's code context_length_exceeded (not a
  // 500), streaming or not; the server goes on answering.
  void promptLongerThanTheContextIs400() {
    const quint16 port = freePort();
    QProcess p;
    const Started s = start(&p, port, {QStringLiteral("--context"), QStringLiteral("16")});
    QVERIFY2(!s.url.isEmpty(), p.readAllStandardError().constData());
    QString longText;
    for (int i = 0; i < 40; ++i) longText += QStringLiteral("Please describe the picture in more detail. ");
    for (const bool stream : {false, true}) {
      QNetworkRequest r{QUrl(s.url + QStringLiteral("/chat/completions"))};
      r.setRawHeader("Authorization", "Bearer " + s.token.toUtf8());
      r.setHeader(QNetworkRequest::ContentTypeHeader, QByteArrayLiteral("application/json"));
      const QJsonObject body{{"messages", QJsonArray{QJsonObject{{"role", "user"}, {"content", longText}}}},
                             {"max_tokens", 4}, {"stream", stream}, {"temperature", 0}};
      QNetworkReply* reply = m_nam.post(r, QJsonDocument(body).toJson(QJsonDocument::Compact));
      QSignalSpy done(reply, &QNetworkReply::finished);
      QVERIFY(done.wait(60000));
      const int status = reply->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
      const QByteArray answer = reply->readAll();
      reply->deleteLater();
      QVERIFY2(status == 400, qPrintable(QStringLiteral("stream %1: HTTP %2 %3").arg(stream).arg(status)
                                             .arg(QString::fromUtf8(answer))));
      const QJsonObject error = QJsonDocument::fromJson(answer).object().value("error").toObject();
      QCOMPARE(error.value("code").toString(), QStringLiteral("context_length_exceeded"));
      QCOMPARE(error.value("type").toString(), QStringLiteral("invalid_request_error"));
      QCOMPARE(error.value("param").toString(), QStringLiteral("messages"));
      QVERIFY2(error.value("message").toString().contains(QStringLiteral("16")), qPrintable(error.value("message").toString()));
    }
    QCOMPARE(get(s.url + QStringLiteral("/models"), s.token), 200);  // still serving
    QCOMPARE(stop(&p), 0);
  }
};

QTEST_GUILESS_MAIN(TestQuireServe)
#include "tst_quire_serve.moc"
