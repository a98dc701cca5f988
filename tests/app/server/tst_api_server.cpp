// SPDX-License-Identifier: GPL-3.0-or-later
// The local API (app/server) started in-process on free ports with the tiny fixture model, answered by real HTTP
// clients: QNetworkAccessManager for well-formed requests, a raw QTcpSocket for what QNAM will not send (foreign
// Host headers, oversized and chunked bodies). The answers are compared with pixtral::Session::generate run
// directly on the same messages (images decoded by Qt from the same PNG bytes), and with the fixture's reference
// greedy tokens.
#include "fixture_case.h"
#include "inference/engine_image.h"
#include "inference/inference_thread.h"
#include "server/api_server.h"
#include "server/api_token.h"
#include "server/chat_request.h"

#include <pixtral/model.h>
#include <pixtral/session.h>

#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QNetworkAccessManager>
#include <QNetworkReply>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTcpSocket>
#include <QtTest>

#include <memory>

using namespace quire;
using quire::test::FixtureCase;

namespace {

const QString kToken = QStringLiteral("quire-test-token-0123456789abcdef");

struct Http {
  int status = 0;
  QByteArray body;
  QJsonObject json;
  QList<QByteArray> events;  ///< SSE `data:` payloads, in order
  QNetworkReply::NetworkError error = QNetworkReply::NoError;
};

QList<QByteArray> sseEvents(const QByteArray& body) {
  QList<QByteArray> out;
  for (const QByteArray& block : body.split('\n'))
    if (block.startsWith("data: ")) out << block.mid(6);
  return out;
}

QString pngDataUrl(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return QStringLiteral("data:image/png;base64,") + QString::fromLatin1(f.readAll().toBase64());
}

// The engine's own answer for the same messages: a fresh session on a directly loaded model.
struct EngineAnswer {
  bool ok = false;
  QString error;
  pixtral::Generation gen;
};

}  // namespace

class TestApiServer : public QObject {
  Q_OBJECT

  std::unique_ptr<InferenceThread> m_thread;
  std::unique_ptr<ApiServer> m_server;  // defaults: local files off, 32 MB, queue 2
  std::unique_ptr<ApiServer> m_local;   // local files on, 4 KB bodies
  std::shared_ptr<pixtral::Model> m_model;
  QNetworkAccessManager m_nam;
  FixtureCase m_case;
  QString m_png, m_question;

  QUrl url(const ApiServer& s, const QString& path) const {
    return QUrl(QStringLiteral("http://127.0.0.1:%1%2").arg(s.port()).arg(path));
  }

  QNetworkRequest request(const ApiServer& s, const QString& path, const QByteArray& token = kToken.toUtf8()) const {
    QNetworkRequest r(url(s, path));
    r.setHeader(QNetworkRequest::ContentTypeHeader, QByteArrayLiteral("application/json"));
    if (!token.isEmpty()) r.setRawHeader("Authorization", "Bearer " + token);
    return r;
  }

  static Http wait(QNetworkReply* reply, int timeoutMs = 60000) {
    QSignalSpy done(reply, &QNetworkReply::finished);
    if (!reply->isFinished()) done.wait(timeoutMs);
    Http h;
    h.status = reply->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
    h.body = reply->readAll();
    h.error = reply->error();
    h.json = QJsonDocument::fromJson(h.body).object();
    h.events = sseEvents(h.body);
    reply->deleteLater();
    return h;
  }

  Http post(const ApiServer& s, const QJsonObject& body, const QByteArray& token = kToken.toUtf8()) {
    return wait(m_nam.post(request(s, QStringLiteral("/v1/chat/completions"), token),
                           QJsonDocument(body).toJson(QJsonDocument::Compact)));
  }

