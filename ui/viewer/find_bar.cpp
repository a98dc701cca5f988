// SPDX-License-Identifier: GPL-3.0-or-later
// FindBar (see find_bar.h).
#include "viewer/find_bar.h"

#include <QGuiApplication>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QLineEdit>
#include <QTimer>
#include <QToolButton>

namespace quire {

FindBar::FindBar(QWidget* parent) : QWidget(parent) {
  setAccessibleName(tr("Find bar"));
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(6, 3, 6, 3);
  m_field = new QLineEdit(this);
  m_field->setPlaceholderText(tr("Find in document"));
  m_field->setAccessibleName(tr("Find text"));
  m_field->setClearButtonEnabled(true);
  m_previous = new QToolButton(this);
  m_previous->setText(tr("Previous"));
  m_previous->setAccessibleName(tr("Previous match"));
  m_previous->setToolTip(tr("Previous match (Shift+Enter)"));
  m_previous->setArrowType(Qt::UpArrow);
  m_next = new QToolButton(this);
  m_next->setText(tr("Next"));
  m_next->setAccessibleName(tr("Next match"));
  m_next->setToolTip(tr("Next match (Enter)"));
  m_next->setArrowType(Qt::DownArrow);
  m_status = new QLabel(this);
  m_status->setAccessibleName(tr("Find status"));
  m_status->setMinimumWidth(90);
  m_close = new QToolButton(this);
  m_close->setText(tr("Close"));
  m_close->setAccessibleName(tr("Close find bar"));
  m_close->setToolTip(tr("Close (Esc)"));
  m_close->setAutoRaise(true);
  layout->addWidget(m_field, 1);
  layout->addWidget(m_previous);
  layout->addWidget(m_next);
  layout->addWidget(m_status);
  layout->addWidget(m_close);

  // Search as the user types, once typing pauses.
  auto* debounce = new QTimer(this);
  debounce->setSingleShot(true);
  debounce->setInterval(250);
  connect(m_field, &QLineEdit::textChanged, debounce, qOverload<>(&QTimer::start));
  connect(debounce, &QTimer::timeout, this, [this] { Q_EMIT searchRequested(m_field->text()); });
  connect(m_field, &QLineEdit::returnPressed, this, [this, debounce] {
    if (QGuiApplication::keyboardModifiers() & Qt::ShiftModifier) {
      Q_EMIT previousRequested();
    } else if (debounce->isActive()) {
      debounce->stop();
      Q_EMIT searchRequested(m_field->text());
    } else {
      Q_EMIT nextRequested();
    }
  });
  connect(m_next, &QToolButton::clicked, this, &FindBar::nextRequested);
  connect(m_previous, &QToolButton::clicked, this, &FindBar::previousRequested);
  connect(m_close, &QToolButton::clicked, this, [this] {
    hide();
    Q_EMIT closed();
  });
}

QString FindBar::text() const { return m_field->text(); }

void FindBar::activate() {
  show();
  m_field->setFocus(Qt::ShortcutFocusReason);
  m_field->selectAll();
}

void FindBar::setStatus(int current, int total, bool searching) {
  if (searching) m_status->setText(tr("Searching…"));
  else if (m_field->text().isEmpty()) m_status->clear();
  else if (total == 0) m_status->setText(tr("No matches"));
  else m_status->setText(tr("%1 of %2").arg(current + 1).arg(total));
  m_next->setEnabled(total > 0);
  m_previous->setEnabled(total > 0);
}

void FindBar::keyPressEvent(QKeyEvent* event) {
  if (event->key() == Qt::Key_Escape) {
    hide();
    Q_EMIT closed();
    return;
  }
  QWidget::keyPressEvent(event);
}

}  // namespace quire
