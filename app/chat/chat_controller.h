// SPDX-License-Identifier: GPL-3.0-or-later
// ChatController: the chat's logic on QtCore/QtGui (no widgets). It holds the current conversation (its active
// path of messages), the pending context chips of the next question (a page of a document, a region of a page,
// an image file — each with its resolution and token cost, their total against the context length), and drives
// the InferenceWorker through its queued signals:
//  - send(): the user message is committed to the store at once, with its attachments (the exact model images
//    are kept as PNG in the attachment, so a later turn or a reopened conversation sends the same pixels); the
//    answer is begun in the store, streamed into the last message as pieces arrive (committed as it streams)
//    and finished with its state (complete / stopped / error), exact token ids and timings. When the history
//    cannot be written (disk full), the chat says so once, the answer stays on screen as streamed, and its
//    final save is tried again before the next question (and on exit); what was committed is never touched.
//  - stop(), regenerate() (a new sibling answer; the earlier one kept), editAndResend() (a new sibling user
//    message), showSibling() (browse the versions of a message).
// Assistant turns go back to the engine with their exact token ids (never re-tokenized).
// Threading: GUI thread only (the store belongs to this thread; the worker lives on its own thread).
// ref: nomic-ai/gpt4all gpt4all-chat/src/chat.cpp (chat object driving a worker, streaming into the last item)
#pragma once

#include "chat/attachment.h"
#include "chat/attachment_check.h"
#include "chat/conversation.h"
#include "chat/message.h"
#include "inference/inference_types.h"

#include <QElapsedTimer>
#include <QImage>
#include <QList>
#include <QObject>
#include <QPointer>
#include <QRectF>
#include <QSize>

#include <memory>
#include <optional>

namespace quire {

class ConversationStore;
class Document;
class InferenceWorker;

/// The decoder tokens an image of @p width × @p height costs: (Wp + 1) · Hp, with the patch grid computed as
/// mistral-common's ImageEncoder does (ratio = max(w/M, h/M); if > 1 both sides divided by it and rounded
/// half-to-even; Wp = (w − 1) // P + 1). 0 for an empty size.
/// ref: engine/src/vision/preprocess.h patch_grid (not public API; the same rule)
int imageTokenCount(int width, int height, int patchSize = 16, int maxImageSize = 1024);

/// One item of the next question's context.
struct ContextChip {
  AttachmentKind kind = AttachmentKind::Page;
  std::shared_ptr<const Document> document;  ///< Page and Region (null for an image file)
  QString path;                              ///< the document's or image's file
  int page = 0;                              ///< 0-based
  QRectF region;                             ///< normalised 0–1 (Region)
  QImage image;                              ///< Image chips: the picture itself
  int maxSide = 1024;                        ///< longest side it is rendered / scaled down to (adjustable)
  QSize resolution;                          ///< pixels of the image the model gets
  int tokens = 0;                            ///< its decoder token cost
  QString label;                             ///< "page 3 of report.pdf", "region on page 5", "chart.png"
  bool includeText = false;                  ///< send the page's (region's) text layer along, as text
  QString pageText;                          ///< that text (Page and Region of a PDF), read when turned on
  QString textNote;                          ///< why there is no text ("no text layer", a read error)
  int textTokens = 0;                        ///< the text's estimated token cost (0 unless includeText)
};

/// The estimated decoder tokens of @p text (about 4 characters a token) — the chat's estimate for text until
/// the engine has tokenized it.
int estimateTextTokens(const QString& text);

/// The attachments of a question: each chip rendered at its size (PNG), with its file's hash. Any thread.
struct Prepared {
  QList<Attachment> attachments;
  QString error;
};
Prepared prepareAttachments(const QList<ContextChip>& chips, int maxImageSize);

class ChatController : public QObject {
  Q_OBJECT

 public:
  /// @p store: open, on this thread; @p worker: may be null (no model yet). Neither is owned.
  ChatController(ConversationStore* store, InferenceWorker* worker, QObject* parent = nullptr);
  ~ChatController() override;

  ConversationStore* store() const { return m_store; }
  InferenceWorker* worker() const;
  void setWorker(InferenceWorker* worker);

