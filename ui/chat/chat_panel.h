// SPDX-License-Identifier: GPL-3.0-or-later
// ChatPanel: the chat beside the viewer — the messages of the active branch (Markdown rendered per message;
// a streamed piece re-renders only the last message), the context chips of the next question (each removable,
// with its resolution and token cost; the total against the context length), the prompt box, Send / Stop /
// Regenerate, and the time to first token and tokens/s. Holds no logic: everything goes to the ChatController.
// Without a model it says where to get Pixtral-12B-2409 and offers Settings ▸ Model.
#pragma once

#include <QList>
#include <QWidget>

class QLabel;
class QPushButton;
class QScrollArea;
class QTextBrowser;
class QVBoxLayout;
class QHBoxLayout;
class QFrame;

namespace quire {

class ChatController;
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
  QLabel* totalLabel() const { return m_total; }
  QWidget* chipsRow() const { return m_chipsRow; }
  /// The rendered text browser of message @p row (null when out of range).
  QTextBrowser* messageBrowser(int row) const;
  int messageViewCount() const { return int(m_views.size()); }
  /// Shows or hides the "no model" explanation.
  void setModelMissing(bool missing);

 Q_SIGNALS:
  void modelSettingsRequested();

 public Q_SLOTS:
  void sendPrompt();

 private:
  struct MessageView {
    QFrame* frame = nullptr;
    QLabel* header = nullptr;
    QTextBrowser* body = nullptr;
    QLabel* attachments = nullptr;
    QLabel* version = nullptr;
    QString markdown;
  };

  void rebuildMessages();
  void appendMessage(int row);
  void updateMessage(int row, const QString& piece);
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
  QWidget* m_chipsRow;
  QHBoxLayout* m_chipsLayout;
  QLabel* m_total;
  PromptBox* m_prompt;
  QPushButton* m_send;
  QPushButton* m_stop;
  QPushButton* m_regenerate;
  QLabel* m_stats;
  QLabel* m_error;
};

}  // namespace quire
