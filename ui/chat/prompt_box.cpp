// SPDX-License-Identifier: GPL-3.0-or-later
// PromptBox: see prompt_box.h.
#include "chat/prompt_box.h"

#include <QImage>
#include <QInputMethodEvent>
#include <QKeyEvent>
#include <QMimeData>
#include <QUrl>

namespace quire {

PromptBox::PromptBox(QWidget* parent) : QPlainTextEdit(parent) {
  setAccessibleName(tr("Question"));
  setAccessibleDescription(tr("Enter sends the question; Shift+Enter starts a new line."));
  setPlaceholderText(tr("Ask about the page, a selected region or an image… (Enter sends, Shift+Enter: new line)"));
  setTabChangesFocus(true);
}

void PromptBox::inputMethodEvent(QInputMethodEvent* event) {
  m_preedit = event->preeditString();
  QPlainTextEdit::inputMethodEvent(event);
}

namespace {

QStringList localFiles(const QMimeData* mime) {
  QStringList out;
  if (mime->hasUrls())
    for (const QUrl& url : mime->urls())
      if (url.isLocalFile()) out << url.toLocalFile();
  return out;
}

}  // namespace

bool PromptBox::canInsertFromMimeData(const QMimeData* source) const {
  return source->hasImage() || !localFiles(source).isEmpty() || QPlainTextEdit::canInsertFromMimeData(source);
}

void PromptBox::insertFromMimeData(const QMimeData* source) {
  if (const QStringList files = localFiles(source); !files.isEmpty()) {
    emit filesPasted(files);
    return;
  }
  if (source->hasImage()) {
    const QImage image = qvariant_cast<QImage>(source->imageData());
    if (!image.isNull()) emit imagePasted(image);
    return;
  }
  QPlainTextEdit::insertFromMimeData(source);
}

void PromptBox::keyPressEvent(QKeyEvent* event) {
  const bool enter = event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter;
  const bool composing = isComposing();  // the preedit seen in inputMethodEvent()
  if (enter && composing) {  // the input method's own Enter (commit the candidate): neither sends nor breaks
    event->accept();
    return;
  }
  if (enter && !composing && !(event->modifiers() & Qt::ShiftModifier)) {
    event->accept();
    emit submitted(toPlainText());
    return;
  }
  if (enter && (event->modifiers() & Qt::ShiftModifier)) {
    textCursor().insertText(QStringLiteral("\n"));
    event->accept();
    return;
  }
  QPlainTextEdit::keyPressEvent(event);
}

}  // namespace quire
