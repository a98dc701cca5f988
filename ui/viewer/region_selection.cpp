// SPDX-License-Identifier: GPL-3.0-or-later
// RegionSelection (see region_selection.h).
#include "viewer/region_selection.h"

#include <QLineF>
#include <algorithm>
#include <array>

namespace quire {

void RegionSelection::set(int page, const QRectF& normalised) {
  m_page = page;
  m_rect = normalised.normalized() & QRectF(0, 0, 1, 1);
}

void RegionSelection::clear() {
  m_page = -1;
  m_rect = {};
  m_dragging = false;
}

QRectF RegionSelection::toScreen(const QRectF& n, const QRectF& p) {
  return QRectF(p.x() + n.x() * p.width(), p.y() + n.y() * p.height(), n.width() * p.width(), n.height() * p.height());
}

QPointF RegionSelection::toPage(const QPointF& pos, const QRectF& p) {
  if (p.isEmpty()) return {};
  return QPointF(std::clamp((pos.x() - p.x()) / p.width(), 0.0, 1.0), std::clamp((pos.y() - p.y()) / p.height(), 0.0, 1.0));
}

QRectF RegionSelection::handleRect(Handle h, const QRectF& pageOnScreen) const {
  const QRectF r = toScreen(m_rect, pageOnScreen);
  QPointF c;
  switch (h) {
    case Handle::TopLeft: c = r.topLeft(); break;
    case Handle::Top: c = QPointF(r.center().x(), r.top()); break;
    case Handle::TopRight: c = r.topRight(); break;
    case Handle::Right: c = QPointF(r.right(), r.center().y()); break;
    case Handle::BottomRight: c = r.bottomRight(); break;
    case Handle::Bottom: c = QPointF(r.center().x(), r.bottom()); break;
    case Handle::BottomLeft: c = r.bottomLeft(); break;
    case Handle::Left: c = QPointF(r.left(), r.center().y()); break;
    default: return {};
  }
  return QRectF(c.x() - kHandleSize / 2, c.y() - kHandleSize / 2, kHandleSize, kHandleSize);
}

RegionSelection::Handle RegionSelection::hitTest(const QPointF& pos, const QRectF& pageOnScreen) const {
  if (isEmpty()) return Handle::None;
  static constexpr std::array kHandles{Handle::TopLeft, Handle::Top,    Handle::TopRight,   Handle::Right,
                                       Handle::BottomRight, Handle::Bottom, Handle::BottomLeft, Handle::Left};
  for (Handle h : kHandles)
    if (handleRect(h, pageOnScreen).adjusted(-3, -3, 3, 3).contains(pos)) return h;
  if (toScreen(m_rect, pageOnScreen).contains(pos)) return Handle::Move;
  return Handle::None;
}

void RegionSelection::begin(int page, const QPointF& pos, const QRectF& pageOnScreen, Handle handle) {
  m_dragging = true;
  m_pageOnScreen = pageOnScreen;
  m_startPos = toPage(pos, pageOnScreen);
  m_handle = handle;
  if (handle == Handle::None) {
    m_page = page;
    m_rect = QRectF(m_startPos, QSizeF(0, 0));
  }
  m_startRect = m_rect;
}

bool RegionSelection::update(const QPointF& pos) {
  if (!m_dragging) return false;
  const QPointF p = toPage(pos, m_pageOnScreen);
  const QRectF before = m_rect;
  QRectF r = m_startRect;
  switch (m_handle) {
    case Handle::None: r = QRectF(m_startPos, p).normalized(); break;
    case Handle::Move: {
      const QPointF d = p - m_startPos;
      const double dx = std::clamp(d.x(), -r.left(), 1.0 - r.right());
      const double dy = std::clamp(d.y(), -r.top(), 1.0 - r.bottom());
      r.translate(dx, dy);
      break;
    }
    case Handle::TopLeft: r.setTopLeft(p); break;
    case Handle::Top: r.setTop(p.y()); break;
    case Handle::TopRight: r.setTopRight(p); break;
    case Handle::Right: r.setRight(p.x()); break;
    case Handle::BottomRight: r.setBottomRight(p); break;
    case Handle::Bottom: r.setBottom(p.y()); break;
    case Handle::BottomLeft: r.setBottomLeft(p); break;
    case Handle::Left: r.setLeft(p.x()); break;
  }
  m_rect = r.normalized() & QRectF(0, 0, 1, 1);
  return m_rect != before;
}

bool RegionSelection::end() {
  if (!m_dragging) return !isEmpty();
  m_dragging = false;
  const QRectF onScreen = toScreen(m_rect, m_pageOnScreen);
  if (onScreen.width() < 4 || onScreen.height() < 4) {
    if (m_handle == Handle::None) clear();
    else m_rect = m_startRect;
  }
  return !isEmpty();
}

}  // namespace quire
