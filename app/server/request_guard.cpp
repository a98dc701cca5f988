// SPDX-License-Identifier: GPL-3.0-or-later
// GuardedTcpServer (see request_guard.h).
#include "server/request_guard.h"

#include "server/chat_request.h"

#include <QTcpSocket>

namespace quire {

namespace {

// One per connection, a child of its socket.
class ConnectionGuard : public QObject {
 public:
  ConnectionGuard(QTcpSocket* socket, qint64 maxBodyBytes) : QObject(socket), m_socket(socket), m_max(maxBodyBytes) {
    setObjectName(QStringLiteral("quire_connection_guard"));
  }

  void reset() {
    m_bytes = 0;
    m_head.clear();
    m_headDone = false;
  }

  // Runs before the HTTP server's readyRead slot (connected first). bytesAvailable() is what the server has not
  // read yet: the new bytes of this readyRead.
  void onReadyRead() {
    if (m_rejected) {
      drain();
      return;
    }
    const qint64 fresh = m_socket->bytesAvailable();
    m_bytes += fresh;
    if (!m_headDone) {
      const qint64 room = GuardedTcpServer::kMaxHeadBytes - m_head.size();
      if (room > 0) m_head += m_socket->peek(qMin(fresh, room));
      const qsizetype end = m_head.indexOf("\r\n\r\n");
      if (end >= 0) {
        m_headDone = true;
        if (contentLength(m_head.left(end)) > m_max) return reject();
      } else if (m_head.size() >= GuardedTcpServer::kMaxHeadBytes) {
        m_headDone = true;  // no end of head seen: the total count below still applies
      }
    }
    if (m_bytes > m_max + GuardedTcpServer::kMaxHeadBytes) reject();
  }

 private:
  static qint64 contentLength(const QByteArray& head) {
    for (const QByteArray& line : head.split('\n')) {
      const qsizetype colon = line.indexOf(':');
      if (colon < 0 || line.left(colon).trimmed().toLower() != "content-length") continue;
      bool ok = false;
      const qint64 n = line.mid(colon + 1).trimmed().toLongLong(&ok);
      return ok ? n : -1;
    }
    return -1;
  }

  void reject() {
    m_rejected = true;
    ApiError e{413, QStringLiteral("invalid_request_error"),
               QStringLiteral("request body larger than %1 bytes").arg(m_max), {}, QStringLiteral("request_too_large")};
    const QByteArray body = apiErrorBody(e);
    m_socket->write("HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    "Content-Length: " + QByteArray::number(body.size()) + "\r\n\r\n" + body);
    drain();
    m_socket->disconnectFromHost();
  }

  // Throws away what arrived, so neither the HTTP server's parser nor the socket's buffer keeps it.
  void drain() {
    if (m_socket->isTransactionStarted()) m_socket->commitTransaction();
    m_socket->readAll();
  }

  QTcpSocket* m_socket;
  qint64 m_max;
  qint64 m_bytes = 0;
  QByteArray m_head;
  bool m_headDone = false;
  bool m_rejected = false;
};

}  // namespace

GuardedTcpServer::GuardedTcpServer(qint64 maxBodyBytes, QObject* parent) : QTcpServer(parent), m_maxBodyBytes(maxBodyBytes) {}

void GuardedTcpServer::incomingConnection(qintptr socketDescriptor) {
  auto* socket = new QTcpSocket(this);
  if (!socket->setSocketDescriptor(socketDescriptor)) {
    delete socket;
    return;
  }
  auto* guard = new ConnectionGuard(socket, m_maxBodyBytes);
  connect(socket, &QTcpSocket::readyRead, guard, [guard] { guard->onReadyRead(); });
  addPendingConnection(socket);
}

void GuardedTcpServer::requestHandled(QTcpSocket* socket) {
  if (!socket) return;
  for (QObject* c : socket->children())
    if (c->objectName() == QLatin1String("quire_connection_guard")) static_cast<ConnectionGuard*>(c)->reset();
}

}  // namespace quire
