// SPDX-License-Identifier: GPL-3.0-or-later
// ReferenceNavigator: takes the main window to what a chip refers to. A page or region: the document's tab
// (opened first when it is not open — the file loads off the GUI thread, and the landing happens once it has),
// scrolled to the page, a region shown selected. An image: its file, or the stored image when there is none.
// An old attachment whose document is missing or unreadable shows the image the model was given instead (kept
// in the database), and says what happened in the status bar; a changed document still opens, with a warning.
#pragma once

#include "chat/attachment.h"
#include "chat/attachment_check.h"

#include <QObject>
#include <QRectF>
#include <QString>

namespace quire {

class MainWindow;
struct ContextChip;

class ReferenceNavigator : public QObject {
  Q_OBJECT

 public:
  explicit ReferenceNavigator(MainWindow* window);

  /// Shows page @p page (0-based) of the document at @p path, with @p region (normalised) selected if set.
  void showPage(const QString& path, int page, const QRectF& region = {});
  void showAttachment(const Attachment& attachment, const AttachmentCheck& check);
  void showChip(const ContextChip& chip);

 Q_SIGNALS:
  /// The viewer shows the reference (the tab is current, the page in view).
  void landed(const QString& path, int page);
  /// Nothing could be shown (the message is also in the status bar).
  void failed(const QString& message);

 private:
  bool landIfOpen();
  void showImage(const QImage& image);
  void warn(const QString& message);

  MainWindow* m_window;
  QString m_path;  ///< the pending landing (empty: none)
  int m_page = 0;
  QRectF m_region;
  QString m_warning;  ///< said in the status bar once landed (a changed document)
};

}  // namespace quire
