// SPDX-License-Identifier: GPL-3.0-or-later
// PageRenderer: renders pages of one Document on a private worker pool and caches them under a memory budget.
// Contract: request() states everything currently wanted (visible pages ± neighbours at one scale); queued
// work for anything else is cancelled before it starts (latest request wins); pages already cached or in
// flight are not rendered twice. Results arrive as queued pageReady() signals on the renderer's thread.
// The cache evicts wrong-scale pages first, then the pages farthest from the current one.
// ref: Qt examples corelib/threads/mandelbrot/renderthread.cpp; okular core/document.cpp (memory budget)
#pragma once

#include "documents/document.h"

#include <QHash>
#include <QImage>
#include <QList>
#include <QObject>
#include <QSet>
#include <QThreadPool>
#include <memory>

namespace quire {

class PageRenderer : public QObject {
  Q_OBJECT

 public:
  explicit PageRenderer(QObject* parent = nullptr);
  /// Cancels queued work and waits for pages being rendered right now (at most one per thread).
  ~PageRenderer() override;

  /// Switches to @p doc (or none): cancels everything and empties the cache.
  void setDocument(std::shared_ptr<const Document> doc);
  std::shared_ptr<const Document> document() const { return m_document; }

  /// Most bytes of rendered pages kept (default 256 MiB). Shrinking evicts at once.
  void setMemoryBudget(qint64 bytes);
  qint64 memoryBudget() const { return m_budget; }
  qint64 cacheBytes() const { return m_cacheBytes; }
  int cachedCount() const { return int(m_cache.size()); }

  /// Worker threads (default 2).
  void setMaxThreads(int n) { m_pool.setMaxThreadCount(std::max(1, n)); }
  /// The workers' pool (tests occupy its threads to order requests against the workers deterministically).
  QThreadPool* threadPool() { return &m_pool; }

  /// Wants @p pages at @p scale (device pixels per point), nearest to @p currentPage first. Anything not in this
  /// list that has not started yet is cancelled. Returns the new generation number.
  int request(const QList<int>& pages, double scale, int currentPage);
  /// Cancels every queued request.
  void cancelAll();

  /// The cached render of @p page at @p scale, or a null image.
  QImage cached(int page, double scale) const;
  /// Any cached render of @p page (the one nearest @p scale), for a placeholder while the right one renders.
  QImage bestCached(int page, double scale) const;
  /// Whether @p page at @p scale is queued or rendering.
  bool isPending(int page, double scale) const;

  int generation() const { return m_generation; }
  /// Requests dropped before they started, since the document was set.
  int cancelledCount() const;
  /// Pages actually rendered, since the document was set.
  int renderedCount() const { return m_rendered; }

 Q_SIGNALS:
  /// @p page finished rendering at @p scale (image has the device pixels; set its devicePixelRatio to draw).
  void pageReady(int page, double scale, const QImage& image);
  /// @p page could not be rendered.
  void pageFailed(int page);

 private:
  struct Shared;
  using Key = quint64;
  static Key keyOf(int page, double scale);
  static int pageOf(Key key) { return int(key >> 32); }
  static int scaleKeyOf(double scale);

  void finish(quint64 epoch, Key key, double scale, const QImage& image);
  void drop(quint64 epoch, Key key);
  void evict(Key keep);

  std::shared_ptr<const Document> m_document;
  std::shared_ptr<Shared> m_shared;  // the wanted set, read by workers under its mutex
  QThreadPool m_pool;
  QHash<Key, QImage> m_cache;
  QSet<Key> m_pending;
  qint64 m_budget = qint64(256) << 20;
  qint64 m_cacheBytes = 0;
  int m_currentPage = 0;
  int m_currentScaleKey = 0;
  int m_generation = 0;
  int m_rendered = 0;
  quint64 m_epoch = 0;  // bumped per document, so late results for an old document are ignored
};

}  // namespace quire
