// SPDX-License-Identifier: GPL-3.0-or-later
// PromptBox: where the question is typed. Enter sends, Shift+Enter makes a newline; while an input method is
// composing (preedit text present) Enter goes to the input method and never sends.
#pragma once

#include <QPlainTextEdit>

namespace quire {

class PromptBox : public QPlainTextEdit {
  Q_OBJECT

 public:
  explicit PromptBox(QWidget* parent = nullptr);
  /// True while an input method has uncommitted (preedit) text.
  bool isComposing() const { return !m_preedit.isEmpty(); }

 Q_SIGNALS:
  /// Enter without Shift, outside composition; the text is left in place (the panel clears it once sent).
  void submitted(const QString& text);

 protected:
  void keyPressEvent(QKeyEvent* event) override;
  void inputMethodEvent(QInputMethodEvent* event) override;

 private:
  QString m_preedit;
};

}  // namespace quire
