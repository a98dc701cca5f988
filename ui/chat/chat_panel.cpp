// SPDX-License-Identifier: GPL-3.0-or-later
// ChatPanel: see chat_panel.h.
#include "chat/chat_panel.h"

#include "chat/chat_controller.h"
#include "chat/chip_rows.h"
#include "chat/prompt_box.h"
#include "chat/sampling_dialog.h"
#include "inference/inference_worker.h"
#include "inference/model_folder.h"
#include "storage/conversation_store.h"

#include <QApplication>
#include <QCheckBox>
#include <QClipboard>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QImageReader>
#include <QMimeData>
#include <QFileInfo>
#include <QFrame>
#include <QHBoxLayout>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QTextBrowser>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

namespace quire {

namespace {

// The local files among @p mime's URLs.
QStringList localFiles(const QMimeData* mime) {
  QStringList out;
  if (mime && mime->hasUrls())
    for (const QUrl& url : mime->urls())
      if (url.isLocalFile()) out << url.toLocalFile();
  return out;
}

bool isImageFile(const QString& path) { return !QImageReader::imageFormat(path).isEmpty(); }

}  // namespace

ChatPanel::ChatPanel(ChatController* controller, QWidget* parent) : QWidget(parent), m_controller(controller) {
  setAccessibleName(tr("Chat"));
  setAcceptDrops(true);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);

  // No model: where to get one, and the way to Settings ▸ Model.
  m_noModel = new QWidget(this);
  auto* nm = new QVBoxLayout(m_noModel);
  auto* hint = new QLabel(m_noModel);
  hint->setWordWrap(true);
  hint->setTextFormat(Qt::PlainText);
  hint->setText(tr("No model is set up yet, so questions cannot be answered (the viewer and the history still "
                   "work).\n\n%1").arg(modelDownloadHint()));
  hint->setAccessibleName(tr("No model configured"));
  hint->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* settings = new QPushButton(tr("Settings ▸ Model…"), m_noModel);
  settings->setAccessibleName(tr("Open the model settings"));
  connect(settings, &QPushButton::clicked, this, &ChatPanel::modelSettingsRequested);
  nm->addWidget(hint);
  nm->addWidget(settings, 0, Qt::AlignLeft);
  layout->addWidget(m_noModel);

  // A read-only history (file or folder not writable, opened read-only): said here for as long as it lasts — the
  // conversations can be read and searched, but nothing new can be saved, so nothing is sent.
  m_readOnly = new QLabel(this);
  m_readOnly->setObjectName(QStringLiteral("readOnlyNotice"));
  m_readOnly->setWordWrap(true);
  m_readOnly->setTextFormat(Qt::PlainText);
  m_readOnly->setAccessibleName(tr("The conversation history is read-only"));
  m_readOnly->setStyleSheet(QStringLiteral("color: #c62828"));
  if (ConversationStore* store = m_controller->store(); store && store->isReadOnly())
    m_readOnly->setText(tr("Read-only mode: %1 Conversations can be read and searched; new questions cannot be "
                           "saved, so they are not sent.").arg(store->readOnlyReason()));
  m_readOnly->setVisible(!m_readOnly->text().isEmpty());
  layout->addWidget(m_readOnly);

  // Lasting notices (showNotice): stay until dismissed.
  auto* noticeFrame = new QFrame(this);
  noticeFrame->setFrameShape(QFrame::StyledPanel);
  m_notice = noticeFrame;
  m_notice->setObjectName(QStringLiteral("chatNotice"));
  m_notice->setAccessibleName(tr("Notice"));
  auto* noticeLine = new QHBoxLayout(m_notice);
  noticeLine->setContentsMargins(6, 4, 4, 4);
  m_noticeText = new QLabel(m_notice);
  m_noticeText->setWordWrap(true);
  m_noticeText->setTextFormat(Qt::PlainText);
  m_noticeText->setTextInteractionFlags(Qt::TextSelectableByMouse);  // a path to copy
  m_noticeText->setAccessibleName(tr("Notice about the conversation history"));
  m_dismissNotice = new QToolButton(m_notice);
  m_dismissNotice->setText(tr("Dismiss"));
  m_dismissNotice->setAccessibleName(tr("Dismiss the notice"));
  connect(m_dismissNotice, &QToolButton::clicked, this, [this] {
    m_notice->hide();
    m_noticeText->clear();
  });
  noticeLine->addWidget(m_noticeText, 1);
  noticeLine->addWidget(m_dismissNotice, 0, Qt::AlignTop);
  m_notice->hide();
  layout->addWidget(m_notice);

