// SPDX-License-Identifier: GPL-3.0-or-later
// SingleInstance (see single_instance.h).
#include "instance/single_instance.h"

#include <QCryptographicHash>
#include <QDataStream>
#include <QDir>
#include <QFileInfo>
#include <QLocalServer>
#include <QLocalSocket>
#include <QStandardPaths>

namespace quire {

SingleInstance::SingleInstance(QString serverName, QObject* parent)
    : QObject(parent), m_name(serverName.isEmpty() ? defaultServerName() : std::move(serverName)) {}

SingleInstance::~SingleInstance() = default;

QString SingleInstance::defaultServerName() {
  QByteArray user = qgetenv("USER");
  if (user.isEmpty()) user = qgetenv("LOGNAME");
  const QByteArray seed = user + '|' + QDir::homePath().toUtf8() + '|' +
                          QStandardPaths::writableLocation(QStandardPaths::RuntimeLocation).toUtf8();
  return QStringLiteral("quire-") +
         QString::fromLatin1(QCryptographicHash::hash(seed, QCryptographicHash::Sha1).toHex().left(16));
}

bool SingleInstance::sendToRunning(const QStringList& files, int timeoutMs) const {
  QLocalSocket socket;
  socket.connectToServer(m_name);
  if (!socket.waitForConnected(timeoutMs)) return false;
  QStringList absolute;
  for (const QString& f : files) absolute << QFileInfo(f).absoluteFilePath();
  QByteArray payload;
  QDataStream out(&payload, QIODevice::WriteOnly);
  out.setVersion(QDataStream::Qt_6_4);
  out << absolute;
  QByteArray frame;
  QDataStream framed(&frame, QIODevice::WriteOnly);
  framed.setVersion(QDataStream::Qt_6_4);
  framed << payload;  // length-prefixed, so the server knows when it has everything
  socket.write(frame);
  if (!socket.waitForBytesWritten(timeoutMs)) return false;
  if (!socket.waitForReadyRead(timeoutMs)) return false;
  return socket.read(1) == "k";
}

bool SingleInstance::listen() {
  if (m_server) return m_server->isListening();
  // Someone answering on the name really is running. (Qt replaces an existing socket file when socket options
  // are set, so listen() alone would not notice.) A file nobody answers on was left by a crash: remove it.
  {
    QLocalSocket probe;
    probe.connectToServer(m_name);
    if (probe.waitForConnected(200)) return false;
  }
  QLocalServer::removeServer(m_name);
  m_server = new QLocalServer(this);
  m_server->setSocketOptions(QLocalServer::UserAccessOption);
  if (!m_server->listen(m_name)) return false;
  connect(m_server, &QLocalServer::newConnection, this, &SingleInstance::acceptConnection);
  return true;
}

bool SingleInstance::isListening() const { return m_server && m_server->isListening(); }

void SingleInstance::acceptConnection() {
  while (QLocalSocket* socket = m_server->nextPendingConnection()) {
    connect(socket, &QLocalSocket::disconnected, socket, &QObject::deleteLater);
    connect(socket, &QLocalSocket::readyRead, this, [this, socket] {
      QDataStream in(socket);
      in.setVersion(QDataStream::Qt_6_4);
      in.startTransaction();
      QByteArray payload;
      in >> payload;
      if (!in.commitTransaction()) return;  // wait for the rest
      QDataStream inner(payload);
      inner.setVersion(QDataStream::Qt_6_4);
      QStringList files;
      inner >> files;
      socket->write("k");
      socket->flush();
      Q_EMIT filesReceived(files);
    });
  }
}

}  // namespace quire
