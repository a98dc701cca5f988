// SPDX-License-Identifier: GPL-3.0-or-later
// DocumentTab (see document_tab.h).
#include "viewer/document_tab.h"

#include "documents/thumbnail_model.h"
#include "viewer/find_bar.h"
#include "viewer/page_view.h"

#include <QListView>
#include <QScrollBar>
#include <QSplitter>
#include <QTimer>
#include <QVBoxLayout>

namespace quire {

DocumentTab::DocumentTab(std::shared_ptr<Document> doc, QWidget* parent)
    : QWidget(parent), m_document(std::move(doc)) {
  setAccessibleName(tr("Document %1").arg(m_document->title()));
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);
  m_splitter = new QSplitter(Qt::Horizontal, this);
  m_splitter->setAccessibleName(tr("Thumbnails and pages"));

  m_thumbnailModel = new ThumbnailModel(this);
  m_thumbnailModel->setDevicePixelRatio(devicePixelRatioF());
  m_thumbnailModel->setDocument(m_document);
  m_thumbnails = new QListView(m_splitter);
  m_thumbnails->setAccessibleName(tr("Page thumbnails"));
  m_thumbnails->setViewMode(QListView::IconMode);
  m_thumbnails->setFlow(QListView::TopToBottom);
  m_thumbnails->setWrapping(false);
  m_thumbnails->setMovement(QListView::Static);
  m_thumbnails->setResizeMode(QListView::Adjust);
  m_thumbnails->setUniformItemSizes(true);
  m_thumbnails->setIconSize(QSize(m_thumbnailModel->thumbnailSize(), m_thumbnailModel->thumbnailSize()));
  m_thumbnails->setSpacing(4);
  m_thumbnails->setModel(m_thumbnailModel);
  m_thumbnails->setMinimumWidth(m_thumbnailModel->thumbnailSize() + 40);

  m_view = new PageView(m_splitter);
  m_view->setDocument(m_document);
  m_splitter->addWidget(m_thumbnails);
  m_splitter->addWidget(m_view);
  m_splitter->setStretchFactor(0, 0);
  m_splitter->setStretchFactor(1, 1);
  m_splitter->setSizes({m_thumbnailModel->thumbnailSize() + 48, 800});
  m_findBar = new FindBar(this);
  m_findBar->hide();
  layout->addWidget(m_splitter, 1);
  layout->addWidget(m_findBar);
  setFocusProxy(m_view);

  // Thumbnails: render what the sidebar shows (coalesced), follow the current page, jump on click.
  auto* thumbTimer = new QTimer(this);
  thumbTimer->setSingleShot(true);
  thumbTimer->setInterval(30);
  connect(thumbTimer, &QTimer::timeout, this, &DocumentTab::requestVisibleThumbnails);
  connect(m_thumbnails->verticalScrollBar(), &QScrollBar::valueChanged, thumbTimer, qOverload<>(&QTimer::start));
  connect(m_thumbnails->verticalScrollBar(), &QScrollBar::rangeChanged, thumbTimer, qOverload<>(&QTimer::start));
  QTimer::singleShot(0, this, &DocumentTab::requestVisibleThumbnails);
  connect(m_thumbnails, &QListView::clicked, this, [this](const QModelIndex& i) {
    m_view->goToPage(i.row());
    m_view->setFocus();
  });
  connect(m_view, &PageView::currentPageChanged, this, [this](int page, int) {
    const QModelIndex i = m_thumbnailModel->index(page);
    if (!i.isValid()) return;
    m_thumbnails->setCurrentIndex(i);
    m_thumbnails->scrollTo(i);
  });

  connect(m_findBar, &FindBar::searchRequested, this, &DocumentTab::search);
  connect(m_findBar, &FindBar::nextRequested, this, &DocumentTab::nextHit);
  connect(m_findBar, &FindBar::previousRequested, this, &DocumentTab::previousHit);
  connect(m_findBar, &FindBar::closed, this, [this] {
    m_search.cancel();
    m_hits.clear();
    m_view->setSearchHits({}, -1);
    m_view->setFocus();
  });
  connect(&m_search, &TextSearch::finished, this, [this](const QString&, const QList<SearchHit>& hits) {
    m_hits = hits;
    // Start from the first hit at or after the page being read.
    int start = 0;
    while (start < m_hits.size() && m_hits[start].page < m_view->currentPage()) ++start;
    showHit(m_hits.isEmpty() ? -1 : (start < m_hits.size() ? start : 0));
  });
}

DocumentTab::~DocumentTab() = default;

void DocumentTab::requestVisibleThumbnails() {
  if (m_thumbnailModel->rowCount() == 0) return;
  const QRect vp = m_thumbnails->viewport()->rect();
  QModelIndex first = m_thumbnails->indexAt(QPoint(vp.center().x(), vp.top() + 2));
  QModelIndex last = m_thumbnails->indexAt(QPoint(vp.center().x(), vp.bottom() - 2));
  const int a = first.isValid() ? first.row() : 0;
  const int b = last.isValid() ? last.row() : std::min(m_thumbnailModel->rowCount() - 1, a + 8);
  m_thumbnailModel->requestVisible(a - 1, b + 1);
}

void DocumentTab::showFindBar() {
  m_findBar->activate();
  if (!m_document->hasText()) m_findBar->setStatus(0, 0, false);
}

void DocumentTab::setThumbnailsVisible(bool visible) { m_thumbnails->setVisible(visible); }

void DocumentTab::search(const QString& text) {
  m_hits.clear();
  m_currentHit = -1;
  m_view->setSearchHits({}, -1);
  if (text.isEmpty()) {
    m_search.cancel();
    m_findBar->setStatus(0, 0, false);
    return;
  }
  m_findBar->setStatus(0, 0, true);
  m_search.start(m_document, text);
}

void DocumentTab::showHit(int index) {
  m_currentHit = index;
  m_view->setSearchHits(m_hits, index);
  m_findBar->setStatus(std::max(index, 0), int(m_hits.size()), false);
}

void DocumentTab::nextHit() {
  if (m_hits.isEmpty()) return;
  showHit((m_currentHit + 1) % int(m_hits.size()));
}

void DocumentTab::previousHit() {
  if (m_hits.isEmpty()) return;
  showHit((m_currentHit - 1 + int(m_hits.size())) % int(m_hits.size()));
}

}  // namespace quire
