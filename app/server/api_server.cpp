// SPDX-License-Identifier: GPL-3.0-or-later
// ApiServer (see api_server.h).
#include "server/api_server.h"

#include "inference/inference_worker.h"
#include "server/api_token.h"
#include "server/request_guard.h"

#include <QDateTime>
#include <QHostAddress>
#include <QHttpServerRequest>
#include <QHttpServerResponder>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRandomGenerator>
#include <QTcpSocket>

namespace quire {

namespace {

// The worker conversation the server answers in: one warm session, so a client that resends the history with one
// more question reuses the KV cache of the common prefix. Negative: never a stored conversation's id.
constexpr qint64 kServerConversation = -1;

QString key(const char* s) { return QString::fromLatin1(s); }

QByteArray header(const QHttpServerRequest& request, const char* name) {
  for (const auto& [k, v] : request.headers())
    if (k.compare(name, Qt::CaseInsensitive) == 0) return v;
  return {};
}

bool hasHeader(const QHttpServerRequest& request, const char* name) {
  for (const auto& h : request.headers())
    if (h.first.compare(name, Qt::CaseInsensitive) == 0) return true;
  return false;
}

QByteArray compact(const QJsonObject& o) { return QJsonDocument(o).toJson(QJsonDocument::Compact); }

QString completionId() {
  return QStringLiteral("chatcmpl-") + QString::number(QRandomGenerator::global()->generate64(), 16);
}

QString openAiFinish(const QString& engineReason) {
  return engineReason == QLatin1String("length") ? engineReason : QStringLiteral("stop");
}

}  // namespace

ApiServer::ApiServer(InferenceWorker* worker, ApiServerOptions options, QObject* parent)
    : QAbstractHttpServer(parent), m_worker(worker), m_options(std::move(options)) {
  connect(m_worker, &InferenceWorker::pieceArrived, this, &ApiServer::onPiece);
  connect(m_worker, &InferenceWorker::generationFinished, this, &ApiServer::onFinished);
  connect(m_worker, &InferenceWorker::generationFailed, this, &ApiServer::onFailed);
}

ApiServer::~ApiServer() {
  if (m_running) m_worker->stop(m_running->requestId);
}

bool ApiServer::start(QString* error) {
  auto* tcp = new GuardedTcpServer(m_options.maxBodyBytes, this);
  if (!tcp->listen(QHostAddress::LocalHost, m_options.port)) {
    *error = tr("cannot listen on 127.0.0.1:%1: %2").arg(m_options.port).arg(tcp->errorString());
    delete tcp;
    return false;
  }
  m_port = tcp->serverPort();
  bind(tcp);
  const QByteArray p = QByteArray::number(m_port);
  m_allowedHosts = {"127.0.0.1:" + p, "localhost:" + p, "[::1]:" + p};
  return true;
}

QString ApiServer::baseUrl() const { return QStringLiteral("http://127.0.0.1:%1/v1").arg(m_port); }

// Responses -------------------------------------------------------------------------------------------------------

void ApiServer::reply(QHttpServerResponder& responder, int status, const QByteArray& json, bool authHeader) {
  const auto code = static_cast<QHttpServerResponder::StatusCode>(status);
  if (authHeader)
    responder.write(json, {{"Content-Type", "application/json"}, {"WWW-Authenticate", "Bearer"}}, code);
  else
    responder.write(json, {{"Content-Type", "application/json"}}, code);
}

void ApiServer::replyError(QHttpServerResponder& responder, const ApiError& e) {
  reply(responder, e.status, apiErrorBody(e), e.status == 401);
}

bool ApiServer::handleRequest(const QHttpServerRequest& request, QTcpSocket* socket) {
  GuardedTcpServer::requestHandled(socket);
  QHttpServerResponder responder = makeResponder(request, socket);
  const QByteArray host = header(request, "host").toLower();
  if (!m_allowedHosts.contains(host)) {
    replyError(responder, {403, key("permission_error"),
                           tr("Host \"%1\" is not allowed; use http://127.0.0.1:%2").arg(QString::fromLatin1(host)).arg(m_port),
                           {}, key("host_not_allowed")});
    return true;
  }
  if (hasHeader(request, "origin")) {
    replyError(responder, {403, key("permission_error"),
                           tr("requests from web pages (with an Origin header) are refused"), {}, key("origin_not_allowed")});
    return true;
  }
  if (request.body().size() > m_options.maxBodyBytes) {  // normally refused earlier by GuardedTcpServer
    replyError(responder, {413, key("invalid_request_error"), tr("request body too large"), {}, key("request_too_large")});
    return true;
  }
  const QByteArray auth = header(request, "authorization").trimmed();
  const QByteArray expected = "Bearer " + m_options.token.toUtf8();
  if (!auth.startsWith("Bearer ") || !tokensEqual(auth, expected)) {
    replyError(responder, {401, key("authentication_error"),
                           auth.isEmpty() ? tr("missing bearer token (Authorization: Bearer <token>; `quire serve` prints it)")
                                          : tr("incorrect bearer token"),
                           {}, key("invalid_api_key")});
    return true;
  }
  const QString path = request.url().path();
  const auto method = request.method();
  if (path == QLatin1String("/v1/models") || path == QLatin1String("/v1/models/")) {
    if (method != QHttpServerRequest::Method::Get)
      replyError(responder, {405, key("invalid_request_error"), tr("use GET for %1").arg(path), {}, key("method_not_allowed")});
    else
      handleModels(responder);
    return true;
  }
  if (path == QLatin1String("/v1/chat/completions")) {
    if (method != QHttpServerRequest::Method::Post)
      replyError(responder, {405, key("invalid_request_error"), tr("use POST for %1").arg(path), {}, key("method_not_allowed")});
    else
      handleChat(request, socket, responder);
    return true;
  }
  replyError(responder, {404, key("invalid_request_error"), tr("unknown path %1").arg(path), {}, key("not_found")});
  return true;
}

void ApiServer::missingHandler(const QHttpServerRequest& request, QTcpSocket* socket) {
  QHttpServerResponder responder = makeResponder(request, socket);
  replyError(responder, {404, key("invalid_request_error"), tr("not found"), {}, key("not_found")});
}

void ApiServer::handleModels(QHttpServerResponder& responder) {
  const QJsonObject model{{key("id"), m_options.modelId},
                          {key("object"), key("model")},
                          {key("created"), QDateTime::currentSecsSinceEpoch()},
                          {key("owned_by"), key("quire")}};
  reply(responder, 200, compact({{key("object"), key("list")}, {key("data"), QJsonArray{model}}}));
}

void ApiServer::handleChat(const QHttpServerRequest& request, QTcpSocket* socket, QHttpServerResponder& responder) {
  ChatParseOptions po;
  po.allowLocalFiles = m_options.allowLocalFiles;
  auto job = std::make_unique<Job>();
  ApiError error;
  if (!parseChatRequest(request.body(), po, &job->chat, &error)) {
    replyError(responder, error);
    return;
  }
  if (m_running && int(m_queue.size()) >= m_options.maxQueue) {
    replyError(responder, {429, key("rate_limit_error"),
                           tr("busy: one generation runs and %1 wait; try again later").arg(m_queue.size()), {},
                           key("queue_full")});
    return;
  }
  job->id = completionId();
  job->created = QDateTime::currentSecsSinceEpoch();
  job->socket = socket;
  job->responder = std::make_unique<QHttpServerResponder>(std::move(responder));
  // A client that goes away: dropped from the queue, or its generation stopped.
  connect(socket, &QTcpSocket::disconnected, this, [this, s = QPointer<QTcpSocket>(socket)] { onClientGone(s.data()); });
  connect(socket, &QObject::destroyed, this, [this, socket] { onClientGone(socket); });
  m_queue.push_back(std::move(job));
  pump();
}

// The queue ---------------------------------------------------------------------------------------------------------

void ApiServer::pump() {
  while (!m_running && !m_queue.empty()) {
    std::unique_ptr<Job> job = std::move(m_queue.front());
    m_queue.pop_front();
    if (job->clientGone || !writable(*job)) {
      Q_EMIT completionDone(job->id, key("cancelled"), 0);
      continue;
    }
    GenerationRequest r;
    r.conversationId = kServerConversation;
    r.messages = job->chat.messages;
    r.params = job->chat.params;
    r.contextLength = m_options.contextLength;
    m_running = std::move(job);
    m_running->requestId = m_worker->generate(r);
  }
}

void ApiServer::startStream(Job& job) {
  if (job.headersSent || !job.chat.stream || !writable(job)) return;
  QHttpServerResponder& resp = *job.responder;
  resp.writeStatusLine(QHttpServerResponder::StatusCode::Ok);
  resp.writeHeader("Content-Type", "text/event-stream");
  resp.writeHeader("Cache-Control", "no-cache");
  resp.writeHeader("Connection", "close");  // the body ends when the connection does
  job.headersSent = true;
  sendEvent(job, chunkJson(job, {{key("role"), key("assistant")}, {key("content"), QString()}}, QJsonValue::Null));
}

bool ApiServer::writable(const Job& job) const {
  return job.socket && job.socket->state() == QAbstractSocket::ConnectedState;
}

void ApiServer::sendEvent(Job& job, const QByteArray& data) {
  if (!writable(job)) return;
  job.responder->writeBody("data: " + data + "\n\n");
  job.socket->flush();
}

QByteArray ApiServer::chunkJson(const Job& job, const QJsonObject& delta, const QJsonValue& finishReason) const {
  const QJsonObject choice{{key("index"), 0}, {key("delta"), delta}, {key("finish_reason"), finishReason},
                           {key("logprobs"), QJsonValue::Null}};
  return compact({{key("id"), job.id},
                  {key("object"), key("chat.completion.chunk")},
                  {key("created"), job.created},
                  {key("model"), m_options.modelId},
                  {key("choices"), QJsonArray{choice}}});
}

void ApiServer::onClientGone(QTcpSocket* socket) {
  if (m_running && !m_running->clientGone && (m_running->socket.data() == socket || !m_running->socket)) {
    m_running->clientGone = true;
    m_worker->stop(m_running->requestId);  // the engine's request_stop: within one token (one prefill chunk)
    return;
  }
  for (auto it = m_queue.begin(); it != m_queue.end(); ++it) {
    if ((*it)->socket.data() == socket || !(*it)->socket) {
      (*it)->clientGone = true;
      Q_EMIT completionDone((*it)->id, key("cancelled"), 0);
      m_queue.erase(it);
      return;
    }
  }
}

void ApiServer::onPiece(qint64 conversationId, quint64 requestId, const QString& text, int) {
  if (conversationId != kServerConversation || !m_running || requestId != m_running->requestId) return;
  Job& job = *m_running;
  ++job.pieces;
  if (!job.chat.stream || job.clientGone) return;
  startStream(job);  // the prompt fitted and the answer has begun: 200 and the role chunk
  if (text.isEmpty()) return;
  job.streamed += text;
  sendEvent(job, chunkJson(job, {{key("content"), text}}, QJsonValue::Null));
}

void ApiServer::onFinished(qint64 conversationId, const GenerationResult& r) {
  if (conversationId != kServerConversation || !m_running || r.requestId != m_running->requestId) return;
  Job& job = *m_running;
  const int completionTokens = int(r.tokens.size());
  const int promptTokens = int(r.promptTokens.size());
  const QJsonObject usage{{key("prompt_tokens"), promptTokens},
                          {key("completion_tokens"), completionTokens},
                          {key("total_tokens"), promptTokens + completionTokens}};
  const bool cancelled = r.finishReason == QLatin1String("cancelled");
  if (job.clientGone || !writable(job)) return finishRunning(key("cancelled"), completionTokens);
  const QString finish = openAiFinish(r.finishReason);
  if (job.chat.stream) {
    startStream(job);  // an answer without any piece (stopped before its first token)
    // Text the stream decoder held back until the end (an incomplete UTF-8 sequence) comes in one last chunk.
    if (r.text.size() > job.streamed.size() && r.text.startsWith(job.streamed))
      sendEvent(job, chunkJson(job, {{key("content"), r.text.mid(job.streamed.size())}}, QJsonValue::Null));
    sendEvent(job, chunkJson(job, QJsonObject{}, finish));
    if (job.chat.includeUsage) {
      QJsonObject last = QJsonDocument::fromJson(chunkJson(job, {}, QJsonValue::Null)).object();
      last.insert(key("choices"), QJsonArray{});
      last.insert(key("usage"), usage);
      sendEvent(job, compact(last));
    }
    sendEvent(job, "[DONE]");
    job.socket->disconnectFromHost();
  } else {
    const QJsonObject message{{key("role"), key("assistant")}, {key("content"), r.text}};
    const QJsonObject choice{{key("index"), 0}, {key("message"), message}, {key("finish_reason"), finish},
                             {key("logprobs"), QJsonValue::Null}};
    reply(*job.responder, 200,
          compact({{key("id"), job.id},
                   {key("object"), key("chat.completion")},
                   {key("created"), job.created},
                   {key("model"), m_options.modelId},
                   {key("choices"), QJsonArray{choice}},
                   {key("usage"), usage}}));
  }
  finishRunning(cancelled ? key("cancelled") : r.finishReason, completionTokens);
}

void ApiServer::onFailed(qint64 conversationId, const GenerationFailure& failure) {
  if (conversationId != kServerConversation || !m_running || failure.requestId != m_running->requestId) return;
  Job& job = *m_running;
  ApiError e{500, key("server_error"), failure.message, {}, key("engine_error")};
  switch (failure.code) {
    case pixtral::ErrorCode::context_overflow:  // the client's to fix: a shorter prompt (OpenAI's code)
      e = ApiError::badRequest(failure.message, key("messages"), key("context_length_exceeded"));
      break;
    case pixtral::ErrorCode::invalid_argument:  // e.g. an image the engine cannot take
      e = ApiError::badRequest(failure.message, key("messages"), key("invalid_value"));
      break;
    default: break;
  }
  if (writable(job) && !job.clientGone) {
    if (job.headersSent) {  // mid-stream: an error event, then the end of the stream
      sendEvent(job, apiErrorBody(e));
      sendEvent(job, "[DONE]");
      job.socket->disconnectFromHost();
    } else {
      replyError(*job.responder, e);
    }
  }
  finishRunning(key("error"), 0);
}

void ApiServer::finishRunning(const QString& finishReason, int completionTokens) {
  const QString id = m_running->id;
  m_running.reset();
  Q_EMIT completionDone(id, finishReason, completionTokens);
  pump();
}

}  // namespace quire
