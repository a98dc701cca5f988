// SPDX-License-Identifier: GPL-3.0-or-later
// RegionSelection: the geometry of a rectangle selected on one page — kept as page + normalised rect (0–1,
// origin top-left) so it survives zoom — and the mouse gestures that make and adjust it: drawing a new one,
// dragging one of its eight handles, or moving it. Pure geometry, no painting; PageView drives it.
#pragma once

#include <QPointF>
#include <QRectF>

namespace quire {

class RegionSelection {
 public:
  enum class Handle { None, Move, TopLeft, Top, TopRight, Right, BottomRight, Bottom, BottomLeft, Left };

  bool isEmpty() const { return m_page < 0 || m_rect.isEmpty(); }
  int page() const { return m_page; }
  QRectF rect() const { return m_rect; }
  void set(int page, const QRectF& normalised);
  void clear();

  /// The handle under @p pos (widget coordinates) given the page's rect on screen; None if outside.
  Handle hitTest(const QPointF& pos, const QRectF& pageOnScreen) const;
  /// Screen rects of the eight handles (for painting), given the page's rect on screen.
  static constexpr double kHandleSize = 8.0;
  QRectF handleRect(Handle h, const QRectF& pageOnScreen) const;

  /// Starts a gesture at @p pos on @p page (shown at @p pageOnScreen): @p handle None draws a new rectangle.
  void begin(int page, const QPointF& pos, const QRectF& pageOnScreen, Handle handle);
  /// Continues the gesture; returns true if the rectangle changed.
  bool update(const QPointF& pos);
  /// Ends the gesture; a rectangle smaller than a few pixels is dropped. Returns true if one remains.
  bool end();
  bool isDragging() const { return m_dragging; }

  /// @p normalised mapped onto @p pageOnScreen.
  static QRectF toScreen(const QRectF& normalised, const QRectF& pageOnScreen);
  /// A screen point as a normalised page point, clamped to the page.
  static QPointF toPage(const QPointF& pos, const QRectF& pageOnScreen);

 private:
  int m_page = -1;
  QRectF m_rect;  // normalised
  bool m_dragging = false;
  Handle m_handle = Handle::None;
  QRectF m_pageOnScreen;
  QRectF m_startRect;
  QPointF m_startPos;  // normalised
};

}  // namespace quire
