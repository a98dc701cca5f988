// SPDX-License-Identifier: GPL-3.0-or-later
// GuardedTcpServer: the QTcpServer under the local API's QAbstractHttpServer. Qt 6.4's HTTP server reads a whole
// request body into memory before any handler sees it, so the size limit is enforced here, on the socket, before
// the HTTP server reads it: each connection gets a guard connected to readyRead ahead of the server's own slot.
// The guard peeks at the request head; a Content-Length over the limit is answered at once with 413 (OpenAI error
// JSON) and the connection closed without reading the body; a body without a Content-Length (chunked) is counted
// as it arrives and refused the same way once it passes the limit. The server calls requestHandled() when a
// request is complete, which starts the count of the next one on that connection.
#pragma once

#include <QTcpServer>

class QTcpSocket;

namespace quire {

class GuardedTcpServer : public QTcpServer {
  Q_OBJECT

 public:
  explicit GuardedTcpServer(qint64 maxBodyBytes, QObject* parent = nullptr);

  /// The request on @p socket was read completely: the next one starts counting from zero.
  static void requestHandled(QTcpSocket* socket);

  /// The most header bytes accepted on top of the body limit.
  static constexpr qint64 kMaxHeadBytes = 64 * 1024;

 protected:
  void incomingConnection(qintptr socketDescriptor) override;

 private:
  qint64 m_maxBodyBytes;
};

}  // namespace quire