  auto* system = new QLineEdit(this);
  system->setObjectName(QStringLiteral("systemPrompt"));
  system->setPlaceholderText(tr("System prompt for this conversation (optional)"));
  system->setAccessibleName(tr("System prompt"));
  connect(system, &QLineEdit::editingFinished, this, [this, system] {
    if (system->text() != m_controller->systemPrompt()) m_controller->setSystemPrompt(system->text());
  });
  connect(m_controller, &ChatController::conversationChanged, system,
          [this, system] { system->setText(m_controller->systemPrompt()); });
  m_sampling = new QPushButton(tr("Sampling…"), this);
  m_sampling->setAccessibleName(tr("Sampling settings of this conversation"));
  m_sampling->setToolTip(tr("Temperature, top-p, top-k, the longest answer and the seed (engine defaults until "
                            "changed); kept with the conversation"));
  connect(m_sampling, &QPushButton::clicked, this, [this] {
    auto* dialog = new SamplingDialog(m_controller->generateParams(), this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    connect(dialog, &QDialog::accepted, this, [this, dialog] { m_controller->setGenerateParams(dialog->params()); });
    dialog->open();
  });
  auto* systemRow = new QHBoxLayout;
  systemRow->addWidget(system, 1);
  systemRow->addWidget(m_sampling);
  layout->addLayout(systemRow);

  // Model loading: progress with its stage, and Cancel.
  auto* loadRow = new QWidget(this);
  loadRow->setObjectName(QStringLiteral("modelLoad"));
  auto* lr = new QHBoxLayout(loadRow);
  lr->setContentsMargins(0, 0, 0, 0);
  auto* progress = new QProgressBar(loadRow);
  progress->setRange(0, 1000);
  progress->setAccessibleName(tr("Model loading progress"));
  auto* cancelLoad = new QPushButton(tr("Cancel"), loadRow);
  cancelLoad->setAccessibleName(tr("Cancel loading the model"));
  lr->addWidget(progress, 1);
  lr->addWidget(cancelLoad);
  loadRow->hide();
  layout->addWidget(loadRow);
  if (InferenceWorker* w = m_controller->worker()) {
    connect(cancelLoad, &QPushButton::clicked, w, [w] { w->cancelLoad(); }, Qt::DirectConnection);
    connect(w, &InferenceWorker::modelLoadProgress, loadRow, [loadRow, progress](double f, const QString& stage) {
      loadRow->show();
      progress->setValue(int(f * 1000));
      progress->setFormat(QStringLiteral("%1 — %p%").arg(stage));
    });
    auto done = [loadRow] { loadRow->hide(); };
    connect(w, &InferenceWorker::modelLoaded, loadRow, done);
    connect(w, &InferenceWorker::modelLoadFailed, loadRow, done);
    // Why the model did not load (missing tensor, out of memory, …) stays in the lasting notice until dismissed:
    // a status-bar message was replaced by the next document load.
    connect(w, &InferenceWorker::modelLoadFailed, this, [this](const QString& message) { showNotice(message); });
    connect(w, &InferenceWorker::modelLoadCancelled, loadRow, done);
  }
  // What is loaded, where, and the memory it takes: the weights as loaded (quantized where the precision says so)
  // and the KV cache of a conversation at the full context length.
  m_modelInfo = new QLabel(this);
  m_modelInfo->setObjectName(QStringLiteral("modelInfo"));
  m_modelInfo->setAccessibleName(tr("Model in use"));
  m_modelInfo->setWordWrap(true);
  m_modelInfo->hide();
  layout->addWidget(m_modelInfo);
  auto showModelInfo = [this] {
    if (!m_controller->hasModel()) return m_modelInfo->hide();
    const ModelLoadInfo& i = m_controller->modelInfo();
    const quint64 weights = i.loadedWeightBytes ? i.loadedWeightBytes : i.weightBytes;
    QStringList parts;
    if (!i.device.isEmpty()) parts << i.device;
    if (!i.precision.isEmpty()) parts << i.precision;
    if (weights) parts << tr("weights %1 GB").arg(double(weights) / 1e9, 0, 'f', 1);
    if (const quint64 kv = i.kvCacheBytes(m_controller->contextLength()))
      parts << tr("KV cache up to %1 GB (%2 tokens)").arg(double(kv) / 1e9, 0, 'f', 2).arg(m_controller->contextLength());
    m_modelInfo->setText(parts.join(QStringLiteral(" · ")));
    m_modelInfo->setToolTip(i.memoryPlan);
    m_modelInfo->setVisible(!parts.isEmpty());
  };
  connect(m_controller, &ChatController::modelChanged, this, showModelInfo);
  connect(m_controller, &ChatController::chipsChanged, this, showModelInfo);  // the context length may change

  m_scroll = new QScrollArea(this);
  m_scroll->setWidgetResizable(true);
  m_scroll->setAccessibleName(tr("Messages"));
  m_messagesBox = new QWidget(m_scroll);
  m_messagesLayout = new QVBoxLayout(m_messagesBox);
  m_messagesLayout->addStretch(1);
  m_scroll->setWidget(m_messagesBox);
  layout->addWidget(m_scroll, 1);

  m_error = new QLabel(this);
  m_error->setWordWrap(true);
  m_error->setAccessibleName(tr("Chat error"));
  m_error->hide();
  layout->addWidget(m_error);

  m_chipsRow = new ContextChipsRow(m_controller, this);
  connect(m_chipsRow, &ContextChipsRow::chipActivated, this, &ChatPanel::contextChipActivated);
  m_total = new QLabel(this);
  m_total->setAccessibleName(tr("Tokens of the next question against the context length"));
  auto* chipsLine = new QHBoxLayout;
  chipsLine->addWidget(m_chipsRow, 1);
  chipsLine->addWidget(m_total);
  layout->addLayout(chipsLine);

  auto* attachLine = new QHBoxLayout;
  m_attach = new QPushButton(tr("Attach Image…"), this);
  m_attach->setAccessibleName(tr("Attach an image to the question"));
  m_attach->setToolTip(tr("Attach PNG, JPEG or WebP images (or drop them here, or paste one into the question)"));
  connect(m_attach, &QPushButton::clicked, this, &ChatPanel::chooseImages);
  m_includeText = new QCheckBox(tr("Include page text"), this);
  m_includeText->setAccessibleName(tr("Include the page text layer with pages and regions"));
  m_includeText->setToolTip(tr("Send each page's or region's text layer (from the PDF) along with its image"));
  m_includeText->setChecked(m_controller->includePageText());
  connect(m_includeText, &QCheckBox::toggled, m_controller, &ChatController::setIncludePageText);
  attachLine->addWidget(m_attach);
  attachLine->addWidget(m_includeText);
  attachLine->addStretch(1);
  layout->addLayout(attachLine);

  m_prompt = new PromptBox(this);
  m_prompt->setMaximumHeight(120);
  connect(m_prompt, &PromptBox::imagePasted, this, [this](const QImage& image) {
    m_controller->addImageChip(image, tr("pasted image"));
  });
  connect(m_prompt, &PromptBox::filesPasted, this, [this](const QStringList& paths) {
    const QStringList others = attachImageFiles(paths);
    if (!others.isEmpty()) emit filesDropped(others);
  });
  layout->addWidget(m_prompt);

  auto* buttons = new QHBoxLayout;
  m_stats = new QLabel(this);
  m_stats->setAccessibleName(tr("Answer speed"));
  m_regenerate = new QPushButton(tr("Regenerate"), this);
  m_regenerate->setAccessibleName(tr("Regenerate the last answer"));
  m_stop = new QPushButton(tr("Stop"), this);
  m_stop->setAccessibleName(tr("Stop the answer"));
  m_stop->setToolTip(tr("Stop the answer (Esc)"));  // Esc itself is the main window's Chat ▸ Stop action
  m_send = new QPushButton(tr("Send"), this);
  m_send->setAccessibleName(tr("Send the question"));
  m_send->setDefault(false);
  buttons->addWidget(m_stats, 1);
  buttons->addWidget(m_regenerate);
  buttons->addWidget(m_stop);
  buttons->addWidget(m_send);
  layout->addLayout(buttons);

  connect(m_prompt, &PromptBox::submitted, this, &ChatPanel::sendPrompt);
  connect(m_send, &QPushButton::clicked, this, &ChatPanel::sendPrompt);
  connect(m_stop, &QPushButton::clicked, m_controller, &ChatController::stop);
  connect(m_regenerate, &QPushButton::clicked, m_controller, [this] { m_controller->regenerate(); });
  connect(m_controller, &ChatController::messagesReset, this, &ChatPanel::rebuildMessages);
  connect(m_controller, &ChatController::messageAppended, this, &ChatPanel::appendMessage);
  connect(m_controller, &ChatController::messageUpdated, this, &ChatPanel::updateMessage);
  connect(m_controller, &ChatController::chipsChanged, this, &ChatPanel::rebuildChips);
  connect(m_controller, &ChatController::estimateChanged, this, &ChatPanel::rebuildChips);
  connect(m_controller, &ChatController::generatingChanged, this, &ChatPanel::updateButtons);
  connect(m_controller, &ChatController::statsChanged, this, &ChatPanel::updateStats);
  connect(m_controller, &ChatController::errorOccurred, this, [this](const QString& m) {
    m_error->setText(m);
    m_error->setVisible(!m.isEmpty());
  });
  connect(m_prompt, &QPlainTextEdit::textChanged, this, &ChatPanel::rebuildChips);
  connect(m_controller, &ChatController::modelChanged, this, [this] { setModelMissing(!m_controller->hasModel()); });
  connect(m_controller->attachmentChecker(), &AttachmentChecker::fileChecked, this,
          &ChatPanel::refreshAttachmentChecks);

  setModelMissing(!m_controller->hasModel());
  rebuildMessages();
  rebuildChips();
  updateButtons();
}

void ChatPanel::showNotice(const QString& text) {
  if (text.isEmpty()) return;
  const QString shown = m_noticeText->text();
  m_noticeText->setText(shown.isEmpty() ? text : shown + QLatin1Char('\n') + text);
  m_notice->show();
}

void ChatPanel::setModelMissing(bool missing) {
  m_noModel->setVisible(missing);
  updateButtons();
}

void ChatPanel::sendPrompt() {
  m_error->hide();
  if (m_controller->send(m_prompt->toPlainText())) m_prompt->clear();
}

void ChatPanel::chooseImages() {
  QStringList files;
  if (m_imageFiles) {
    files = m_imageFiles();
  } else {
    files = QFileDialog::getOpenFileNames(this, tr("Attach Images"), QString(),
                                          tr("Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff)"));
  }
  const QStringList others = attachImageFiles(files);
  if (!others.isEmpty()) emit filesDropped(others);
}

QStringList ChatPanel::attachImageFiles(const QStringList& paths) {
  QStringList others;
  for (const QString& p : paths) {
    if (isImageFile(p)) m_controller->addImageChip(p);  // an unreadable image says so (errorOccurred)
    else others << p;
  }
  return others;
}

void ChatPanel::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasImage() || !localFiles(event->mimeData()).isEmpty()) event->acceptProposedAction();
}

