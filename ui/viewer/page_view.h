// SPDX-License-Identifier: GPL-3.0-or-later
// PageView: the continuous page viewer. Pages are laid out top to bottom and custom-painted; only the visible
// pages ± 1 are requested from a PageRenderer (at zoom × device pixel ratio, so text stays crisp on HiDPI),
// with placeholders (or a stale render, scaled) while they render. Zoom 25–800 %, fit width / fit page,
// Ctrl+wheel zoom, PgUp/PgDn/Home/End/arrows; search hits highlighted; a region selected by dragging.
#pragma once

#include "documents/page_renderer.h"
#include "documents/text_search.h"
#include "viewer/region_selection.h"

#include <QAbstractScrollArea>
#include <QList>
#include <QRectF>
#include <memory>
#include <vector>

namespace quire {

class PageView : public QAbstractScrollArea {
  Q_OBJECT

 public:
  enum class FitMode { None, Width, Page };
  static constexpr double kMinZoom = 0.25;
  static constexpr double kMaxZoom = 8.0;

  explicit PageView(QWidget* parent = nullptr);
  ~PageView() override;

  void setDocument(std::shared_ptr<const Document> doc);
  std::shared_ptr<const Document> document() const { return m_document; }

  double zoom() const { return m_zoom; }
  FitMode fitMode() const { return m_fit; }
  int currentPage() const { return m_currentPage; }
  int pageCount() const { return int(m_pageRects.size()); }

  /// Page @p page's rectangle in viewport coordinates (logical pixels).
  QRectF pageRectInViewport(int page) const;
  /// The selected region: page (-1 when none) and normalised rect.
  int selectionPage() const { return m_selection.page(); }
  QRectF selectionRect() const { return m_selection.rect(); }

  PageRenderer* renderer() { return &m_renderer; }

 public Q_SLOTS:
  /// Sets the zoom (clamped to 25–800 %), keeping the viewport centre in place; leaves fit mode.
  void setZoom(double zoom);
  void zoomIn();
  void zoomOut();
  void fitWidth();
  void fitPage();
  /// Scrolls so @p page's top (or @p rect on it, normalised) is in view.
  void goToPage(int page, const QRectF& rect = {});
  /// Hits to highlight; @p current is scrolled into view (-1: none).
  void setSearchHits(const QList<quire::SearchHit>& hits, int current);
  void setSelection(int page, const QRectF& rect);
  void clearSelection();

 Q_SIGNALS:
  void currentPageChanged(int page, int count);
  void zoomChanged(double zoom);
  /// The selection changed: @p page -1 and an empty rect when cleared.
  void selectionChanged(int page, const QRectF& rect);

 protected:
  void paintEvent(QPaintEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;
  void scrollContentsBy(int dx, int dy) override;
  void wheelEvent(QWheelEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mouseReleaseEvent(QMouseEvent* event) override;
  void changeEvent(QEvent* event) override;
  bool viewportEvent(QEvent* event) override;

 private:
  void relayout();
  void applyFit();
  void setZoomAround(double zoom, const QPointF& anchor);
  void updateScrollBars();
  void requestVisiblePages();
  void updateCurrentPage();
  int pageAt(double contentY) const;
  QList<int> visiblePages() const;
  double renderScale() const;
  qreal dpr() const;
  QPointF contentOffset() const;
  void paintPage(class QPainter& p, int page, const QRectF& rect);
  void paintSelection(class QPainter& p);

  std::shared_ptr<const Document> m_document;
  PageRenderer m_renderer;
  std::vector<QRectF> m_pageRects;  // content coordinates, logical pixels, at m_zoom
  QSizeF m_contentSize;
  double m_zoom = 1.0;
  FitMode m_fit = FitMode::Width;
  int m_currentPage = 0;
  QList<SearchHit> m_hits;
  int m_currentHit = -1;
  RegionSelection m_selection;
  bool m_selecting = false;
  qreal m_lastDpr = 0;
};

}  // namespace quire
