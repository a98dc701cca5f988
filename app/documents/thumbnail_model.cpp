// SPDX-License-Identifier: GPL-3.0-or-later
// ThumbnailModel (see thumbnail_model.h).
#include "documents/thumbnail_model.h"

#include <QSize>
#include <algorithm>

namespace quire {

ThumbnailModel::ThumbnailModel(QObject* parent) : QAbstractListModel(parent) {
  m_renderer.setMemoryBudget(qint64(48) << 20);
  m_renderer.setMaxThreads(1);
  connect(&m_renderer, &PageRenderer::pageReady, this, [this](int page, double scale, const QImage&) {
    if (page < m_pageCount && std::abs(scale - scaleFor(page)) < 1e-6) {
      const QModelIndex i = index(page);
      Q_EMIT dataChanged(i, i, {Qt::DecorationRole});
    }
  });
}

void ThumbnailModel::setDocument(std::shared_ptr<const Document> doc) {
  beginResetModel();
  m_document = std::move(doc);
  m_renderer.setDocument(m_document);
  m_pageCount = m_document ? m_document->pageCount() : 0;
  m_longestSide = 0;
  for (int i = 0; i < m_pageCount; ++i) {
    const QSizeF s = m_document->pageSize(i);
    m_longestSide = std::max({m_longestSide, s.width(), s.height()});
  }
  endResetModel();
}

void ThumbnailModel::setThumbnailSize(int pixels) {
  if (pixels == m_size || pixels <= 0) return;
  m_size = pixels;
  if (m_pageCount > 0) Q_EMIT dataChanged(index(0), index(m_pageCount - 1), {Qt::DecorationRole, Qt::SizeHintRole});
}

void ThumbnailModel::setDevicePixelRatio(qreal dpr) { m_dpr = dpr > 0 ? dpr : 1.0; }

double ThumbnailModel::scaleFor(int /*page*/) const {
  // One scale for the whole document, so one render request covers every visible row: the document's
  // largest page gets thumbnailSize() on its longest side, smaller pages stay proportionally smaller.
  if (!m_document || m_longestSide <= 0) return 0;
  return m_size * m_dpr / m_longestSide;
}

void ThumbnailModel::requestVisible(int first, int last) {
  if (!m_document || m_pageCount == 0) return;
  first = std::clamp(first, 0, m_pageCount - 1);
  last = std::clamp(last, first, m_pageCount - 1);
  QList<int> pages;
  for (int p = first; p <= last; ++p) pages.append(p);
  m_renderer.request(pages, scaleFor(first), first);
}

int ThumbnailModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : m_pageCount; }

Qt::ItemFlags ThumbnailModel::flags(const QModelIndex& index) const {
  if (!index.isValid()) return Qt::NoItemFlags;
  return Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemNeverHasChildren;
}

QImage ThumbnailModel::placeholder(int page) const {
  const QSizeF pts = m_document->pageSize(page);
  const double s = scaleFor(page);
  QImage image(std::max(1, int(pts.width() * s)), std::max(1, int(pts.height() * s)), QImage::Format_RGB32);
  image.fill(QColor(0xf4, 0xf4, 0xf4));
  image.setDevicePixelRatio(m_dpr);
  return image;
}

QVariant ThumbnailModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
  const int page = index.row();
  switch (role) {
    case Qt::DisplayRole: return QString::number(page + 1);
    case Qt::AccessibleTextRole:
    case Qt::ToolTipRole: return tr("Page %1 of %2").arg(page + 1).arg(m_pageCount);
    case Qt::DecorationRole: {
      QImage image = m_renderer.cached(page, scaleFor(page));
      if (image.isNull()) image = m_renderer.bestCached(page, scaleFor(page));
      if (image.isNull()) return placeholder(page);
      image.setDevicePixelRatio(m_dpr);
      return image;
    }
    case Qt::SizeHintRole: return QSize(m_size + 16, m_size + 28);
    case PageNumberRole: return page + 1;
    case PageSizeRole: return m_document->pageSize(page);
    default: return {};
  }
}


}  // namespace quire