void ChatPanel::dropEvent(QDropEvent* event) {
  const QStringList files = localFiles(event->mimeData());
  if (!files.isEmpty()) {
    const QStringList others = attachImageFiles(files);
    if (!others.isEmpty()) emit filesDropped(others);
  } else if (event->mimeData()->hasImage()) {
    const QImage image = qvariant_cast<QImage>(event->mimeData()->imageData());
    if (!image.isNull()) m_controller->addImageChip(image, tr("dropped image"));
  }
  event->acceptProposedAction();
}

AttachmentChipsRow* ChatPanel::attachmentRow(int row) const {
  return row >= 0 && row < m_views.size() ? m_views[row].attachments : nullptr;
}

QTextBrowser* ChatPanel::messageBrowser(int row) const {
  return row >= 0 && row < m_views.size() ? m_views[row].body : nullptr;
}

void ChatPanel::rebuildMessages() {
  for (MessageView& v : m_views) v.frame->deleteLater();
  m_views.clear();
  for (int row = 0; row < m_controller->messages().size(); ++row) appendMessage(row);
  updateButtons();
}

void ChatPanel::appendMessage(int row) {
  while (m_views.size() <= row) {
    MessageView v;
    v.frame = new QFrame(m_messagesBox);
    v.frame->setFrameShape(QFrame::StyledPanel);
    auto* l = new QVBoxLayout(v.frame);
    auto* top = new QHBoxLayout;
    v.header = new QLabel(v.frame);
    v.version = new QLabel(v.frame);
    const int r = int(m_views.size());
    auto* prev = new QToolButton(v.frame);
    prev->setText(QStringLiteral("‹"));
    prev->setAccessibleName(tr("Previous version"));
    prev->setToolTip(tr("Previous version"));
    auto* next = new QToolButton(v.frame);
    next->setText(QStringLiteral("›"));
    next->setAccessibleName(tr("Next version"));
    next->setToolTip(tr("Next version"));
    auto* copy = new QToolButton(v.frame);
    copy->setText(tr("Copy"));
    copy->setAccessibleName(tr("Copy this message"));
    auto* edit = new QToolButton(v.frame);
    edit->setText(tr("Edit"));
    edit->setAccessibleName(tr("Edit and resend this question"));
    connect(prev, &QToolButton::clicked, this, [this, r] { m_controller->showSibling(r, -1); });
    connect(next, &QToolButton::clicked, this, [this, r] { m_controller->showSibling(r, +1); });
    connect(copy, &QToolButton::clicked, this, [this, r] {
      if (r < m_controller->messages().size()) QApplication::clipboard()->setText(m_controller->messages()[r].text);
    });
    connect(edit, &QToolButton::clicked, this, [this, r] {
      if (r >= m_controller->messages().size()) return;
      bool ok = false;
      const QString text = QInputDialog::getMultiLineText(this, tr("Edit and resend"), tr("Question:"),
                                                          m_controller->messages()[r].text, &ok);
      if (ok) m_controller->editAndResend(r, text);
    });
    top->addWidget(v.header, 1);
    top->addWidget(prev);
    top->addWidget(v.version);
    top->addWidget(next);
    top->addWidget(edit);
    top->addWidget(copy);
    l->addLayout(top);
    v.body = new QTextBrowser(v.frame);
    v.body->setOpenExternalLinks(true);
    v.body->setFrameShape(QFrame::NoFrame);
    v.body->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    v.body->setSizeAdjustPolicy(QAbstractScrollArea::AdjustToContents);
    l->addWidget(v.body);
    v.attachments = new AttachmentChipsRow(v.frame);
    connect(v.attachments, &AttachmentChipsRow::attachmentActivated, this, &ChatPanel::attachmentActivated);
    l->addWidget(v.attachments);
    m_messagesLayout->insertWidget(m_messagesLayout->count() - 1, v.frame);
    edit->setVisible(false);
    edit->setObjectName(QStringLiteral("edit"));
    prev->setObjectName(QStringLiteral("prev"));
    next->setObjectName(QStringLiteral("next"));
    m_views << v;
    fillMessage(m_views.last(), r);
  }
  scrollToBottom();
}

