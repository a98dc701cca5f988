// SPDX-License-Identifier: GPL-3.0-or-later
// PageView (see page_view.h). Content coordinates: logical pixels, origin at the top-left of the laid-out
// pages; viewport = content − scroll offset.
#include "viewer/page_view.h"

#include <QKeyEvent>
#include <QPainter>
#include <QScrollBar>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>

namespace quire {

namespace {
constexpr double kPixelsPerPoint = 96.0 / 72.0;  // logical pixels per point at 100 %
constexpr double kMargin = 12.0;                 // around and between pages
constexpr double kZoomStep = 1.25;
}  // namespace

PageView::PageView(QWidget* parent) : QAbstractScrollArea(parent) {
  setAccessibleName(tr("Document pages"));
  setAccessibleDescription(tr("Drag a rectangle on a page to select a region; Esc clears it."));
  setFocusPolicy(Qt::StrongFocus);
  viewport()->setMouseTracking(true);
  viewport()->setAttribute(Qt::WA_OpaquePaintEvent);
  verticalScrollBar()->setSingleStep(40);
  horizontalScrollBar()->setSingleStep(40);
  verticalScrollBar()->setAccessibleName(tr("Vertical scroll bar"));
  horizontalScrollBar()->setAccessibleName(tr("Horizontal scroll bar"));
  m_renderer.setMemoryBudget(qint64(256) << 20);
  connect(&m_renderer, &PageRenderer::pageReady, this, [this](int page, double, const QImage&) {
    if (page >= 0 && page < pageCount() && pageRectInViewport(page).intersects(viewport()->rect()))
      viewport()->update(pageRectInViewport(page).toAlignedRect().adjusted(-2, -2, 2, 2));
  });
  connect(&m_renderer, &PageRenderer::pageFailed, viewport(), qOverload<>(&QWidget::update));
}

PageView::~PageView() = default;

void PageView::setDocument(std::shared_ptr<const Document> doc) {
  m_document = std::move(doc);
  m_renderer.setDocument(m_document);
  m_hits.clear();
  m_currentHit = -1;
  const bool hadSelection = !m_selection.isEmpty();
  m_selection.clear();
  m_currentPage = 0;
  relayout();
  applyFit();
  verticalScrollBar()->setValue(0);
  requestVisiblePages();
  viewport()->update();
  if (hadSelection) Q_EMIT selectionChanged(-1, QRectF());
  Q_EMIT currentPageChanged(m_currentPage, pageCount());
}

qreal PageView::dpr() const { return viewport()->devicePixelRatioF(); }

double PageView::renderScale() const { return m_zoom * kPixelsPerPoint * dpr(); }

QPointF PageView::contentOffset() const {
  return QPointF(horizontalScrollBar()->value(), verticalScrollBar()->value());
}

QRectF PageView::pageRectInViewport(int page) const {
  if (page < 0 || page >= pageCount()) return {};
  return m_pageRects[std::size_t(page)].translated(-contentOffset());
}

void PageView::relayout() {
  const int n = m_document ? m_document->pageCount() : 0;
  m_pageRects.assign(std::size_t(n), QRectF());
  double maxWidth = 0, y = kMargin;
  std::vector<QSizeF> sizes(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    sizes[std::size_t(i)] = m_document->pageSize(i) * (m_zoom * kPixelsPerPoint);
    maxWidth = std::max(maxWidth, sizes[std::size_t(i)].width());
  }
  const double contentWidth = std::max(maxWidth + 2 * kMargin, double(viewport()->width()));
  for (int i = 0; i < n; ++i) {
    const QSizeF s = sizes[std::size_t(i)];
    // Whole device pixels, so a page image maps 1:1 onto the screen (no blur from fractional offsets).
    const double x = std::round((contentWidth - s.width()) / 2);
    m_pageRects[std::size_t(i)] = QRectF(x, y, std::round(s.width()), std::round(s.height()));
    y += std::round(s.height()) + kMargin;
  }
  m_contentSize = QSizeF(contentWidth, y);
  updateScrollBars();
}

void PageView::updateScrollBars() {
  const QSize vp = viewport()->size();
  verticalScrollBar()->setPageStep(std::max(1, vp.height() - 40));
  horizontalScrollBar()->setPageStep(vp.width());
  verticalScrollBar()->setRange(0, std::max(0, int(std::ceil(m_contentSize.height())) - vp.height()));
  horizontalScrollBar()->setRange(0, std::max(0, int(std::ceil(m_contentSize.width())) - vp.width()));
}

void PageView::applyFit() {
  if (!m_document || pageCount() == 0 || m_fit == FitMode::None) return;
  const QSizeF vp = QSizeF(viewport()->size()) - QSizeF(2 * kMargin, 2 * kMargin);
  double widest = 0;
  for (int i = 0; i < pageCount(); ++i) widest = std::max(widest, m_document->pageSize(i).width());
  const QSizeF page = m_document->pageSize(std::clamp(m_currentPage, 0, pageCount() - 1));
  double z = vp.width() / (widest * kPixelsPerPoint);
  if (m_fit == FitMode::Page) z = std::min(z, vp.height() / (page.height() * kPixelsPerPoint));
  z = std::clamp(z, kMinZoom, kMaxZoom);
  if (std::abs(z - m_zoom) > 1e-4) {
    const int page0 = m_currentPage;
    m_zoom = z;
    relayout();
    if (m_fit == FitMode::Page) goToPage(page0);
    Q_EMIT zoomChanged(m_zoom);
  }
}

void PageView::setZoom(double zoom) {
  m_fit = FitMode::None;
  setZoomAround(zoom, QPointF(viewport()->width() / 2.0, viewport()->height() / 2.0));
}

void PageView::setZoomAround(double zoom, const QPointF& anchor) {
  zoom = std::clamp(zoom, kMinZoom, kMaxZoom);
  if (std::abs(zoom - m_zoom) < 1e-6 || pageCount() == 0) {
    m_zoom = zoom;
    return;
  }
  // Keep the document point under the anchor where it is: remember it as page + fraction of that page.
  const QPointF before = anchor + contentOffset();
  const int page = pageAt(before.y());
  const QRectF r = m_pageRects[std::size_t(page)];
  const double fy = (before.y() - r.top()) / r.height();
  const double fx = before.x() / std::max(1.0, m_contentSize.width());
  m_zoom = zoom;
  relayout();
  const QRectF r2 = m_pageRects[std::size_t(page)];
  verticalScrollBar()->setValue(int(std::lround(r2.top() + fy * r2.height() - anchor.y())));
  horizontalScrollBar()->setValue(int(std::lround(fx * m_contentSize.width() - anchor.x())));
  requestVisiblePages();
  viewport()->update();
  Q_EMIT zoomChanged(m_zoom);
}

void PageView::zoomIn() { setZoom(m_zoom * kZoomStep); }
void PageView::zoomOut() { setZoom(m_zoom / kZoomStep); }

void PageView::fitWidth() {
  m_fit = FitMode::Width;
  applyFit();
  requestVisiblePages();
  viewport()->update();
}

void PageView::fitPage() {
  m_fit = FitMode::Page;
  applyFit();
  goToPage(m_currentPage);
  requestVisiblePages();
  viewport()->update();
}

void PageView::goToPage(int page, const QRectF& rect) {
  if (page < 0 || page >= pageCount()) return;
  const QRectF r = m_pageRects[std::size_t(page)];
  if (rect.isEmpty()) {
    verticalScrollBar()->setValue(int(r.top() - kMargin));
  } else {
    const QRectF target = RegionSelection::toScreen(rect, r);
    const QRectF view(contentOffset(), QSizeF(viewport()->size()));
    if (!view.contains(target)) {
      verticalScrollBar()->setValue(int(target.center().y() - viewport()->height() / 2.0));
      if (target.left() < view.left() || target.right() > view.right())
        horizontalScrollBar()->setValue(int(target.center().x() - viewport()->width() / 2.0));
    }
  }
  updateCurrentPage();
  // The page asked for is the current one whenever it is in view, even if a neighbour shows more.
  if (page != m_currentPage && pageRectInViewport(page).intersects(QRectF(viewport()->rect()))) {
    m_currentPage = page;
    Q_EMIT currentPageChanged(m_currentPage, pageCount());
  }
  requestVisiblePages();
  viewport()->update();
}

int PageView::pageAt(double contentY) const {
  if (m_pageRects.empty()) return 0;
  // First page whose bottom (plus the gap after it) is below contentY.
  auto it = std::lower_bound(m_pageRects.begin(), m_pageRects.end(), contentY,
                             [](const QRectF& r, double y) { return r.bottom() + kMargin < y; });
  return int(std::min<std::ptrdiff_t>(it - m_pageRects.begin(), std::ptrdiff_t(m_pageRects.size()) - 1));
}

QList<int> PageView::visiblePages() const {
  QList<int> pages;
  if (m_pageRects.empty()) return pages;
  const double top = verticalScrollBar()->value(), bottom = top + viewport()->height();
  for (int p = pageAt(top); p < pageCount() && m_pageRects[std::size_t(p)].top() < bottom; ++p) pages.append(p);
  return pages;
}

void PageView::requestVisiblePages() {
  if (!m_document || pageCount() == 0 || !isVisible()) return;
  const QList<int> visible = visiblePages();
  if (visible.isEmpty()) return;
  QList<int> wanted = visible;  // visible first, then the neighbours above and below
  if (visible.first() > 0) wanted.append(visible.first() - 1);
  if (visible.last() + 1 < pageCount()) wanted.append(visible.last() + 1);
  m_renderer.request(wanted, renderScale(), m_currentPage);
}

void PageView::updateCurrentPage() {
  if (pageCount() == 0) return;
  // The current page is the one taking up most of the viewport (so the last page counts once it is in view,
  // even though its top can never reach the top of the viewport).
  const double top = verticalScrollBar()->value(), bottom = top + viewport()->height();
  int page = pageAt(top);
  double best = -1;
  const bool atEnd = verticalScrollBar()->value() >= verticalScrollBar()->maximum() && verticalScrollBar()->maximum() > 0;
  for (int p : visiblePages()) {
    const QRectF r = m_pageRects[std::size_t(p)];
    const double shown = std::min(r.bottom(), bottom) - std::max(r.top(), top);
    if (shown > best + 0.5 || (atEnd && shown > 0)) {  // at the very end, the last page shown wins
      best = shown;
      page = p;
    }
  }
  if (page != m_currentPage) {
    m_currentPage = page;
    Q_EMIT currentPageChanged(m_currentPage, pageCount());
  }
}

void PageView::scrollContentsBy(int, int) {
  updateCurrentPage();
  requestVisiblePages();
  viewport()->update();
}

void PageView::resizeEvent(QResizeEvent* event) {
  QAbstractScrollArea::resizeEvent(event);
  relayout();
  applyFit();
  requestVisiblePages();
}

void PageView::changeEvent(QEvent* event) {
  QAbstractScrollArea::changeEvent(event);
  if (event->type() == QEvent::PaletteChange) viewport()->update();
}

bool PageView::viewportEvent(QEvent* event) {
  if (event->type() == QEvent::Show) requestVisiblePages();
  return QAbstractScrollArea::viewportEvent(event);
}

void PageView::wheelEvent(QWheelEvent* event) {
  if (event->modifiers() & Qt::ControlModifier) {
    const double steps = event->angleDelta().y() / 120.0;
    if (steps != 0) {
      m_fit = FitMode::None;
      setZoomAround(m_zoom * std::pow(1.1, steps), event->position());
    }
    event->accept();
    return;
  }
  QAbstractScrollArea::wheelEvent(event);
}

void PageView::keyPressEvent(QKeyEvent* event) {
  QScrollBar* v = verticalScrollBar();
  switch (event->key()) {
    case Qt::Key_Home: v->setValue(0); break;
    case Qt::Key_End: v->setValue(v->maximum()); break;
    case Qt::Key_PageDown: v->triggerAction(QAbstractSlider::SliderPageStepAdd); break;
    case Qt::Key_PageUp: v->triggerAction(QAbstractSlider::SliderPageStepSub); break;
    case Qt::Key_Space:
      v->triggerAction(event->modifiers() & Qt::ShiftModifier ? QAbstractSlider::SliderPageStepSub
                                                              : QAbstractSlider::SliderPageStepAdd);
      break;
    case Qt::Key_Escape:
      if (!m_selection.isEmpty()) {
        clearSelection();
        break;
      }
      event->ignore();
      return;
    default: QAbstractScrollArea::keyPressEvent(event); return;
  }
  event->accept();
}

void PageView::setSearchHits(const QList<SearchHit>& hits, int current) {
  m_hits = hits;
  m_currentHit = (current >= 0 && current < hits.size()) ? current : -1;
  if (m_currentHit >= 0) goToPage(hits[m_currentHit].page, hits[m_currentHit].rect);
  viewport()->update();
}

void PageView::setSelection(int page, const QRectF& rect) {
  if (page < 0 || page >= pageCount() || rect.isEmpty()) {
    clearSelection();
    return;
  }
  m_selection.set(page, rect);
  viewport()->update();
  Q_EMIT selectionChanged(m_selection.page(), m_selection.rect());
}

void PageView::clearSelection() {
  if (m_selection.isEmpty()) return;
  m_selection.clear();
  viewport()->update();
  Q_EMIT selectionChanged(-1, QRectF());
}

void PageView::mousePressEvent(QMouseEvent* event) {
  if (event->button() != Qt::LeftButton || pageCount() == 0) return QAbstractScrollArea::mousePressEvent(event);
  const QPointF pos = event->position();
  if (!m_selection.isEmpty()) {
    const QRectF onScreen = pageRectInViewport(m_selection.page());
    const RegionSelection::Handle h = m_selection.hitTest(pos, onScreen);
    if (h != RegionSelection::Handle::None) {
      m_selection.begin(m_selection.page(), pos, onScreen, h);
      m_selecting = true;
      return;
    }
  }
  const int page = pageAt(pos.y() + verticalScrollBar()->value());
  const QRectF onScreen = pageRectInViewport(page);
  if (!onScreen.contains(pos)) return;
  m_selection.begin(page, pos, onScreen, RegionSelection::Handle::None);
  m_selecting = true;
  viewport()->update();
}

void PageView::mouseMoveEvent(QMouseEvent* event) {
  const QPointF pos = event->position();
  if (m_selecting) {
    if (m_selection.update(pos)) viewport()->update();
    return;
  }
  // Cursor feedback over the selection's handles.
  using H = RegionSelection::Handle;
  const H h = m_selection.isEmpty() ? H::None : m_selection.hitTest(pos, pageRectInViewport(m_selection.page()));
  Qt::CursorShape shape = Qt::CrossCursor;
  switch (h) {
    case H::Move: shape = Qt::SizeAllCursor; break;
    case H::TopLeft: case H::BottomRight: shape = Qt::SizeFDiagCursor; break;
    case H::TopRight: case H::BottomLeft: shape = Qt::SizeBDiagCursor; break;
    case H::Top: case H::Bottom: shape = Qt::SizeVerCursor; break;
    case H::Left: case H::Right: shape = Qt::SizeHorCursor; break;
    case H::None: break;
  }
  viewport()->setCursor(shape);
}

void PageView::mouseReleaseEvent(QMouseEvent* event) {
  if (!m_selecting || event->button() != Qt::LeftButton) return QAbstractScrollArea::mouseReleaseEvent(event);
  m_selecting = false;
  m_selection.update(event->position());
  if (m_selection.end()) Q_EMIT selectionChanged(m_selection.page(), m_selection.rect());
  else Q_EMIT selectionChanged(-1, QRectF());
  viewport()->update();
}

void PageView::paintEvent(QPaintEvent* event) {
  QPainter p(viewport());
  p.fillRect(event->rect(), palette().color(QPalette::Dark));
  if (pageCount() == 0) {
    p.setPen(palette().color(QPalette::BrightText));
    p.drawText(viewport()->rect(), Qt::AlignCenter, tr("Open a PDF or an image (Ctrl+O), or drop one here."));
    return;
  }
  // The device pixel ratio changes when the window moves to another screen: render again at the new scale.
  if (dpr() != m_lastDpr) {
    m_lastDpr = dpr();
    requestVisiblePages();
  }
  for (int page : visiblePages()) paintPage(p, page, pageRectInViewport(page));
  paintSelection(p);
}

void PageView::paintPage(QPainter& p, int page, const QRectF& rect) {
  p.fillRect(rect.translated(2, 2), QColor(0, 0, 0, 60));  // shadow
  const double scale = renderScale();
  QImage image = m_renderer.cached(page, scale);
  if (image.isNull()) {
    p.fillRect(rect, Qt::white);
    const QImage stale = m_renderer.bestCached(page, scale);  // a render at another zoom, scaled for now
    if (!stale.isNull()) {
      p.setRenderHint(QPainter::SmoothPixmapTransform, true);
      p.drawImage(rect, stale);
    } else {
      p.setPen(Qt::gray);
      p.drawText(rect, Qt::AlignCenter, tr("Page %1").arg(page + 1));
    }
  } else {
    image.setDevicePixelRatio(dpr());
    p.drawImage(rect.topLeft(), image);
  }
  // Search hits on this page; the current one stronger.
  for (int i = 0; i < m_hits.size(); ++i) {
    if (m_hits[i].page != page) continue;
    const QColor c = i == m_currentHit ? QColor(255, 140, 0, 110) : QColor(255, 230, 0, 90);
    p.fillRect(RegionSelection::toScreen(m_hits[i].rect, rect), c);
  }
}

void PageView::paintSelection(QPainter& p) {
  if (m_selection.isEmpty()) return;
  const QRectF page = pageRectInViewport(m_selection.page());
  const QRectF r = RegionSelection::toScreen(m_selection.rect(), page);
  const QColor accent = palette().color(QPalette::Highlight);
  QColor fill = accent;
  fill.setAlpha(40);
  p.fillRect(r, fill);
  p.setPen(QPen(accent, 2, Qt::DashLine));
  p.drawRect(r);
  if (m_selecting) return;
  p.setPen(QPen(accent, 1));
  using H = RegionSelection::Handle;
  for (H h : {H::TopLeft, H::Top, H::TopRight, H::Right, H::BottomRight, H::Bottom, H::BottomLeft, H::Left})
    p.fillRect(m_selection.handleRect(h, page), accent);
}

}  // namespace quire
