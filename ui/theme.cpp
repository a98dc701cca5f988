// SPDX-License-Identifier: GPL-3.0-or-later
// Theme (see theme.h). Dark palette after Qt's Fusion examples.
#include "theme.h"

#include <QApplication>
#include <QPalette>
#include <QSettings>
#include <QStyle>
#include <QStyleFactory>

namespace quire {

namespace {

QString& systemStyleName() {
  static QString name;  // the style Qt picked at start-up, captured before we first change it
  return name;
}

QPalette darkPalette() {
  QPalette p;
  const QColor window(0x2b, 0x2b, 0x2e), base(0x1e, 0x1e, 0x20), text(0xe6, 0xe6, 0xe6);
  const QColor accent(0x3d, 0x8e, 0xe0), disabled(0x80, 0x80, 0x80);
  p.setColor(QPalette::Window, window);
  p.setColor(QPalette::WindowText, text);
  p.setColor(QPalette::Base, base);
  p.setColor(QPalette::AlternateBase, window);
  p.setColor(QPalette::ToolTipBase, base);
  p.setColor(QPalette::ToolTipText, text);
  p.setColor(QPalette::PlaceholderText, disabled);
  p.setColor(QPalette::Text, text);
  p.setColor(QPalette::Button, window);
  p.setColor(QPalette::ButtonText, text);
  p.setColor(QPalette::BrightText, Qt::white);
  p.setColor(QPalette::Link, accent.lighter(120));
  p.setColor(QPalette::Highlight, accent);
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::Dark, QColor(0x14, 0x14, 0x16));
  p.setColor(QPalette::Mid, QColor(0x3a, 0x3a, 0x3e));
  p.setColor(QPalette::Light, QColor(0x48, 0x48, 0x4c));
  p.setColor(QPalette::Shadow, Qt::black);
  for (auto role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
    p.setColor(QPalette::Disabled, role, disabled);
  return p;
}

}  // namespace

void applyTheme(Theme theme) {
  if (systemStyleName().isEmpty() && QApplication::style()) systemStyleName() = QApplication::style()->name();
  switch (theme) {
    case Theme::System: {
      QApplication::setStyle(QStyleFactory::create(systemStyleName().isEmpty() ? QStringLiteral("Fusion") : systemStyleName()));
      QApplication::setPalette(QApplication::style()->standardPalette());
      break;
    }
    case Theme::Light:
      QApplication::setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
      QApplication::setPalette(QApplication::style()->standardPalette());
      break;
    case Theme::Dark:
      QApplication::setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
      QApplication::setPalette(darkPalette());
      break;
  }
}

Theme savedTheme() {
  const QString v = QSettings().value(QStringLiteral("theme")).toString();
  if (v == QLatin1String("light")) return Theme::Light;
  if (v == QLatin1String("dark")) return Theme::Dark;
  return Theme::System;
}

void saveTheme(Theme theme) {
  const char* v = theme == Theme::Light ? "light" : theme == Theme::Dark ? "dark" : "system";
  QSettings().setValue(QStringLiteral("theme"), QString::fromLatin1(v));
}

}  // namespace quire
