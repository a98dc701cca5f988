// SPDX-License-Identifier: GPL-3.0-or-later
// The chips of the chat panel:
//  - ContextChipsRow: the context of the next question (the ChatController's chips). Each chip is a button
//    (click: show that page/region/image in the viewer; arrow menu: resolution — an image only downwards — and,
//    for pages and regions, "Include page text") with its resolution and token cost, and a "×" button beside it
//    that removes it.
//  - AttachmentChipsRow: what an earlier question showed the model. Each attachment is a button (click: open
//    its document on that page, the region selected); one whose document is missing, unreadable or changed is
//    marked (⚠, in the warning colour) and its tooltip gives the path and what happened; until its check comes
//    back from the worker thread it says "checking…".
#pragma once

#include "chat/attachment.h"
#include "chat/attachment_check.h"

#include <QList>
#include <QWidget>

class QHBoxLayout;
class QToolButton;

namespace quire {

class ChatController;

class ContextChipsRow : public QWidget {
  Q_OBJECT

 public:
  ContextChipsRow(ChatController* controller, QWidget* parent = nullptr);
  /// The chip buttons (not the remove buttons), in the controller's order.
  QList<QToolButton*> chipButtons() const;
  QList<QToolButton*> removeButtons() const;
  void rebuild();

 Q_SIGNALS:
  /// The chip at @p index was clicked: show it.
  void chipActivated(int index);

 private:
  ChatController* m_controller;
  QHBoxLayout* m_layout;
};

class AttachmentChipsRow : public QWidget {
  Q_OBJECT

 public:
  explicit AttachmentChipsRow(QWidget* parent = nullptr);
  void setAttachments(const QList<Attachment>& attachments, const QList<AttachmentCheck>& checks);
  QList<QToolButton*> buttons() const;
  const QList<Attachment>& attachments() const { return m_attachments; }
  const QList<AttachmentCheck>& checks() const { return m_checks; }

 Q_SIGNALS:
  void attachmentActivated(const quire::Attachment& attachment, const quire::AttachmentCheck& check);

 private:
  QHBoxLayout* m_layout;
  QList<Attachment> m_attachments;
  QList<AttachmentCheck> m_checks;
};

/// "page 3 of report.pdf", "region on page 5 of report.pdf", "chart.png" / "pasted image".
QString attachmentChipLabel(const Attachment& a);

}  // namespace quire
