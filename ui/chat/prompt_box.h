// SPDX-License-Identifier: GPL-3.0-or-later
// PromptBox: where the question is typed. Enter sends, Shift+Enter makes a newline; while an input method is
// composing (preedit text present) Enter goes to the input method and never sends. Pasting (or dropping) an
// image or image files does not insert text: the box hands them over (imagePasted, filesPasted) to become chips.
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
  /// An image was pasted or dropped (image data, not a file).
  void imagePasted(const QImage& image);
  /// Local files were pasted or dropped.
  void filesPasted(const QStringList& paths);

 protected:
  void keyPressEvent(QKeyEvent* event) override;
  void inputMethodEvent(QInputMethodEvent* event) override;
  bool canInsertFromMimeData(const QMimeData* source) const override;
  void insertFromMimeData(const QMimeData* source) override;

 private:
  QString m_preedit;
};

}  // namespace quire