  // A raw request: what QNetworkAccessManager will not send. The server runs on this thread, so the client waits
  // with the event loop running (QTest::qWait), never with the blocking waitFor* calls. Reads until the server
  // closes or a whole response (by Content-Length) arrived.
  static Http raw(quint16 port, const QByteArray& bytes, int timeoutMs = 10000) {
    QTcpSocket sock;
    sock.connectToHost(QHostAddress::LocalHost, port);
    Http h;
    QByteArray in;
    bool sent = false;
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < timeoutMs) {
      QTest::qWait(5);
      if (!sent && sock.state() == QAbstractSocket::ConnectedState) {
        sock.write(bytes);
        sent = true;
      }
      in += sock.readAll();
      if (sent && sock.state() == QAbstractSocket::UnconnectedState) break;
      const qsizetype end = in.indexOf("\r\n\r\n");
      if (end < 0) continue;
      qint64 length = -1;
      for (const QByteArray& line : in.left(end).split('\n'))
        if (line.toLower().startsWith("content-length:")) length = line.mid(15).trimmed().toLongLong();
      if (length >= 0 && in.size() >= end + 4 + length) break;
    }
    in += sock.readAll();
    const QList<QByteArray> status = in.left(in.indexOf("\r\n")).split(' ');
    if (status.size() >= 2) h.status = status[1].toInt();
    const qsizetype end = in.indexOf("\r\n\r\n");
    h.body = end >= 0 ? in.mid(end + 4) : QByteArray();
    h.json = QJsonDocument::fromJson(h.body).object();
    return h;
  }

  static QByteArray rawPost(const QByteArray& host, const QByteArray& body) {
    return "POST /v1/chat/completions HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + kToken.toUtf8() +
           "\r\nContent-Type: application/json\r\nContent-Length: " + QByteArray::number(body.size()) + "\r\n\r\n" +
           body;
  }

  QJsonObject imageQuestion(const QString& imageUrl, int maxTokens, bool stream = false) const {
    const QJsonArray content{QJsonObject{{"type", "image_url"}, {"image_url", QJsonObject{{"url", imageUrl}}}},
                             QJsonObject{{"type", "text"}, {"text", m_question}}};
    return {{"model", "tiny-f32"},
            {"messages", QJsonArray{QJsonObject{{"role", "user"}, {"content", content}}}},
            {"temperature", 0},
            {"max_tokens", maxTokens},
            {"stream", stream}};
  }

  EngineAnswer engine(const QList<InferenceMessage>& messages, const pixtral::GenerateParams& params) const {
    EngineAnswer a;
    std::vector<pixtral::Message> msgs;
    for (const InferenceMessage& m : messages) {
      pixtral::Message e;
      e.role = m.role;
      for (const InferencePart& p : m.parts) {
        if (p.kind == InferencePart::Kind::Text) {
          e.parts.push_back(pixtral::ContentPart::from_text(p.text.toStdString()));
        } else {
          auto img = std::make_shared<pixtral::Image>();
          if (!toEngineImage(p.image, img.get(), &a.error)) return a;
          e.parts.push_back(pixtral::ContentPart::from_image(std::move(img)));
        }
      }
      msgs.push_back(std::move(e));
    }
    pixtral::SessionOptions so;
    so.context_length = m_server->options().contextLength;
    auto session = m_model->create_session(so);
    if (!session.ok()) {
      a.error = QString::fromStdString(session.status().message());
      return a;
    }
    auto gen = (*session)->generate(msgs, params);
    if (!gen.ok()) {
      a.error = QString::fromStdString(gen.status().message());
      return a;
    }
    a.gen = std::move(gen.value());
    a.ok = true;
    return a;
  }

  static QString contentOf(const Http& h) {
    return h.json.value("choices").toArray().at(0).toObject().value("message").toObject().value("content").toString();
  }

  // Streams a long answer on @p s; returns once its first content chunk arrived (the reply is still open).
  QNetworkReply* startLongStream(const ApiServer& s, QByteArray* received) {
    QJsonObject body = imageQuestion(pngDataUrl(m_png), 100000, true);
    QNetworkReply* reply = m_nam.post(request(s, QStringLiteral("/v1/chat/completions")),
                                      QJsonDocument(body).toJson(QJsonDocument::Compact));
    connect(reply, &QNetworkReply::readyRead, reply, [reply, received] { *received += reply->readAll(); });
    QElapsedTimer t;
    t.start();
    while (sseEvents(*received).size() < 2 && !reply->isFinished() && t.elapsed() < 30000)
      QTest::qWait(5);
    return reply;
  }

 private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("QuireTest"));
    QCoreApplication::setApplicationName(QStringLiteral("tst_api_server"));
    m_case = test::fixtureCase(QStringLiteral("tiny-f32"), QStringLiteral("b_image"));
    if (m_case.name.isEmpty()) QSKIP("tests/fixtures/models/tiny-f32/cases/b_image not found (make_fixtures.py)");
    const QList<InferenceMessage> msgs = test::caseMessages(m_case);
    QVERIFY(msgs.size() == 1 && msgs[0].parts.size() == 2);
    QVERIFY(msgs[0].parts[0].kind == InferencePart::Kind::Image);
    const QJsonArray content = m_case.json.value("messages").toArray().at(0).toObject().value("content").toArray();
    m_png = QDir(m_case.dir).filePath(content.at(0).toObject().value("image_url").toObject().value("url").toString());
    m_question = msgs[0].parts[1].text;
    const QString modelDir = m_case.modelDir + QStringLiteral("/native");

    pixtral::LoadOptions lo;
    lo.device = pixtral::Device::cpu;
    auto model = pixtral::Model::load(modelDir.toStdString(), lo);
    QVERIFY2(model.ok(), model.ok() ? "" : model.status().message().c_str());
    m_model = model.value();

    m_thread = std::make_unique<InferenceThread>();
    // Counted on this thread (queued from the worker's): a QSignalSpy's wait() could miss an early emission.
    int loaded = 0;
    QObject receiver;
    connect(m_thread->worker(), &InferenceWorker::modelLoaded, &receiver, [&] { ++loaded; });
    ModelLoadOptions wlo;
    wlo.device = pixtral::Device::cpu;
    m_thread->worker()->loadModel(modelDir, wlo);
    QTRY_COMPARE_WITH_TIMEOUT(loaded, 1, 60000);

    ApiServerOptions o;
    o.token = kToken;
    o.port = 0;
    o.modelId = QStringLiteral("tiny-f32");
    o.contextLength = 65536;
    o.maxQueue = 2;
    m_server = std::make_unique<ApiServer>(m_thread->worker(), o);
    QString why;
    QVERIFY2(m_server->start(&why), qPrintable(why));
    o.allowLocalFiles = true;
    o.maxBodyBytes = 4096;
    m_local = std::make_unique<ApiServer>(m_thread->worker(), o);
    QVERIFY2(m_local->start(&why), qPrintable(why));
    QVERIFY(m_server->port() != 0 && m_local->port() != m_server->port());
  }

  void cleanupTestCase() {
    m_local.reset();
    m_server.reset();
    m_thread.reset();
  }

  void modelsListsTheModel() {
    const Http h = wait(m_nam.get(request(*m_server, QStringLiteral("/v1/models"))));
    QCOMPARE(h.status, 200);
    QCOMPARE(h.json.value("object").toString(), QStringLiteral("list"));
    const QJsonArray data = h.json.value("data").toArray();
    QCOMPARE(data.size(), 1);
    QCOMPARE(data.at(0).toObject().value("id").toString(), QStringLiteral("tiny-f32"));
    QCOMPARE(data.at(0).toObject().value("object").toString(), QStringLiteral("model"));
  }

  void nonStreamingEqualsEngineGreedy() {
    const Http h = post(*m_server, imageQuestion(pngDataUrl(m_png), m_case.maxTokens));
    QCOMPARE(h.status, 200);
    QCOMPARE(h.json.value("object").toString(), QStringLiteral("chat.completion"));
    QCOMPARE(h.json.value("model").toString(), QStringLiteral("tiny-f32"));
    QVERIFY(h.json.value("id").toString().startsWith("chatcmpl-"));

    pixtral::GenerateParams p;
    p.temperature = 0;
    p.max_tokens = m_case.maxTokens;
    const EngineAnswer e = engine(test::caseMessages(m_case), p);
    QVERIFY2(e.ok, qPrintable(e.error));
    QCOMPARE(e.gen.tokens, m_case.greedyTokens);  // the engine itself agrees with the reference
    QCOMPARE(contentOf(h), QString::fromStdString(e.gen.text));
    const QJsonObject usage = h.json.value("usage").toObject();
    QCOMPARE(usage.value("prompt_tokens").toInt(), int(e.gen.prompt_tokens.size()));
    QCOMPARE(usage.value("completion_tokens").toInt(), int(e.gen.tokens.size()));
    QCOMPARE(usage.value("total_tokens").toInt(), int(e.gen.prompt_tokens.size() + e.gen.tokens.size()));
    QCOMPARE(h.json.value("choices").toArray().at(0).toObject().value("finish_reason").toString(),
             QString::fromLatin1(pixtral::finish_reason_name(e.gen.finish)));
  }

  void streamingConcatenationEqualsNonStreaming() {
    const Http plain = post(*m_server, imageQuestion(pngDataUrl(m_png), m_case.maxTokens));
    QCOMPARE(plain.status, 200);
    QJsonObject body = imageQuestion(pngDataUrl(m_png), m_case.maxTokens, true);
    body.insert("stream_options", QJsonObject{{"include_usage", true}});
    const Http s = post(*m_server, body);
    QCOMPARE(s.status, 200);
    QVERIFY(s.events.size() >= 4);
    QCOMPARE(s.events.last(), QByteArray("[DONE]"));
    QString text, finish, id;
    QJsonObject usage;
    bool sawRole = false;
    for (qsizetype i = 0; i + 1 < s.events.size(); ++i) {
      const QJsonObject c = QJsonDocument::fromJson(s.events[i]).object();
      QCOMPARE(c.value("object").toString(), QStringLiteral("chat.completion.chunk"));
      if (id.isEmpty()) id = c.value("id").toString();
      QCOMPARE(c.value("id").toString(), id);  // one id for the whole stream
      if (c.contains("usage")) usage = c.value("usage").toObject();
      const QJsonObject choice = c.value("choices").toArray().at(0).toObject();
      const QJsonObject delta = choice.value("delta").toObject();
      if (delta.value("role").toString() == QLatin1String("assistant")) sawRole = true;
      text += delta.value("content").toString();
      if (choice.value("finish_reason").isString()) finish = choice.value("finish_reason").toString();
    }
    QVERIFY(sawRole);
    QCOMPARE(text, contentOf(plain));
    QCOMPARE(finish, plain.json.value("choices").toArray().at(0).toObject().value("finish_reason").toString());
    QCOMPARE(usage, plain.json.value("usage").toObject());
  }

  void systemHistoryAndSamplingHonoured() {
    // system + user(image, text) + assistant + user, sampled at temperature 0.9 / top_p 0.95 / seed 11.
    const QString followup = m_case.json.value("followup").toString(QStringLiteral("Say it again, shorter."));
    const QJsonArray content{QJsonObject{{"type", "image_url"}, {"image_url", QJsonObject{{"url", pngDataUrl(m_png)}}}},
                             QJsonObject{{"type", "text"}, {"text", m_question}}};
    const QJsonObject body{
        {"messages", QJsonArray{QJsonObject{{"role", "system"}, {"content", "You answer briefly."}},
                                QJsonObject{{"role", "user"}, {"content", content}},
                                QJsonObject{{"role", "assistant"}, {"content", "A small picture."}},
                                QJsonObject{{"role", "user"}, {"content", followup}}}},
        {"temperature", 0.9}, {"top_p", 0.95}, {"seed", 11}, {"max_tokens", 12}};
    const Http h = post(*m_server, body);
    QCOMPARE(h.status, 200);

    QList<InferenceMessage> msgs;
    msgs << InferenceMessage{pixtral::Role::system, {InferencePart::fromText("You answer briefly.")}, {}};
    msgs << test::caseMessages(m_case);
    msgs << InferenceMessage{pixtral::Role::assistant, {InferencePart::fromText("A small picture.")}, {}};
    msgs << InferenceMessage{pixtral::Role::user, {InferencePart::fromText(followup)}, {}};
    pixtral::GenerateParams p;
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    p.seed = 11;
    p.max_tokens = 12;
    const EngineAnswer e = engine(msgs, p);
    QVERIFY2(e.ok, qPrintable(e.error));
    QCOMPARE(contentOf(h), QString::fromStdString(e.gen.text));
    QCOMPARE(h.json.value("usage").toObject().value("prompt_tokens").toInt(), int(e.gen.prompt_tokens.size()));
    QCOMPARE(h.json.value("usage").toObject().value("completion_tokens").toInt(), int(e.gen.tokens.size()));
    QVERIFY(e.gen.tokens.size() <= 12);
  }

  // A prompt longer than the served context is the client's to fix: 400 context_length_exceeded (OpenAI's code)
  // in both modes — a stream has sent nothing yet, so it gets the status too — and the server goes on.
  void promptLongerThanTheContextIs400() {
    ApiServerOptions o = m_server->options();
    o.port = 0;
    o.contextLength = 32;
    ApiServer small(m_thread->worker(), o);
    QString why;
    QVERIFY2(small.start(&why), qPrintable(why));
    QSignalSpy done(&small, &ApiServer::completionDone);
    QString longText;
    for (int i = 0; i < 40; ++i) longText += QStringLiteral("Please describe the picture in more detail. ");
    for (const bool stream : {false, true}) {
      const QJsonObject body{{"messages", QJsonArray{QJsonObject{{"role", "user"}, {"content", longText}}}},
                             {"max_tokens", 4}, {"temperature", 0}, {"stream", stream}};
      const Http h = post(small, body);
      QVERIFY2(h.status == 400, qPrintable(QStringLiteral("stream %1: HTTP %2 %3").arg(stream).arg(h.status)
                                               .arg(QString::fromUtf8(h.body))));
      const QJsonObject error = h.json.value("error").toObject();
      QCOMPARE(error.value("type").toString(), QStringLiteral("invalid_request_error"));
      QCOMPARE(error.value("code").toString(), QStringLiteral("context_length_exceeded"));
      QCOMPARE(error.value("param").toString(), QStringLiteral("messages"));
      QVERIFY2(error.value("message").toString().contains(QStringLiteral("32")), qPrintable(error.value("message").toString()));
      QVERIFY(h.events.isEmpty());  // no event stream began
    }
    QTRY_COMPARE(done.count(), 2);
    QCOMPARE(done.at(0).at(1).toString(), QStringLiteral("error"));
    QVERIFY(!small.isGenerating());
    // A question that fits still gets its answer (same worker, another server).
    const Http fine = post(*m_server, imageQuestion(pngDataUrl(m_png), 2));
    QCOMPARE(fine.status, 200);
  }

  // Two servers sharing one worker (the GUI and `quire serve` could too): their requests run one after the
  // other on the same conversation id, and each stream carries only its own request's pieces (matched by id).
  void twoHostsOnOneWorkerKeepTheirAnswers() {
    ApiServerOptions o = m_server->options();
    o.port = 0;
    ApiServer a(m_thread->worker(), o), b(m_thread->worker(), o);
    QString why;
    QVERIFY2(a.start(&why) && b.start(&why), qPrintable(why));
    const QStringList questions{QStringLiteral("Describe a cat in one sentence."), QStringLiteral("Name three colours.")};
    QList<QByteArray> received(2);
    QList<QNetworkReply*> replies;
    for (int i = 0; i < 2; ++i) {
      const QJsonObject body{{"messages", QJsonArray{QJsonObject{{"role", "user"}, {"content", questions[i]}}}},
                             {"max_tokens", 12}, {"temperature", 0}, {"stream", true}};
      QNetworkReply* r = m_nam.post(request(i == 0 ? a : b, QStringLiteral("/v1/chat/completions")),
                                    QJsonDocument(body).toJson(QJsonDocument::Compact));
      connect(r, &QNetworkReply::readyRead, r, [r, &received, i] { received[i] += r->readAll(); });
      replies << r;
    }
    QTRY_VERIFY_WITH_TIMEOUT(replies[0]->isFinished() && replies[1]->isFinished(), 60000);
    for (int i = 0; i < 2; ++i) {
      received[i] += replies[i]->readAll();
      QCOMPARE(replies[i]->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt(), 200);
      replies[i]->deleteLater();
      QString text;
      for (const QByteArray& e : sseEvents(received[i])) {
        if (e == "[DONE]") continue;
        text += QJsonDocument::fromJson(e).object().value("choices").toArray().at(0).toObject()
                    .value("delta").toObject().value("content").toString();
      }
      pixtral::GenerateParams p;
      p.temperature = 0;
      p.max_tokens = 12;
      const EngineAnswer e = engine({InferenceMessage{pixtral::Role::user, {InferencePart::fromText(questions[i])}, {}}}, p);
      QVERIFY2(e.ok, qPrintable(e.error));
      QCOMPARE(text, QString::fromStdString(e.gen.text));
    }
  }

  void tokenRequired() {
    const Http none = post(*m_server, imageQuestion(pngDataUrl(m_png), 2), QByteArray());
    QCOMPARE(none.status, 401);
    QCOMPARE(none.json.value("error").toObject().value("type").toString(), QStringLiteral("authentication_error"));
    const Http wrong = post(*m_server, imageQuestion(pngDataUrl(m_png), 2), "quire-not-the-token-0123456789abcdef");
    QCOMPARE(wrong.status, 401);
    QVERIFY(!wrong.json.value("error").toObject().value("message").toString().isEmpty());
    const Http models = wait(m_nam.get(request(*m_server, QStringLiteral("/v1/models"), QByteArray())));
    QCOMPARE(models.status, 401);
  }

  void browserOriginRefused() {
    QNetworkRequest r = request(*m_server, QStringLiteral("/v1/models"));
    r.setRawHeader("Origin", "http://evil.example");
    const Http h = wait(m_nam.get(r));
    QCOMPARE(h.status, 403);
    QCOMPARE(h.json.value("error").toObject().value("code").toString(), QStringLiteral("origin_not_allowed"));
  }

  void foreignHostRefused() {
    const QByteArray body = "{}";
    for (const QByteArray& host : {QByteArray("evil.example"), "evil.example:" + QByteArray::number(m_server->port()),
                                  QByteArray("127.0.0.1:1")}) {
      const Http h = raw(m_server->port(), rawPost(host, body));
      QCOMPARE(h.status, 403);
      QCOMPARE(h.json.value("error").toObject().value("code").toString(), QStringLiteral("host_not_allowed"));
    }
    // The allowed names pass the Host check (and then fail on the empty request, 400).
    for (const QByteArray& name : {QByteArray("localhost:"), QByteArray("127.0.0.1:"), QByteArray("[::1]:")}) {
      const Http h = raw(m_server->port(), rawPost(name + QByteArray::number(m_server->port()), body));
      QCOMPARE(h.status, 400);
    }
  }

  void oversizedBodyRefused() {
    // Declared too large: answered from the head, the body is never sent.
    const QByteArray head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:" +
                            QByteArray::number(m_server->port()) + "\r\nAuthorization: Bearer " + kToken.toUtf8() +
                            "\r\nContent-Type: application/json\r\nContent-Length: 40000000\r\n\r\n{\"messages\":";
    const Http declared = raw(m_server->port(), head);
    QCOMPARE(declared.status, 413);
    QCOMPARE(declared.json.value("error").toObject().value("code").toString(), QStringLiteral("request_too_large"));
    // A real body over the 4 KB limit of the second server, from an ordinary client.
    QJsonObject big = imageQuestion(QStringLiteral("data:image/png;base64,") + QString(8000, QLatin1Char('A')), 2);
    const Http sent = post(*m_local, big);
    QCOMPARE(sent.status, 413);
    // Chunked, no Content-Length: counted as it arrives.
    QByteArray chunked = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:" + QByteArray::number(m_local->port()) +
                         "\r\nAuthorization: Bearer " + kToken.toUtf8() + "\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 40; ++i) chunked += "1000\r\n" + QByteArray(4096, 'x') + "\r\n";
    const Http counted = raw(m_local->port(), chunked);
    QCOMPARE(counted.status, 413);
    // Under the limit is fine.
    const Http small = wait(m_nam.get(request(*m_local, QStringLiteral("/v1/models"))));
    QCOMPARE(small.status, 200);
  }

  void badRequests() {
    const Http json = wait(m_nam.post(request(*m_server, QStringLiteral("/v1/chat/completions")), QByteArray("{\"messages\": [")));
    QCOMPARE(json.status, 400);
    QCOMPARE(json.json.value("error").toObject().value("type").toString(), QStringLiteral("invalid_request_error"));
    QCOMPARE(json.json.value("error").toObject().value("code").toString(), QStringLiteral("invalid_json"));

    QJsonObject hot = imageQuestion(pngDataUrl(m_png), 2);
    hot.insert("temperature", 5);
    const Http t = post(*m_server, hot);
    QCOMPARE(t.status, 400);
    QCOMPARE(t.json.value("error").toObject().value("param").toString(), QStringLiteral("temperature"));

    const Http noMessages = post(*m_server, QJsonObject{{"model", "tiny-f32"}});
    QCOMPARE(noMessages.status, 400);
    QCOMPARE(noMessages.json.value("error").toObject().value("param").toString(), QStringLiteral("messages"));

    const QJsonObject endsWithAnswer{{"messages", QJsonArray{QJsonObject{{"role", "user"}, {"content", "hi"}},
                                                             QJsonObject{{"role", "assistant"}, {"content", "hello"}}}}};
    QCOMPARE(post(*m_server, endsWithAnswer).status, 400);

    const Http badImage = post(*m_server, imageQuestion(QStringLiteral("data:image/png;base64,bm90IGFuIGltYWdl"), 2));
    QCOMPARE(badImage.status, 400);
    QCOMPARE(badImage.json.value("error").toObject().value("code").toString(), QStringLiteral("invalid_image_url"));

    const Http remote = post(*m_server, imageQuestion(QStringLiteral("https://example.com/a.png"), 2));
    QCOMPARE(remote.status, 400);

    QJsonObject stop = imageQuestion(pngDataUrl(m_png), 2);
    stop.insert("stop", "\n");
    QCOMPARE(post(*m_server, stop).status, 400);  // refused, not silently ignored

    const Http unknown = wait(m_nam.get(request(*m_server, QStringLiteral("/v1/embeddings"))));
    QCOMPARE(unknown.status, 404);
    const Http getChat = wait(m_nam.get(request(*m_server, QStringLiteral("/v1/chat/completions"))));
    QCOMPARE(getChat.status, 405);
  }

  void localFilesOnlyWhenEnabled() {
    const QString fileUrl = QUrl::fromLocalFile(m_png).toString();
    const Http refused = post(*m_server, imageQuestion(fileUrl, m_case.maxTokens));
    QCOMPARE(refused.status, 400);
    QVERIFY(refused.json.value("error").toObject().value("message").toString().contains("--allow-local-files"));
    QCOMPARE(post(*m_server, imageQuestion(m_png, 2)).status, 400);  // a bare absolute path too

    const Http allowed = post(*m_local, imageQuestion(fileUrl, m_case.maxTokens));
    QCOMPARE(allowed.status, 200);
    const Http viaData = post(*m_server, imageQuestion(pngDataUrl(m_png), m_case.maxTokens));
    QCOMPARE(contentOf(allowed), contentOf(viaData));
  }

  void disconnectMidStreamCancels() {
    QSignalSpy done(m_server.get(), &ApiServer::completionDone);
    QByteArray received;
    QNetworkReply* reply = startLongStream(*m_server, &received);
    QVERIFY2(!reply->isFinished(), "the long answer finished before the client could leave");
    QVERIFY(m_server->isGenerating());
    reply->abort();
    reply->deleteLater();
    QElapsedTimer t;
    t.start();
    QVERIFY(done.wait(10000));
    QCOMPARE(done.at(0).at(1).toString(), QStringLiteral("cancelled"));
    QVERIFY(done.at(0).at(2).toInt() < 100000);
    // The next request is served at once.
    const Http next = post(*m_server, imageQuestion(pngDataUrl(m_png), 4));
    QCOMPARE(next.status, 200);
    QVERIFY2(t.elapsed() < 10000, qPrintable(QStringLiteral("%1 ms").arg(t.elapsed())));
    QVERIFY(!m_server->isGenerating());
  }

  void queueIsFifoAndBounded() {
    QSignalSpy done(m_server.get(), &ApiServer::completionDone);
    QByteArray received;
    QNetworkReply* running = startLongStream(*m_server, &received);
    QVERIFY(!running->isFinished());
    // Two wait (maxQueue 2), the third is refused.
    const QByteArray b = QJsonDocument(imageQuestion(pngDataUrl(m_png), 3)).toJson(QJsonDocument::Compact);
    QNetworkReply* first = m_nam.post(request(*m_server, QStringLiteral("/v1/chat/completions")), b);
    QTRY_COMPARE_WITH_TIMEOUT(m_server->queuedCount(), 1, 10000);
    QNetworkReply* second = m_nam.post(request(*m_server, QStringLiteral("/v1/chat/completions")), b);
    QTRY_COMPARE_WITH_TIMEOUT(m_server->queuedCount(), 2, 10000);
    const Http third = post(*m_server, imageQuestion(pngDataUrl(m_png), 3));
    QCOMPARE(third.status, 429);
    QCOMPARE(third.json.value("error").toObject().value("code").toString(), QStringLiteral("queue_full"));
    running->abort();
    running->deleteLater();
    const Http a = wait(first), c = wait(second);
    QCOMPARE(a.status, 200);
    QCOMPARE(c.status, 200);
    QCOMPARE(contentOf(a), contentOf(c));
    QTRY_COMPARE_WITH_TIMEOUT(done.size(), 3, 10000);
    QCOMPARE(done.at(0).at(1).toString(), QStringLiteral("cancelled"));
    QCOMPARE(done.at(1).at(0).toString(), a.json.value("id").toString());  // served in arrival order
    QCOMPARE(done.at(2).at(0).toString(), c.json.value("id").toString());
  }

  void queuedClientThatLeavesIsDropped() {
    QSignalSpy done(m_server.get(), &ApiServer::completionDone);
    QByteArray received;
    QNetworkReply* running = startLongStream(*m_server, &received);
    QVERIFY(!running->isFinished());
    QNetworkReply* waiting = m_nam.post(request(*m_server, QStringLiteral("/v1/chat/completions")),
                                        QJsonDocument(imageQuestion(pngDataUrl(m_png), 3)).toJson(QJsonDocument::Compact));
    QTRY_COMPARE_WITH_TIMEOUT(m_server->queuedCount(), 1, 10000);
    waiting->abort();
    waiting->deleteLater();
    QTRY_COMPARE_WITH_TIMEOUT(m_server->queuedCount(), 0, 10000);
    QCOMPARE(done.size(), 1);
    QCOMPARE(done.at(0).at(1).toString(), QStringLiteral("cancelled"));
    QVERIFY(m_server->isGenerating());  // the running one is not disturbed
    running->abort();
    running->deleteLater();
    QTRY_VERIFY_WITH_TIMEOUT(!m_server->isGenerating(), 10000);
  }

  void parser_data() {
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<bool>("allowLocal");
    QTest::addColumn<QString>("param");  // empty: accepted
    QTest::newRow("string content") << QByteArray(R"({"messages":[{"role":"user","content":"hi"}]})") << false << QString();
    QTest::newRow("parts") << QByteArray(R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})") << false << QString();
    QTest::newRow("developer, null assistant") << QByteArray(R"({"messages":[{"role":"developer","content":"s"},{"role":"user","content":"q"},{"role":"assistant","content":null},{"role":"user","content":"q2"}]})") << false << QString();
    QTest::newRow("image_url as string") << QByteArray(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":"/nonexistent.png"}]}]})") << true << QStringLiteral("messages[0].content[0].image_url.url");
    QTest::newRow("not an object") << QByteArray("[1]") << false << QString("-");
    QTest::newRow("bad role") << QByteArray(R"({"messages":[{"role":"tool","content":"x"}]})") << false << QStringLiteral("messages[0].role");
    QTest::newRow("bad part type") << QByteArray(R"({"messages":[{"role":"user","content":[{"type":"audio"}]}]})") << false << QStringLiteral("messages[0].content[0].type");
    QTest::newRow("image in system") << QByteArray(R"({"messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]},{"role":"user","content":"q"}]})") << false << QStringLiteral("messages[0].content[0]");
    QTest::newRow("n=2") << QByteArray(R"({"n":2,"messages":[{"role":"user","content":"q"}]})") << false << QStringLiteral("n");
    QTest::newRow("tools") << QByteArray(R"({"tools":[{"type":"function"}],"messages":[{"role":"user","content":"q"}]})") << false << QStringLiteral("tools");
    QTest::newRow("top_p 0") << QByteArray(R"({"top_p":0,"messages":[{"role":"user","content":"q"}]})") << false << QStringLiteral("top_p");
    QTest::newRow("max_tokens 1.5") << QByteArray(R"({"max_tokens":1.5,"messages":[{"role":"user","content":"q"}]})") << false << QStringLiteral("max_tokens");
    QTest::newRow("seed -1") << QByteArray(R"({"seed":-1,"messages":[{"role":"user","content":"q"}]})") << false << QStringLiteral("seed");
    QTest::newRow("stream string") << QByteArray(R"({"stream":"yes","messages":[{"role":"user","content":"q"}]})") << false << QStringLiteral("stream");
    QTest::newRow("empty user content") << QByteArray(R"({"messages":[{"role":"user","content":[]}]})") << false << QStringLiteral("messages[0].content");
  }

  void parser() {
    QFETCH(QByteArray, body);
    QFETCH(bool, allowLocal);
    QFETCH(QString, param);
    ChatParseOptions o;
    o.allowLocalFiles = allowLocal;
    ChatRequest r;
    ApiError e;
    const bool ok = parseChatRequest(body, o, &r, &e);
    if (param.isEmpty()) {
      QVERIFY2(ok, qPrintable(e.message));
      QVERIFY(!r.messages.isEmpty());
      QVERIFY(r.messages.back().role == pixtral::Role::user);
    } else {
      QVERIFY(!ok);
      QCOMPARE(e.status, 400);
      if (param != QLatin1String("-")) QCOMPARE(e.param, param);
      const QJsonObject err = QJsonDocument::fromJson(apiErrorBody(e)).object().value("error").toObject();
      QCOMPARE(err.value("message").toString(), e.message);
      QCOMPARE(err.value("type").toString(), QStringLiteral("invalid_request_error"));
    }
  }

  void parserSampling() {
    ChatRequest r;
    ApiError e;
    QVERIFY(parseChatRequest(R"({"temperature":0.7,"top_p":0.5,"top_k":9,"max_completion_tokens":77,"seed":123,
                                 "messages":[{"role":"user","content":"q"}]})", {}, &r, &e));
    QCOMPARE(r.params.temperature, 0.7f);
    QCOMPARE(r.params.top_p, 0.5f);
    QCOMPARE(r.params.top_k, 9);
    QCOMPARE(r.params.max_tokens, 77);
    QCOMPARE(r.params.seed, std::uint64_t(123));
    QVERIFY(r.seedGiven);
    ChatRequest d1, d2;
    QVERIFY(parseChatRequest(R"({"messages":[{"role":"user","content":"q"}]})", {}, &d1, &e));
    QVERIFY(parseChatRequest(R"({"messages":[{"role":"user","content":"q"}]})", {}, &d2, &e));
    const pixtral::GenerateParams defaults;
    QCOMPARE(d1.params.temperature, defaults.temperature);  // the engine's defaults when absent
    QCOMPARE(d1.params.max_tokens, defaults.max_tokens);
    QVERIFY(!d1.seedGiven);
    QVERIFY(d1.params.seed != d2.params.seed);  // no seed: a random one each time, as OpenAI
  }

  void tokenSettings() {
    const QString a = generateApiToken(), b = generateApiToken();
    QVERIFY(a != b);
    QVERIFY(a.startsWith("quire-"));
    QCOMPARE(a.size(), 6 + 43);  // 32 bytes, base64url without padding
    const QString saved = apiToken();
    QCOMPARE(apiToken(), saved);  // made once, then kept
    const QString fresh = regenerateApiToken();
    QVERIFY(fresh != saved);
    QCOMPARE(apiToken(), fresh);
    QVERIFY(tokensEqual(a.toUtf8(), a.toUtf8()));
    QVERIFY(!tokensEqual(a.toUtf8(), b.toUtf8()));
    QVERIFY(!tokensEqual(QByteArray(), QByteArray()));
  }
};

QTEST_GUILESS_MAIN(TestApiServer)
#include "tst_api_server.moc"