void ChatPanel::fillMessage(MessageView& v, int row) {
  if (row >= m_controller->messages().size()) return;
  const Message& m = m_controller->messages()[row];
  const bool user = m.role == MessageRole::User;
  QString state;
  if (m.state == MessageState::Streaming) state = tr(" (writing…)");
  else if (m.state == MessageState::Stopped) state = tr(" (stopped)");
  else if (m.state == MessageState::Error) state = tr(" (failed)");
  v.header->setText((user ? tr("You") : tr("Pixtral")) + state);
  v.body->setAccessibleName(user ? tr("Your question") : tr("Answer"));
  v.markdown = m.text;
  v.body->setMarkdown(m.text);
  v.body->document()->adjustSize();
  v.body->setMinimumHeight(int(v.body->document()->size().height()) + 8);
  QList<AttachmentCheck> checks;
  for (const Attachment& a : m.attachments) checks << m_controller->checkAttachment(a);
  v.attachments->setAttachments(m.attachments, checks);
  const int n = m_controller->siblingCount(row);
  v.version->setText(n > 1 ? tr("%1 / %2").arg(m_controller->siblingIndex(row) + 1).arg(n) : QString());
  for (auto* b : v.frame->findChildren<QToolButton*>()) {
    if (b->objectName() == QLatin1String("prev") || b->objectName() == QLatin1String("next")) b->setVisible(n > 1);
    if (b->objectName() == QLatin1String("edit")) b->setVisible(user);
  }
}