  // Model facts used for token costs and limits -------------------------------------------------------------
  /// The loaded model: its patch size and longest image side set the chips' token costs, its longest usable
  /// context caps the context length (fields left 0 keep the current values).
  void setModelInfo(const ModelLoadInfo& info);
  bool hasModel() const { return m_hasModel; }
  const ModelLoadInfo& modelInfo() const { return m_modelInfo; }
  /// The vision patch side the token costs use: the loaded model's (ModelLoadInfo::patchSize), 16 before one.
  int patchSize() const { return m_patchSize; }
  void setMaxImageSize(int m) { m_maxImageSize = m > 0 ? m : 1024; recomputeChips(); }
  int maxImageSize() const { return m_maxImageSize; }
  void setContextLength(int n) { m_contextLength = n; emit chipsChanged(); }
  int contextLength() const { return m_contextLength; }
  /// Sampling of the current conversation (engine defaults until changed); stored with the conversation.
  void setGenerateParams(const pixtral::GenerateParams& p);
  pixtral::GenerateParams generateParams() const { return m_params; }

  // Conversation -------------------------------------------------------------------------------------------
  qint64 conversationId() const { return m_conversationId; }
  /// Opens @p id (its active path); 0 starts a new, empty one (created in the store on the first send()).
  bool openConversation(qint64 id);
  void newConversation() { openConversation(0); }
  const QList<Message>& messages() const { return m_path; }
  /// The conversation's system prompt (empty by default); kept with the conversation (applied when it is
  /// created by the first send() if set before).
  QString systemPrompt() const { return m_systemPrompt; }
  bool setSystemPrompt(const QString& text);
  /// The versions of the message at @p row (its siblings, itself included) and which one it is.
  int siblingCount(int row) const;
  int siblingIndex(int row) const;
  /// Shows the previous (@p delta −1) or next (+1) version of the message at @p row.
  bool showSibling(int row, int delta);

  // Context chips ------------------------------------------------------------------------------------------
  const QList<ContextChip>& chips() const { return m_chips; }
  void addPageChip(std::shared_ptr<const Document> doc, int page);
  void addRegionChip(std::shared_ptr<const Document> doc, int page, const QRectF& normalisedRect);
  /// An image file; false (and error()) when it cannot be read.
  bool addImageChip(const QString& path);
  void addImageChip(const QImage& image, const QString& label);
  void removeChip(int index);
  void clearChips();
  /// Changes a chip's longest side (its resolution and token cost follow). Pages and regions are rendered at that
  /// size; an image is scaled down to it (never up: a side at or above its own leaves it as it is, and at the
  /// model's maximum the image goes unchanged to the engine, which resizes it itself).
  void setChipMaxSide(int index, int maxSide);
  /// Sends (or not) the page's text layer with page/region chip @p index, as a text part before the question;
  /// its token cost is counted in the chip's and the total. Only PDFs have a text layer.
  void setChipIncludeText(int index, bool on);
  /// Whether new page/region chips include their text layer (the panel's checkbox); setting it applies to the
  /// chips already in the row too.
  void setIncludePageText(bool on);
  bool includePageText() const { return m_includePageText; }
  int chipTokens() const;
  /// Tokens of the conversation so far (exact for answers; estimated for text as ~4 characters a token).
  int conversationTokens() const;
  /// Chips + conversation + the prompt text: the estimate of the next prompt's length.
  int estimatedPromptTokens(const QString& text) const;

  // Asking -------------------------------------------------------------------------------------------------
  /// True from send() (while the page images render) until the answer is finished.
  bool isGenerating() const { return m_answerId != 0 || m_preparing; }
  /// Sends @p text with the chips (cleared once sent). False (and error()) when nothing can be sent: no
  /// model, already generating, empty question, over the context length, storage failure.
  bool send(const QString& text);
  void stop();
  /// A new answer to the last user message (the earlier answer stays as its sibling).
  bool regenerate();
  /// A new version of the user message at @p row with @p text (same attachments), answered at once.
  bool editAndResend(int row, const QString& text);
  /// What the next request sends for the active path: the system prompt, then per user turn its images, their
  /// text layers (each a text part) and the question; answers with their exact token ids.
  QList<InferenceMessage> inferenceMessages() const;
  /// Whether an old attachment's document is still there and unchanged, without waiting: the last known state
  /// (Checking the first time) while the file is checked on a worker thread; attachmentChecker()->fileChecked
  /// says when to ask again (cachedCheck).
  AttachmentCheck checkAttachment(const Attachment& a) { return m_checker.check(a); }
  AttachmentChecker* attachmentChecker() { return &m_checker; }
  QString error() const { return m_error; }
  /// On the CPU: how long the next question (chips + conversation) is expected to take ("about 40 s"); empty
  /// on the GPU or while unknown. Refreshed when the chips or the model change (estimateChanged).
  QString timeEstimate() const { return m_estimate; }
  void refreshEstimate();
  /// Time to first token of the last answer (ms; −1 before its first piece) and its decode rate.
  double lastTtftMs() const { return m_ttftMs; }
  double lastTokensPerSecond() const { return m_tokensPerSecond; }

