// SPDX-License-Identifier: GPL-3.0-or-later
// ThumbnailModel: one row per page of a Document, for the viewer's sidebar. DisplayRole is "Page n",
// DecorationRole the thumbnail once rendered (a blank page-shaped placeholder until then). Views ask for the
// rows they show through requestVisible(); rendering runs on the model's own PageRenderer.
#pragma once

#include "documents/page_renderer.h"

#include <QAbstractListModel>
#include <QImage>
#include <memory>

namespace quire {

class ThumbnailModel : public QAbstractListModel {
  Q_OBJECT

 public:
  enum Role { PageNumberRole = Qt::UserRole + 1, PageSizeRole };

  explicit ThumbnailModel(QObject* parent = nullptr);

  /// Shows @p doc (or nothing). Resets the model.
  void setDocument(std::shared_ptr<const Document> doc);
  /// Longest side of a thumbnail, in logical pixels (default 140).
  void setThumbnailSize(int pixels);
  int thumbnailSize() const { return m_size; }
  /// Device pixel ratio the thumbnails are rendered for.
  void setDevicePixelRatio(qreal dpr);

  /// Renders rows [first, last] (clamped), cancelling thumbnails no longer in view.
  void requestVisible(int first, int last);

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;

  /// The renderer (tests inspect it).
  PageRenderer* renderer() { return &m_renderer; }

 private:
  double scaleFor(int page) const;
  QImage placeholder(int page) const;

  PageRenderer m_renderer;
  std::shared_ptr<const Document> m_document;
  int m_pageCount = 0;
  double m_longestSide = 0;  // points: the largest side of any page
  int m_size = 140;
  qreal m_dpr = 1.0;
};

}  // namespace quire
