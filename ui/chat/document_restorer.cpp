// SPDX-License-Identifier: GPL-3.0-or-later
// DocumentRestorer: see document_restorer.h.
#include "chat/document_restorer.h"

#include "chat/attachment_check.h"
#include "chat/chat_controller.h"
#include "chat/reference_navigator.h"
#include "main_window.h"
#include "viewer/document_tab.h"

#include <QFileInfo>

namespace quire {

DocumentRestorer::DocumentRestorer(MainWindow* window, ChatController* controller)
    : QObject(window), m_window(window), m_controller(controller) {
  connect(controller->attachmentChecker(), &AttachmentChecker::fileChecked, this, &DocumentRestorer::onChecked);
  connect(window, &MainWindow::fileOpened, this, &DocumentRestorer::onOpened);
  connect(window, &MainWindow::fileFailed, this, [this](const QString& path, const QString&) { onFailed(path); });
  // Another conversation (or a new one): what was being restored no longer matters.
  connect(controller, &ChatController::conversationChanged, this, &DocumentRestorer::cancel);
}

bool DocumentRestorer::isOpen(const QString& path) const {
  for (int i = 0; i < m_window->documentCount(); ++i) {
    DocumentTab* tab = m_window->tabAt(i);
    if (tab && tab->document() && tab->document()->path() == path) return true;
  }
  return false;
}

void DocumentRestorer::cancel() {
  m_items.clear();
  m_active = false;
}

void DocumentRestorer::restore() {
  cancel();
  m_landed = false;
  m_landingDropped = false;
  // The documents of the active path, the most recently referenced first, each with its last attachment.
  const QList<Message>& path = m_controller->messages();
  for (auto m = path.crbegin(); m != path.crend() && m_items.size() < m_limit; ++m) {
    for (auto a = m->attachments.crbegin(); a != m->attachments.crend() && m_items.size() < m_limit; ++a) {
      if (a->kind == AttachmentKind::Image || a->documentPath.isEmpty()) continue;
      const QString file = QFileInfo(a->documentPath).absoluteFilePath();
      bool seen = false;
      for (const Item& item : std::as_const(m_items)) seen = seen || item.path == file;
      if (!seen) m_items.append({file, *a, State::Checking});
    }
  }
  if (m_items.isEmpty()) {
    emit finished({}, {});
    return;
  }
  m_active = true;
  // Each file is checked on the checker's threads (check() starts a fresh probe unless one is under way, so a
  // fileChecked always follows); the verdict decides whether it is opened.
  for (const Item& item : std::as_const(m_items)) m_controller->checkAttachment(item.attachment);
}

void DocumentRestorer::onChecked(const QString& checkedPath) {
  if (!m_active) return;
  const QString file = QFileInfo(checkedPath).absoluteFilePath();
  bool changed = false;
  for (Item& item : m_items) {
    if (item.path != file || item.state != State::Checking) continue;
    const AttachmentCheck check = m_controller->attachmentChecker()->cachedCheck(item.attachment);
    if (check.pending()) continue;
    changed = true;
    if (check.availability != AttachmentAvailability::Available) {
      item.state = State::Skipped;  // missing, unreadable or changed: its chip says so; not opened
    } else if (isOpen(item.path)) {
      item.state = State::Open;  // never opened twice
    } else {
      item.state = State::Loading;
      m_window->openFilesInBackground({item.path});
    }
  }
  if (changed) advance();
}

void DocumentRestorer::onOpened(const QString& openedPath) {
  if (!m_active) return;
  const QString file = QFileInfo(openedPath).absoluteFilePath();
  bool changed = false;
  for (Item& item : m_items) {
    if (item.path == file && item.state == State::Loading) {
      item.state = State::Open;
      changed = true;
    }
  }
  if (changed) advance();
}

void DocumentRestorer::onFailed(const QString& failedPath) {
  if (!m_active) return;
  const QString file = QFileInfo(failedPath).absoluteFilePath();
  bool changed = false;
  for (Item& item : m_items) {
    if (item.path == file && item.state == State::Loading) {
      item.state = State::Skipped;
      changed = true;
    }
  }
  if (changed) advance();
}

// Lands on the most recently referenced document once every more recent one is known to be skipped; finishes
// when every document is open or skipped.
void DocumentRestorer::advance() {
  if (!m_landed && !m_landingDropped) {
    for (const Item& item : std::as_const(m_items)) {
      if (item.state == State::Skipped) continue;
      if (item.state == State::Open && isOpen(item.path)) {
        m_landed = true;
        const Attachment& a = item.attachment;
        m_window->referenceNavigator()->showPage(item.path, a.page,
                                                 a.kind == AttachmentKind::Region ? a.region : QRectF());
      }
      break;  // the first one not skipped decides: open (landed) or still under way (wait)
    }
  }
  QStringList opened, skipped;
  for (const Item& item : std::as_const(m_items)) {
    if (item.state == State::Checking || item.state == State::Loading) return;
    (item.state == State::Open ? opened : skipped) << item.path;
  }
  m_active = false;
  m_items.clear();
  emit finished(opened, skipped);
}

}  // namespace quire
