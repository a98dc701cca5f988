// SPDX-License-Identifier: GPL-3.0-or-later
// DocumentRestorer: reopening a conversation restores its documents. When the user opens a conversation (from the
// list, the search or an import — not when the app starts a new one), each distinct document its attachments
// refer to (pages and regions of the active path; the most recently referenced first, at most limit() of them)
// is opened in a tab of its own, unless it is open already. Nothing blocks the GUI thread: each file is first
// checked by the controller's AttachmentChecker (stat + content hash on its own threads) — a document that is
// missing, unreadable or changed since it was attached is not opened (its chip says why) — then loaded by
// MainWindow::openFilesInBackground (DocumentLoader off the GUI thread), without taking the current tab.
// The most recently referenced document that could be opened becomes the current tab, on the page (and with the
// region) of its last attachment, through the ReferenceNavigator — unless the user has meanwhile clicked a chip.
// Opening another conversation stops a restore still under way (documents already loading still open).
#pragma once

#include "chat/attachment.h"

#include <QList>
#include <QObject>
#include <QString>
#include <QStringList>

namespace quire {

class ChatController;
class MainWindow;

class DocumentRestorer : public QObject {
  Q_OBJECT

 public:
  static constexpr int kDefaultLimit = 8;

  DocumentRestorer(MainWindow* window, ChatController* controller);

  /// The most documents one reopening opens (the most recently referenced ones).
  void setLimit(int limit) { m_limit = limit > 0 ? limit : kDefaultLimit; }
  int limit() const { return m_limit; }
  /// A restore is under way (checking or loading documents).
  bool isRestoring() const { return m_active; }

 public Q_SLOTS:
  /// Restores the documents of the controller's open conversation (its active path).
  void restore();
  /// Stops the restore under way: no more documents are opened and none becomes current.
  void cancel();
  /// Lets the documents open but makes none current (the user went somewhere else).
  void dropLanding() { m_landingDropped = true; }

 Q_SIGNALS:
  /// A restore is over: @p opened (absolute paths, open in tabs now, by recency) and @p skipped (missing,
  /// unreadable, changed or failing to load).
  void finished(const QStringList& opened, const QStringList& skipped);

 private:
  enum class State { Checking, Loading, Open, Skipped };
  struct Item {
    QString path;           ///< absolute
    Attachment attachment;  ///< its last attachment in the conversation (page, region, content hash)
    State state = State::Checking;
  };

  void onChecked(const QString& path);
  void onOpened(const QString& path);
  void onFailed(const QString& path);
  void advance();
  bool isOpen(const QString& path) const;

  MainWindow* m_window;
  ChatController* m_controller;
  int m_limit = kDefaultLimit;
  QList<Item> m_items;  ///< most recently referenced first
  bool m_active = false;
  bool m_landed = false;
  bool m_landingDropped = false;
};

}  // namespace quire
