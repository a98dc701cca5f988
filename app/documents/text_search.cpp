// SPDX-License-Identifier: GPL-3.0-or-later
// TextSearch (see text_search.h).
#include "documents/text_search.h"

#include <QMetaObject>
#include <QPointer>
#include <QThreadPool>

namespace quire {

TextSearch::TextSearch(QObject* parent) : QObject(parent) {}

TextSearch::~TextSearch() { cancel(); }

void TextSearch::cancel() {
  if (m_cancel) m_cancel->store(true);
  m_cancel.reset();
  m_running = false;
}

void TextSearch::start(std::shared_ptr<const Document> doc, const QString& text) {
  cancel();
  if (!doc || text.isEmpty()) {
    Q_EMIT finished(text, {});
    return;
  }
  m_cancel = std::make_shared<std::atomic<bool>>(false);
  m_running = true;
  const quint64 serial = ++m_serial;
  QPointer<TextSearch> self(this);
  QThreadPool::globalInstance()->start([self, doc, text, cancel = m_cancel, serial] {
    QList<SearchHit> hits;
    for (int page = 0; page < doc->pageCount(); ++page) {
      if (cancel->load()) return;
      for (const QRectF& r : doc->search(page, text)) hits.append(SearchHit{page, r});
    }
    if (cancel->load()) return;
    // The QPointer is only dereferenced on the receiver's thread, inside the queued call.
    QMetaObject::invokeMethod(
        QThreadPool::globalInstance(),  // a long-lived context object; the lambda re-checks self
        [self, text, hits, cancel, serial] {
          if (!self || cancel->load() || serial != self->m_serial) return;
          self->m_running = false;
          Q_EMIT self->finished(text, hits);
        },
        Qt::QueuedConnection);
  });
}

}  // namespace quire
