// SPDX-License-Identifier: GPL-3.0-or-later
// ChatPanel: the chat beside the viewer — the messages of the active branch (Markdown rendered per message;
// a streamed piece re-renders only the last message), the context chips of the next question (each removable,
// with its resolution and token cost; the total against the context length), the prompt box, Send / Stop /
// Regenerate, and the time to first token and tokens/s. Holds no logic: everything goes to the ChatController.
// Images join the next question from the Attach button (a file dialog), by dropping image files (or image data)
// on the panel, or by pasting an image into the prompt box; other dropped files are handed to the viewer
// (filesDropped). Clicking a chip — of the next question or of an earlier one — asks the main window to show
// its page or region (contextChipActivated, attachmentActivated).
// Without a model it says where to get Pixtral-12B-2409 and offers Settings ▸ Model.
#pragma once

#include "chat/attachment.h"
#include "chat/attachment_check.h"

#include <QList>
#include <QWidget>

#include <functional>

class QLabel;
class QPushButton;
class QScrollArea;
class QTextBrowser;
class QVBoxLayout;
class QHBoxLayout;
class QFrame;
class QCheckBox;
class QToolButton;

namespace quire {

class AttachmentChipsRow;
class ChatController;
class ContextChipsRow;
class PromptBox;

class ChatPanel : public QWidget {
  Q_OBJECT

 public:
  explicit ChatPanel(ChatController* controller, QWidget* parent = nullptr);

  ChatController* controller() const { return m_controller; }
  PromptBox* promptBox() const { return m_prompt; }
  QPushButton* sendButton() const { return m_send; }
  QPushButton* stopButton() const { return m_stop; }
  QPushButton* regenerateButton() const { return m_regenerate; }
  QLabel* statsLabel() const { return m_stats; }
  /// The loaded model: device, precision and memory in use (weights as loaded, the KV cache of a full context).
  QLabel* modelInfoLabel() const { return m_modelInfo; }
  /// Shown while the history is read-only (the database cannot be written): says why; sending is off.
  QLabel* readOnlyNotice() const { return m_readOnly; }
  /// A lasting notice (what happened to the history at startup: damaged and kept aside, could not be opened; why
  /// the model failed to load),
  /// shown above the messages until the user dismisses it — a status-bar message would be gone with the next
  /// document load. A second notice is added below the first; dismissing hides them all.
  void showNotice(const QString& text);
  QWidget* noticeBanner() const { return m_notice; }
  QLabel* noticeLabel() const { return m_noticeText; }
  QToolButton* dismissNoticeButton() const { return m_dismissNotice; }
  /// The last failure said in the chat (a question not sent, an answer not saved); hidden on the next send.
  QLabel* errorLabel() const { return m_error; }
  /// Opens the conversation's sampling settings (SamplingDialog, window-modal; accepted values are applied).
  QPushButton* samplingButton() const { return m_sampling; }
  QLabel* totalLabel() const { return m_total; }
  ContextChipsRow* chipsRow() const { return m_chipsRow; }
  /// The attachment chips of message @p row (null when out of range).
  AttachmentChipsRow* attachmentRow(int row) const;
  QPushButton* attachButton() const { return m_attach; }
  QCheckBox* includeTextBox() const { return m_includeText; }
  /// Replaces the Attach button's file dialog (tests): returns the chosen image files.
  void setImageFileProvider(std::function<QStringList()> provider) { m_imageFiles = std::move(provider); }
  /// Adds image chips for @p paths; the files that are not images are returned (for the viewer).
  QStringList attachImageFiles(const QStringList& paths);
  /// The rendered text browser of message @p row (null when out of range).
  QTextBrowser* messageBrowser(int row) const;
  int messageViewCount() const { return int(m_views.size()); }
  /// Shows or hides the "no model" explanation.
  void setModelMissing(bool missing);

 Q_SIGNALS:
  void modelSettingsRequested();
  /// The next question's chip @p index was clicked (show its page/region or image).
  void contextChipActivated(int index);
  /// An earlier question's attachment was clicked; @p check says whether its document is still usable.
  void attachmentActivated(const quire::Attachment& attachment, const quire::AttachmentCheck& check);
  /// Files dropped on the panel that are not images (PDFs): for the viewer to open.
  void filesDropped(const QStringList& paths);

 public Q_SLOTS:
  void sendPrompt();
  /// The Attach button: a file dialog (or the provider) for image files.
  void chooseImages();

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  struct MessageView {
    QFrame* frame = nullptr;
    QLabel* header = nullptr;
    QTextBrowser* body = nullptr;
    AttachmentChipsRow* attachments = nullptr;
    QLabel* version = nullptr;
    QString markdown;
  };

  void rebuildMessages();
  void appendMessage(int row);
  void updateMessage(int row, const QString& piece);
  void refreshAttachmentChecks(const QString& path);
  void fillMessage(MessageView& v, int row);
  void rebuildChips();
  void updateButtons();
  void updateStats(double ttftMs, double tokensPerSecond);
  void scrollToBottom();

  ChatController* m_controller;
  QWidget* m_noModel;
  QScrollArea* m_scroll;
  QWidget* m_messagesBox;
  QVBoxLayout* m_messagesLayout;
  QList<MessageView> m_views;
  ContextChipsRow* m_chipsRow;
  QPushButton* m_attach;
  QCheckBox* m_includeText;
  std::function<QStringList()> m_imageFiles;
  QLabel* m_total;
  PromptBox* m_prompt;
  QPushButton* m_send;
  QPushButton* m_stop;
  QPushButton* m_regenerate;
  QLabel* m_stats;
  QLabel* m_modelInfo;
  QLabel* m_readOnly;
  QWidget* m_notice;
  QLabel* m_noticeText;
  QToolButton* m_dismissNotice;
  QPushButton* m_sampling;
  QLabel* m_error;
};

}  // namespace quire
