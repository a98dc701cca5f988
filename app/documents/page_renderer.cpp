// SPDX-License-Identifier: GPL-3.0-or-later
// PageRenderer (see page_renderer.h).
#include "documents/page_renderer.h"

#include <QMetaObject>
#include <QMutex>
#include <QMutexLocker>
#include <QRunnable>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

namespace quire {

struct PageRenderer::Shared {
  QMutex mutex;
  QSet<Key> wanted;  // guarded by mutex
  std::atomic<int> cancelled{0};
};

PageRenderer::PageRenderer(QObject* parent) : QObject(parent), m_shared(std::make_shared<Shared>()) {
  m_pool.setMaxThreadCount(2);
}

PageRenderer::~PageRenderer() {
  cancelAll();
  m_pool.clear();
  m_pool.waitForDone();
}

int PageRenderer::scaleKeyOf(double scale) { return int(std::lround(scale * 1024.0)); }

PageRenderer::Key PageRenderer::keyOf(int page, double scale) {
  return (quint64(quint32(page)) << 32) | quint32(scaleKeyOf(scale));
}

void PageRenderer::setDocument(std::shared_ptr<const Document> doc) {
  cancelAll();
  m_document = std::move(doc);
  m_shared = std::make_shared<Shared>();  // old workers keep the old one and see nothing wanted
  ++m_epoch;
  m_cache.clear();
  m_pending.clear();
  m_cacheBytes = 0;
  m_rendered = 0;
}

void PageRenderer::setMemoryBudget(qint64 bytes) {
  m_budget = std::max<qint64>(bytes, 0);
  evict(std::numeric_limits<Key>::max());
}

int PageRenderer::cancelledCount() const { return m_shared->cancelled.load(); }

void PageRenderer::cancelAll() {
  QMutexLocker lock(&m_shared->mutex);
  m_shared->wanted.clear();
  ++m_generation;
}

QImage PageRenderer::cached(int page, double scale) const { return m_cache.value(keyOf(page, scale)); }

QImage PageRenderer::bestCached(int page, double scale) const {
  QImage best;
  int bestDistance = std::numeric_limits<int>::max();
  const int want = scaleKeyOf(scale);
  for (auto it = m_cache.cbegin(); it != m_cache.cend(); ++it) {
    if (pageOf(it.key()) != page) continue;
    const int d = std::abs(int(it.key() & 0xffffffffu) - want);
    if (d < bestDistance) {
      bestDistance = d;
      best = it.value();
    }
  }
  return best;
}

bool PageRenderer::isPending(int page, double scale) const { return m_pending.contains(keyOf(page, scale)); }

int PageRenderer::request(const QList<int>& pages, double scale, int currentPage) {
  m_currentPage = currentPage;
  m_currentScaleKey = scaleKeyOf(scale);
  ++m_generation;
  QSet<Key> wanted;
  QList<int> toStart;
  const int count = m_document ? m_document->pageCount() : 0;
  for (int page : pages) {
    if (page < 0 || page >= count || scale <= 0) continue;
    const Key key = keyOf(page, scale);
    if (m_cache.contains(key)) continue;
    wanted.insert(key);
    if (!m_pending.contains(key)) toStart.append(page);
  }
  {
    QMutexLocker lock(&m_shared->mutex);
    m_shared->wanted = wanted;  // queued tasks for anything else will see they are no longer wanted
  }
  for (int page : std::as_const(toStart)) {
    const Key key = keyOf(page, scale);
    m_pending.insert(key);
    const int priority = 1000 - std::min(999, std::abs(page - currentPage));
    m_pool.start(
        [doc = m_document, shared = m_shared, epoch = m_epoch, key, page, scale, raw = this] {
          {
            QMutexLocker lock(&shared->mutex);
            if (!shared->wanted.contains(key)) {
              shared->cancelled.fetch_add(1);
              QMetaObject::invokeMethod(raw, [raw, epoch, key] { raw->drop(epoch, key); }, Qt::QueuedConnection);
              return;
            }
          }
          const QImage image = doc->render(page, scale);
          // raw outlives every task: the destructor waits for the pool.
          QMetaObject::invokeMethod(raw, [raw, epoch, key, scale, image] { raw->finish(epoch, key, scale, image); },
                                    Qt::QueuedConnection);
        },
        priority);
  }
  return m_generation;
}

void PageRenderer::drop(quint64 epoch, Key key) {
  if (epoch == m_epoch) m_pending.remove(key);
}

void PageRenderer::finish(quint64 epoch, Key key, double scale, const QImage& image) {
  if (epoch != m_epoch) return;
  m_pending.remove(key);
  const int page = pageOf(key);
  if (image.isNull()) {
    Q_EMIT pageFailed(page);
    return;
  }
  ++m_rendered;
  m_cache.insert(key, image);
  m_cacheBytes += image.sizeInBytes();
  evict(key);
  Q_EMIT pageReady(page, scale, image);
}

void PageRenderer::evict(Key keep) {
  while (m_cacheBytes > m_budget && !m_cache.isEmpty()) {
    // Victim: a page at another scale first, then the page farthest from the current one.
    Key victim = keep;
    qint64 worst = -1;
    for (auto it = m_cache.cbegin(); it != m_cache.cend(); ++it) {
      if (it.key() == keep) continue;
      const bool otherScale = int(it.key() & 0xffffffffu) != m_currentScaleKey;
      const qint64 score = qint64(std::abs(pageOf(it.key()) - m_currentPage)) + (otherScale ? (qint64(1) << 40) : 0);
      if (score > worst) {
        worst = score;
        victim = it.key();
      }
    }
    if (victim == keep) break;  // only the newest page is left: keep it even over budget
    m_cacheBytes -= m_cache.value(victim).sizeInBytes();
    m_cache.remove(victim);
  }
}

}  // namespace quire