void ChatPanel::refreshAttachmentChecks(const QString& path) {
  // A file's check came back from the worker: the chips of the shown messages that refer to it are updated.
  const QList<Message>& messages = m_controller->messages();
  for (int row = 0; row < m_views.size() && row < messages.size(); ++row) {
    const Message& m = messages[row];
    bool refers = false;
    for (const Attachment& a : m.attachments) refers = refers || a.documentPath == path;
    if (!refers) continue;
    QList<AttachmentCheck> checks;
    for (const Attachment& a : m.attachments) checks << m_controller->attachmentChecker()->cachedCheck(a);
    m_views[row].attachments->setAttachments(m.attachments, checks);
  }
}

void ChatPanel::updateMessage(int row, const QString& piece) {
  if (row < 0 || row >= m_views.size()) return;
  MessageView& v = m_views[row];
  if (!piece.isEmpty() && m_controller->messages()[row].state == MessageState::Streaming) {
    // Streaming: only this message's document is re-rendered; the rest of the panel is untouched.
    v.markdown += piece;
    const int scroll = v.body->verticalScrollBar()->value();
    v.body->setMarkdown(v.markdown);
    v.body->verticalScrollBar()->setValue(scroll);
    v.body->document()->adjustSize();
    v.body->setMinimumHeight(int(v.body->document()->size().height()) + 8);
    scrollToBottom();
    return;
  }
  fillMessage(v, row);
}

