// SPDX-License-Identifier: GPL-3.0-or-later
// ApiServer: the OpenAI-compatible local endpoint of `quire serve` (Qt 6.4's QAbstractHttpServer), answering with
// the app's InferenceWorker — the same model thread, Qt image decoding and engine path as the GUI and `quire ask`.
//   GET  /v1/models              the one model served
//   POST /v1/chat/completions    stream false: one chat.completion (with usage); stream true: server-sent events
//                                `data: {chat.completion.chunk}` … `data: [DONE]`, each written as it comes
//                                (the responder is kept and written with writeBody, the connection closed at the end)
// Safe by default, in this order for every request:
//   bound to 127.0.0.1 only; Host must be 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (else 403: DNS rebinding);
//   any Origin header (a browser page) is refused (403); bodies over maxBodyBytes get 413 (GuardedTcpServer, before
//   the body is read); `Authorization: Bearer <token>` is required (401); unknown paths 404, wrong methods 405.
// One generation at a time; later ones wait in a FIFO queue of at most maxQueue (429 when full). A client that
// disconnects is dropped from the queue, or its running generation stopped (InferenceWorker::stop → the engine's
// request_stop, within one token) so the next request starts at once. Errors use OpenAI's error JSON; a prompt
// longer than the context is a 400 (code context_length_exceeded, param messages), other engine failures a 500
// with the engine's message. A stream's 200 and its first chunk are written with the first piece of the answer,
// so a request refused before it starts gets its status code in streaming mode too. Conversations are not saved
// to the history. The worker's signals are matched by request id (another host may share the worker).
// ref: https://platform.openai.com/docs/api-reference/chat (request, response, chunk and error shapes)
#pragma once

#include "server/chat_request.h"

#include <QAbstractHttpServer>
#include <QJsonObject>
#include <QJsonValue>
#include <QPointer>
#include <QStringList>

#include <deque>
#include <memory>

class QHttpServerResponder;
class QTcpSocket;

namespace quire {

class InferenceWorker;
struct GenerationResult;
struct GenerationFailure;

struct ApiServerOptions {
  QString token;                 ///< required bearer token (must not be empty)
  quint16 port = 8642;           ///< 0: any free port (tests)
  QString modelId;               ///< the id /v1/models lists and responses carry
  int contextLength = 16384;     ///< KV cache size of the served session
  bool allowLocalFiles = false;  ///< file:// and absolute-path image URLs
  qint64 maxBodyBytes = 32ll * 1024 * 1024;
  int maxQueue = 8;              ///< requests waiting behind the running one
};

class ApiServer : public QAbstractHttpServer {
  Q_OBJECT

 public:
  /// @p worker must have its model loaded and outlive the server; the server is its only client.
  ApiServer(InferenceWorker* worker, ApiServerOptions options, QObject* parent = nullptr);
  ~ApiServer() override;

  /// Listens on 127.0.0.1:options.port. False with a message when the port is taken.
  bool start(QString* error);
  quint16 port() const { return m_port; }
  QString baseUrl() const;  ///< "http://127.0.0.1:PORT/v1"
  const ApiServerOptions& options() const { return m_options; }
  int queuedCount() const { return int(m_queue.size()); }
  bool isGenerating() const { return m_running != nullptr; }

 Q_SIGNALS:
  /// A chat completion ended: "stop", "length", "cancelled" (client gone or shutdown) or "error".
  void completionDone(const QString& completionId, const QString& finishReason, int completionTokens);

 protected:
  bool handleRequest(const QHttpServerRequest& request, QTcpSocket* socket) override;
  void missingHandler(const QHttpServerRequest& request, QTcpSocket* socket) override;

 private:
  struct Job {
    QString id;  ///< "chatcmpl-…"
    qint64 created = 0;
    std::unique_ptr<QHttpServerResponder> responder;
    QPointer<QTcpSocket> socket;
    ChatRequest chat;
    quint64 requestId = 0;  ///< the worker's, once started
    bool headersSent = false;
    bool clientGone = false;
    QString streamed;  ///< text already sent as chunks
    int pieces = 0;
  };

  void handleChat(const QHttpServerRequest& request, QTcpSocket* socket, QHttpServerResponder& responder);
  void handleModels(QHttpServerResponder& responder);
  void pump();
  void onPiece(qint64 conversationId, quint64 requestId, const QString& text, int token);
  void onFinished(qint64 conversationId, const GenerationResult& result);
  void onFailed(qint64 conversationId, const GenerationFailure& failure);
  void startStream(Job& job);
  void onClientGone(QTcpSocket* socket);
  void finishRunning(const QString& finishReason, int completionTokens);
  bool writable(const Job& job) const;
  void sendEvent(Job& job, const QByteArray& data);
  QByteArray chunkJson(const Job& job, const QJsonObject& delta, const QJsonValue& finishReason) const;
  static void reply(QHttpServerResponder& responder, int status, const QByteArray& json, bool authHeader = false);
  static void replyError(QHttpServerResponder& responder, const ApiError& e);

  InferenceWorker* m_worker;
  ApiServerOptions m_options;
  quint16 m_port = 0;
  QList<QByteArray> m_allowedHosts;
  std::unique_ptr<Job> m_running;
  std::deque<std::unique_ptr<Job>> m_queue;
};

}  // namespace quire