 Q_SIGNALS:
  void conversationChanged(qint64 id);
  /// A model was loaded (hasModel(), modelInfo()).
  void modelChanged();
  /// The active path was replaced (open, new message, another version shown).
  void messagesReset();
  /// A message was appended to the active path.
  void messageAppended(int row);
  /// The message at @p row changed (a streamed piece @p piece appended, or its state).
  void messageUpdated(int row, const QString& piece);
  void chipsChanged();
  void estimateChanged(const QString& text);
  void generatingChanged(bool generating);
  void statsChanged(double ttftMs, double tokensPerSecond);
  void errorOccurred(const QString& message);
  /// Conversations were created/renamed by the controller (the list model refreshes).
  void conversationsChanged();

 private:
  void onPiece(qint64 conversationId, quint64 requestId, const QString& text, int tokenId);
  void onFinished(qint64 conversationId, const quire::GenerationResult& result);
  void onFailed(qint64 conversationId, const quire::GenerationFailure& failure);
  bool fail(const QString& message);
  bool canGenerate();
  bool startAnswer(qint64 parentId);
  QList<QImage> imagesOf(const Message& m) const;
  /// A page or region chip of `doc` (with its text layer when that option is on), appended and announced.
  void addDocumentChip(AttachmentKind kind, std::shared_ptr<const Document> doc, int page, const QRectF& region,
                       const QString& label);
  void recomputeChip(ContextChip& chip) const;
  void recomputeChips();
  bool commitQuestion(const QString& text, const QList<Attachment>& attachments);
  void reloadPath();
  void finishAnswer(MessageState state, const GenerationResult* result, const QString& error);
  /// An answer whose final save failed (disk full): kept to be saved again by retryUnsaved().
  struct UnsavedAnswer {
    qint64 id = 0;
    MessageState state = MessageState::Complete;
    QJsonObject timings;
    std::vector<std::int32_t> tokenIds;
    bool finished = false;  ///< finishAssistantMessage succeeded; only the token ids are left
  };
  bool saveAnswer(UnsavedAnswer& a);
  /// Saves the answers left unsaved; true when none is left.
  bool retryUnsaved();

  ConversationStore* m_store;
  QPointer<InferenceWorker> m_worker;
  QList<QMetaObject::Connection> m_workerConnections;
  ModelLoadInfo m_modelInfo;
  bool m_hasModel = false;
  int m_patchSize = 16;
  int m_maxImageSize = 1024;
  int m_contextLength = 16384;
  pixtral::GenerateParams m_params;

  qint64 m_conversationId = 0;
  QList<Message> m_path;
  QList<ContextChip> m_chips;
  bool m_includePageText = false;
  AttachmentChecker m_checker;
  QString m_systemPrompt;
  QString m_error;

  bool m_preparing = false;      ///< the question's images are being rendered
  bool m_cancelPrepare = false;  ///< Stop pressed while preparing
  qint64 m_answerId = 0;      ///< the answer being streamed (0: none)
  bool m_saveFailed = false;  ///< a piece of that answer could not be committed (said once per answer)
  QList<UnsavedAnswer> m_unsaved;
  quint64 m_requestId = 0;
  QElapsedTimer m_sinceSend;
  quint64 m_estimateTag = 0;
  QString m_estimate;
  double m_ttftMs = -1;
  double m_tokensPerSecond = 0;
};

}  // namespace quire
