// SPDX-License-Identifier: GPL-3.0-or-later
// ReferenceNavigator: see reference_navigator.h.
#include "chat/reference_navigator.h"

#include "chat/chat_controller.h"
#include "documents/document_loader.h"
#include "main_window.h"
#include "viewer/document_tab.h"
#include "viewer/page_view.h"

#include <QFileInfo>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>

namespace quire {

ReferenceNavigator::ReferenceNavigator(MainWindow* window) : QObject(window), m_window(window) {
  connect(window, &MainWindow::fileOpened, this, [this](const QString& path) {
    if (!m_path.isEmpty() && QFileInfo(path).absoluteFilePath() == m_path) landIfOpen();
  });
  connect(window, &MainWindow::fileFailed, this, [this](const QString& path, const QString& message) {
    if (m_path.isEmpty() || QFileInfo(path).absoluteFilePath() != m_path) return;
    m_path.clear();
    m_warning.clear();
    emit failed(message);
  });
}

void ReferenceNavigator::warn(const QString& message) {
  m_window->statusBar()->showMessage(message, 10000);
}

void ReferenceNavigator::showPage(const QString& path, int page, const QRectF& region) {
  m_path = QFileInfo(path).absoluteFilePath();
  m_page = page;
  m_region = region;
  if (!landIfOpen()) m_window->openFiles({m_path});
}

bool ReferenceNavigator::landIfOpen() {
  for (int i = 0; i < m_window->documentCount(); ++i) {
    DocumentTab* tab = m_window->tabAt(i);
    if (!tab || !tab->document() || tab->document()->path() != m_path) continue;
    m_window->tabs()->setCurrentIndex(i);
    PageView* view = tab->pageView();
    const QString path = m_path;
    const int page = m_page;
    const QRectF region = m_region;
    m_path.clear();
    auto land = [view, page, region] {
      if (region.isEmpty()) view->clearSelection();
      else view->setSelection(page, region);
      view->goToPage(page, region);
    };
    land();
    // A tab that was just created is laid out when it is first shown: land again once it has been.
    QTimer::singleShot(0, view, land);
    if (!m_warning.isEmpty()) warn(m_warning);  // after the load, which clears the status bar
    m_warning.clear();
    emit landed(path, page);
    return true;
  }
  return false;
}

void ReferenceNavigator::showImage(const QImage& image) {
  LoadResult r = DocumentLoader().fromImage(image);
  if (r.ok()) m_window->openDocument(r.document);
  else emit failed(r.message);
}

void ReferenceNavigator::showAttachment(const Attachment& a, const AttachmentCheck& check) {
  m_warning.clear();
  // Still being checked: open it (opening says so itself if the file is gone).
  const bool fileUsable = check.availability == AttachmentAvailability::Available ||
                          check.availability == AttachmentAvailability::Changed ||
                          check.availability == AttachmentAvailability::Checking;
  if (a.kind == AttachmentKind::Image) {
    if (!a.documentPath.isEmpty() && QFileInfo(a.documentPath).isFile()) return showPage(a.documentPath, 0);
    QImage image;
    if (image.loadFromData(a.imageData)) return showImage(image);
    warn(tr("The image of this attachment is not stored."));
    return emit failed(tr("The image of this attachment is not stored."));
  }
  if (fileUsable) {
    if (!check.pending()) m_warning = check.message;
    return showPage(a.documentPath, a.page, a.kind == AttachmentKind::Region ? a.region : QRectF());
  }
  // Missing or unreadable: say so, and show what the model was given (its exact image is stored).
  warn(check.message);
  QImage image;
  if (image.loadFromData(a.imageData)) showImage(image);
  emit failed(check.message);
}

void ReferenceNavigator::showChip(const ContextChip& chip) {
  m_warning.clear();
  if (chip.kind == AttachmentKind::Image) {
    if (!chip.path.isEmpty() && QFileInfo(chip.path).isFile()) return showPage(chip.path, 0);
    return showImage(chip.image);
  }
  if (!chip.document) return;
  // The chip's own document: its tab if still open (also for pasted documents without a path).
  for (int i = 0; i < m_window->documentCount(); ++i) {
    DocumentTab* tab = m_window->tabAt(i);
    if (tab && tab->document().get() == chip.document.get()) {
      m_path = chip.document->path();
      m_page = chip.page;
      m_region = chip.kind == AttachmentKind::Region ? chip.region : QRectF();
      if (m_path.isEmpty()) {  // no path to match: land on this tab directly
        m_window->tabs()->setCurrentIndex(i);
        PageView* view = tab->pageView();
        if (m_region.isEmpty()) view->clearSelection();
        else view->setSelection(chip.page, m_region);
        view->goToPage(chip.page, m_region);
        emit landed(QString(), chip.page);
        return;
      }
      landIfOpen();
      return;
    }
  }
  if (!chip.path.isEmpty()) showPage(chip.path, chip.page, chip.kind == AttachmentKind::Region ? chip.region : QRectF());
}

}  // namespace quire
