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
    chip->setToolTip(c.kind == AttachmentKind::Image
                         ? tr("Click to show %1 in the viewer; the arrow sets its resolution").arg(c.label)
                         : tr("Click to show %1 in the viewer; the arrow sets its resolution and text layer")
                               .arg(c.label));
    connect(chip, &QToolButton::clicked, this, [this, i] { emit chipActivated(i); });
    // The arrow menu: the resolution (every chip) and, for pages and regions, the text layer.
    auto* menu = new QMenu(chip);
    menu->setAccessibleName(tr("Options of %1").arg(c.label));
    const int maxSide = m_controller->maxImageSize();
    const int current = std::min(c.maxSide, maxSide);
    auto addSide = [&](const QString& title, int side, bool checked) {
      QAction* a = menu->addAction(title);
      a->setObjectName(QStringLiteral("side%1").arg(side));
      a->setCheckable(true);
      a->setChecked(checked);
      connect(a, &QAction::triggered, this, [this, i, side] {
        QTimer::singleShot(0, m_controller, [c = m_controller, i, side] { c->setChipMaxSide(i, side); });
      });
    };
    if (c.kind == AttachmentKind::Image) {
      // Never enlarged: its own size (the engine fits it to the model's maximum), or smaller sides.
      const int own = std::max(c.image.width(), c.image.height());
      addSide(tr("Original size (%1×%2)").arg(c.image.width()).arg(c.image.height()), maxSide, current >= maxSide);
      for (int side : {1024, 768, 512, 384, 256})
        if (side < maxSide && side < own) addSide(tr("Longest side %1 px").arg(side), side, side == current);
    } else {
      for (int side : {1024, 768, 512, 384, 256})
        if (side <= maxSide) addSide(tr("Longest side %1 px").arg(side), side, side == current);
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
    }
    chip->setMenu(menu);
    chip->setPopupMode(QToolButton::MenuButtonPopup);
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
      case AttachmentAvailability::Checking:
        text = tr("%1 (checking…)").arg(text);
        name = tr("%1, its document is being checked").arg(name);
        tip = check.message;
        b->setProperty("checking", true);
        break;
    }
    if (!check.usable() && !check.pending()) {
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
