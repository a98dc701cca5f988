// SPDX-License-Identifier: GPL-3.0-or-later
// ContextChipsRow and AttachmentChipsRow: see chip_rows.h.
#include "chat/chip_rows.h"

#include "chat/chat_controller.h"

#include <QAction>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QMenu>
#include <QTimer>
#include <QToolButton>

namespace quire {

namespace {

void clearLayout(QHBoxLayout* layout) {
  while (QLayoutItem* item = layout->takeAt(0)) {
    delete item->widget();
    delete item;
  }
}

}  // namespace

QString attachmentChipLabel(const Attachment& a) {
  const QString name = QFileInfo(a.documentPath).fileName();
  switch (a.kind) {
    case AttachmentKind::Page: return ContextChipsRow::tr("page %1 of %2").arg(a.page + 1).arg(name);
    case AttachmentKind::Region: return ContextChipsRow::tr("region on page %1 of %2").arg(a.page + 1).arg(name);
    case AttachmentKind::Image: return name.isEmpty() ? ContextChipsRow::tr("pasted image") : name;
  }
  return name;
}

// ContextChipsRow ------------------------------------------------------------------------------------------------

ContextChipsRow::ContextChipsRow(ChatController* controller, QWidget* parent)
    : QWidget(parent), m_controller(controller), m_layout(new QHBoxLayout(this)) {
  setAccessibleName(tr("Context of the next question"));
  m_layout->setContentsMargins(0, 0, 0, 0);
  m_layout->setSpacing(2);
}

QList<QToolButton*> ContextChipsRow::chipButtons() const {
  QList<QToolButton*> out;
  for (int i = 0; i < m_layout->count(); ++i)
    if (auto* b = qobject_cast<QToolButton*>(m_layout->itemAt(i)->widget()); b && b->objectName() == QLatin1String("chip"))
      out << b;
  return out;
}

QList<QToolButton*> ContextChipsRow::removeButtons() const {
  QList<QToolButton*> out;
  for (int i = 0; i < m_layout->count(); ++i)
    if (auto* b = qobject_cast<QToolButton*>(m_layout->itemAt(i)->widget());
        b && b->objectName() == QLatin1String("removeChip"))
      out << b;
  return out;
}

void ContextChipsRow::rebuild() {
  clearLayout(m_layout);
  const auto& chips = m_controller->chips();
  for (int i = 0; i < chips.size(); ++i) {
    const ContextChip& c = chips[i];
    auto* chip = new QToolButton(this);
    chip->setObjectName(QStringLiteral("chip"));
    QString text = tr("%1 · %2×%3 · %4 tokens").arg(c.label).arg(c.resolution.width()).arg(c.resolution.height()).arg(c.tokens);
    if (c.includeText) text += tr(" + text ~%1").arg(c.textTokens);
    chip->setText(text);
    chip->setAccessibleName(tr("Show %1 (%2 tokens)").arg(c.label).arg(c.tokens + c.textTokens));
    chip->setToolTip(c.kind == AttachmentKind::Image ? tr("%1: shown in the viewer when clicked").arg(c.label)
                                                     : tr("Click to show %1 in the viewer; the arrow sets its "
                                                          "resolution and text layer").arg(c.label));
    connect(chip, &QToolButton::clicked, this, [this, i] { emit chipActivated(i); });
    if (c.kind != AttachmentKind::Image) {  // pages and regions: resolution and text layer (arrow menu)
      auto* menu = new QMenu(chip);
      menu->setAccessibleName(tr("Options of %1").arg(c.label));
      for (int side : {1024, 768, 512, 384, 256}) {
        if (side > m_controller->maxImageSize()) continue;
        QAction* a = menu->addAction(tr("Longest side %1 px").arg(side));
        a->setCheckable(true);
        a->setChecked(side == std::min(c.maxSide, m_controller->maxImageSize()));
        connect(a, &QAction::triggered, this, [this, i, side] {
          QTimer::singleShot(0, m_controller, [c = m_controller, i, side] { c->setChipMaxSide(i, side); });
        });
      }
      menu->addSeparator();
      QAction* text = menu->addAction(tr("Include page text"));
      text->setObjectName(QStringLiteral("includeText"));
      text->setCheckable(true);
      text->setChecked(c.includeText);
      if (!c.textNote.isEmpty() && !c.includeText) {
        text->setToolTip(c.textNote);
        text->setText(tr("Include page text (%1)").arg(c.textNote));
      }
      connect(text, &QAction::triggered, this, [this, i](bool on) {
        QTimer::singleShot(0, m_controller, [c = m_controller, i, on] { c->setChipIncludeText(i, on); });
      });
      chip->setMenu(menu);
      chip->setPopupMode(QToolButton::MenuButtonPopup);
    }
    auto* remove = new QToolButton(this);
    remove->setObjectName(QStringLiteral("removeChip"));
    remove->setText(QStringLiteral("×"));
    remove->setAccessibleName(tr("Remove %1").arg(c.label));
    remove->setToolTip(tr("Remove %1 from the question").arg(c.label));
    connect(remove, &QToolButton::clicked, this, [this, i] {
      QTimer::singleShot(0, m_controller, [c = m_controller, i] { c->removeChip(i); });
    });
    m_layout->addWidget(chip);
    m_layout->addWidget(remove);
  }
  m_layout->addStretch(1);
}

// AttachmentChipsRow ---------------------------------------------------------------------------------------------

AttachmentChipsRow::AttachmentChipsRow(QWidget* parent) : QWidget(parent), m_layout(new QHBoxLayout(this)) {
  setAccessibleName(tr("What this question showed the model"));
  m_layout->setContentsMargins(0, 0, 0, 0);
  m_layout->setSpacing(2);
}

QList<QToolButton*> AttachmentChipsRow::buttons() const { return findChildren<QToolButton*>(); }

void AttachmentChipsRow::setAttachments(const QList<Attachment>& attachments, const QList<AttachmentCheck>& checks) {
  clearLayout(m_layout);
  m_attachments = attachments;
  m_checks = checks;
  for (int i = 0; i < attachments.size(); ++i) {
    const Attachment& a = attachments[i];
    const AttachmentCheck check = checks.value(i);
    const QString label = attachmentChipLabel(a);
    auto* b = new QToolButton(this);
    b->setObjectName(QStringLiteral("attachment"));
    QString text = tr("%1 (%2×%3)").arg(label).arg(a.resolution.width()).arg(a.resolution.height());
    if (!a.pageText.isEmpty()) text += tr(" + text");
    QString tip = a.documentPath.isEmpty() ? tr("Click to show the image") : tr("Click to show %1").arg(a.documentPath);
    QString name = tr("Show %1").arg(label);
    switch (check.availability) {
      case AttachmentAvailability::Available:
      case AttachmentAvailability::Stored: break;
      case AttachmentAvailability::Missing:
        text = tr("⚠ %1 (missing)").arg(text);
        name = tr("%1, its document is missing").arg(name);
        break;
      case AttachmentAvailability::Unreadable:
        text = tr("⚠ %1 (unreadable)").arg(text);
        name = tr("%1, its document cannot be read").arg(name);
        break;
      case AttachmentAvailability::Changed:
        text = tr("⚠ %1 (changed)").arg(text);
        name = tr("%1, its document has changed").arg(name);
        break;
    }
    if (!check.usable()) {
      tip = check.message;
      if (!a.imageData.isEmpty()) tip += QLatin1Char('\n') + tr("Click to see the image the model was given.");
      b->setProperty("missing", true);
      b->setStyleSheet(QStringLiteral("QToolButton { color: #c62828; }"));
    }
    b->setText(text);
    b->setToolTip(tip);
    b->setAccessibleName(name);
    b->setAccessibleDescription(tip);
    connect(b, &QToolButton::clicked, this, [this, i] {
      if (i < m_attachments.size()) emit attachmentActivated(m_attachments[i], m_checks.value(i));
    });
    m_layout->addWidget(b);
  }
  m_layout->addStretch(1);
  setVisible(!attachments.isEmpty());
}

}  // namespace quire
