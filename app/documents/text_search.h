// SPDX-License-Identifier: GPL-3.0-or-later
// TextSearch: finds a string in every page of a Document on a worker thread (Poppler text search), so the GUI
// never waits. A new start() cancels the previous search (latest wins); results come as one queued signal.
#pragma once

#include "documents/document.h"

#include <QList>
#include <QObject>
#include <QRectF>
#include <atomic>
#include <memory>

namespace quire {

/// One hit: a page and a normalised rect (0–1, origin top-left).
struct SearchHit {
  int page = 0;
  QRectF rect;
};

class TextSearch : public QObject {
  Q_OBJECT

 public:
  explicit TextSearch(QObject* parent = nullptr);
  ~TextSearch() override;

  /// Searches @p doc for @p text (case-insensitive), cancelling any search still running.
  void start(std::shared_ptr<const Document> doc, const QString& text);
  /// Cancels the running search; no finished() follows for it.
  void cancel();
  bool isRunning() const { return m_running; }

 Q_SIGNALS:
  /// Every hit, in page order, for the search of @p text.
  void finished(const QString& text, const QList<quire::SearchHit>& hits);

 private:
  std::shared_ptr<std::atomic<bool>> m_cancel;
  bool m_running = false;
  quint64 m_serial = 0;
};

}  // namespace quire

Q_DECLARE_METATYPE(quire::SearchHit)
