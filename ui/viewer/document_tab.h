// SPDX-License-Identifier: GPL-3.0-or-later
// DocumentTab: one open document — thumbnails sidebar, the continuous PageView and the find bar — wired
// together. It owns the Document (shared with its renderers) and the search; MainWindow owns the tabs.
#pragma once

#include "documents/document.h"
#include "documents/text_search.h"

#include <QWidget>
#include <memory>

class QListView;
class QSplitter;

namespace quire {

class FindBar;
class PageView;
class ThumbnailModel;

class DocumentTab : public QWidget {
  Q_OBJECT

 public:
  explicit DocumentTab(std::shared_ptr<Document> doc, QWidget* parent = nullptr);
  ~DocumentTab() override;

  std::shared_ptr<Document> document() const { return m_document; }
  PageView* pageView() const { return m_view; }
  QListView* thumbnailView() const { return m_thumbnails; }
  ThumbnailModel* thumbnailModel() const { return m_thumbnailModel; }
  FindBar* findBar() const { return m_findBar; }

  void showFindBar();
  /// Search hits of the last finished search, and the one shown (-1: none).
  int hitCount() const { return int(m_hits.size()); }
  int currentHit() const { return m_currentHit; }
  void setThumbnailsVisible(bool visible);

 public Q_SLOTS:
  void search(const QString& text);
  void nextHit();
  void previousHit();

 private:
  void requestVisibleThumbnails();
  void showHit(int index);

  std::shared_ptr<Document> m_document;
  QSplitter* m_splitter;
  QListView* m_thumbnails;
  ThumbnailModel* m_thumbnailModel;
  PageView* m_view;
  FindBar* m_findBar;
  TextSearch m_search;
  QList<SearchHit> m_hits;
  int m_currentHit = -1;
};

}  // namespace quire
