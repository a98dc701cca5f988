// SPDX-License-Identifier: GPL-3.0-or-later
// SingleInstance: the first Quire a user starts listens on a per-user local socket; a later launch
// ("Open with Quire") hands its files to it and exits. Protocol: one QDataStream'd QStringList of absolute
// paths, answered by one byte ('k') once the running instance has taken them.
#pragma once

#include <QObject>
#include <QStringList>

class QLocalServer;

namespace quire {

class SingleInstance : public QObject {
  Q_OBJECT

 public:
  /// @p serverName: the socket's name (default: defaultServerName(), unique per user).
  explicit SingleInstance(QString serverName = {}, QObject* parent = nullptr);
  ~SingleInstance() override;

  /// "quire-<hash of the user name and runtime dir>": one per user, never shared between users.
  static QString defaultServerName();
  QString serverName() const { return m_name; }

  /// Hands @p files to an already running instance. Blocks up to @p timeoutMs; true when it took them.
  bool sendToRunning(const QStringList& files, int timeoutMs = 2000) const;
  /// Starts listening as the running instance (removing a stale socket left by a crash). True on success.
  bool listen();
  bool isListening() const;

 Q_SIGNALS:
  /// A later launch asked this instance to open @p files (absolute paths; may be empty: just raise the window).
  void filesReceived(const QStringList& files);

 private:
  void acceptConnection();

  QString m_name;
  QLocalServer* m_server = nullptr;
};

}  // namespace quire