void ChatPanel::rebuildChips() {
  m_chipsRow->rebuild();
  if (m_includeText->isChecked() != m_controller->includePageText()) {
    const QSignalBlocker block(m_includeText);
    m_includeText->setChecked(m_controller->includePageText());
  }
  const int used = m_controller->estimatedPromptTokens(m_prompt->toPlainText());
  m_total->setText(tr("%1 / %2 tokens").arg(used).arg(m_controller->contextLength()) +
                   (m_controller->timeEstimate().isEmpty()
                        ? QString()
                        : tr(" · on the CPU: %1").arg(m_controller->timeEstimate())));
  m_total->setStyleSheet(used >= m_controller->contextLength() ? QStringLiteral("color: #c62828") : QString());
}

void ChatPanel::updateButtons() {
  const bool busy = m_controller->isGenerating();
  const bool ready = m_controller->hasModel();
  m_send->setEnabled(ready && !busy && m_readOnly->isHidden());
  m_stop->setEnabled(busy);
  bool hasAnswer = false;
  for (const Message& m : m_controller->messages()) hasAnswer = hasAnswer || m.role == MessageRole::User;
  m_regenerate->setEnabled(ready && !busy && hasAnswer && m_readOnly->isHidden());
}

void ChatPanel::updateStats(double ttftMs, double tokensPerSecond) {
  QStringList parts;
  if (ttftMs >= 0) parts << tr("first token %1 s").arg(ttftMs / 1000.0, 0, 'f', 2);
  if (tokensPerSecond > 0) parts << tr("%1 tokens/s").arg(tokensPerSecond, 0, 'f', 1);
  m_stats->setText(parts.join(QStringLiteral(" · ")));
}

void ChatPanel::scrollToBottom() {
  QTimer::singleShot(0, this, [this] { m_scroll->verticalScrollBar()->setValue(m_scroll->verticalScrollBar()->maximum()); });
}

}  // namespace quire
