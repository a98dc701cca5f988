// SPDX-License-Identifier: GPL-3.0-or-later
// ChatController: see chat_controller.h.
#include "chat/chat_controller.h"

#include "chat/page_text.h"

#include "documents/document.h"
#include "documents/model_image.h"
#include "inference/inference_worker.h"
#include "storage/conversation_store.h"

#include <QBuffer>
#include <QFutureWatcher>
#include <QtConcurrent/QtConcurrentRun>
#include <QCryptographicHash>
#include <QFile>
#include <QFileInfo>
#include <QImageReader>
#include <QJsonObject>

#include <cmath>

namespace quire {

namespace {

// Python's round(): half to even.
int roundHalfEven(double v) { return int(std::nearbyint(v)); }

QByteArray pngBytes(const QImage& image) {
  QByteArray bytes;
  QBuffer buf(&bytes);
  buf.open(QIODevice::WriteOnly);
  image.save(&buf, "PNG");
  return bytes;
}

QString fileHash(const QString& path) { return fileContentHash(path); }

QString fileName(const QString& path) { return QFileInfo(path).fileName(); }

QJsonObject samplingJson(const pixtral::GenerateParams& p) {
  return {{QStringLiteral("temperature"), double(p.temperature)},
          {QStringLiteral("top_p"), double(p.top_p)},
          {QStringLiteral("top_k"), p.top_k},
          {QStringLiteral("max_tokens"), p.max_tokens},
          {QStringLiteral("seed"), qint64(p.seed)}};
}


QImage renderChip(const ContextChip& chip, int maxImageSize) {
  if (chip.kind == AttachmentKind::Image) {
    // A resolution chosen below the image's own: scaled down to exactly the size its token cost was counted for.
    if (chip.resolution.isValid() && chip.resolution != chip.image.size())
      return chip.image.scaled(chip.resolution, Qt::IgnoreAspectRatio, Qt::SmoothTransformation);
    return chip.image;
  }
  if (!chip.document) return {};
  const int side = std::min(chip.maxSide, maxImageSize);
  return chip.kind == AttachmentKind::Page ? modelImageForPage(*chip.document, chip.page, side)
                                           : modelImageForRegion(*chip.document, chip.page, chip.region, side);
}

}  // namespace

Prepared prepareAttachments(const QList<ContextChip>& chips, int maxImageSize) {
  Prepared out;
  for (const ContextChip& c : chips) {
    const QImage img = renderChip(c, maxImageSize);
    if (img.isNull()) {
      out.error = ChatController::tr("Could not render %1.").arg(c.label);
      return out;
    }
    Attachment a;
    a.kind = c.kind;
    a.documentPath = c.path;
    a.contentHash = c.path.isEmpty() ? QString() : fileHash(c.path);
    a.page = c.page;
    a.region = c.region;
    a.resolution = img.size();
    a.imageData = pngBytes(img);  // the exact model image: later turns and reopened conversations resend it
    a.imageMime = QStringLiteral("image/png");
    if (c.includeText && c.kind != AttachmentKind::Image) a.pageText = c.pageText;
    out.attachments << a;
  }
  return out;
}

int estimateTextTokens(const QString& text) { return text.isEmpty() ? 0 : int(text.size()) / 4 + 1; }

int imageTokenCount(int width, int height, int patchSize, int maxImageSize) {
  if (width < 1 || height < 1 || patchSize < 1 || maxImageSize < 1) return 0;
  double w = width, h = height;
  const double ratio = std::max(w / maxImageSize, h / maxImageSize);
  if (ratio > 1.0) {
    w = roundHalfEven(w / ratio);
    h = roundHalfEven(h / ratio);
  }
  if (w < 1 || h < 1) return 0;
  const int wp = (int(w) - 1) / patchSize + 1;
  const int hp = (int(h) - 1) / patchSize + 1;
  return (wp + 1) * hp;
}

ChatController::ChatController(ConversationStore* store, InferenceWorker* worker, QObject* parent)
    : QObject(parent), m_store(store) {
  setWorker(worker);
}

ChatController::~ChatController() {
  if (m_answerId && m_worker) m_worker->stop(m_requestId);
  if (m_answerId && m_store) m_store->finishAssistantMessage(m_answerId, MessageState::Stopped);
  if (m_store && m_store->isOpen()) retryUnsaved();  // a last try (disk space may have come back)
}

InferenceWorker* ChatController::worker() const { return m_worker.data(); }

void ChatController::setWorker(InferenceWorker* worker) {
  for (const auto& c : m_workerConnections) disconnect(c);
  m_workerConnections.clear();
  m_worker = worker;
  if (!worker) return;
  m_workerConnections << connect(worker, &InferenceWorker::pieceArrived, this, &ChatController::onPiece)
                      << connect(worker, &InferenceWorker::generationFinished, this, &ChatController::onFinished)
                      << connect(worker, &InferenceWorker::generationFailed, this, &ChatController::onFailed)
                      << connect(worker, &InferenceWorker::modelLoaded, this, &ChatController::setModelInfo)
                      << connect(worker, &InferenceWorker::estimateReady, this,
                                 [this](quint64 tag, const TimeEstimate& e) {
                                   if (tag != m_estimateTag) return;  // an older request
                                   m_estimate = e.valid ? e.text : QString();
                                   emit estimateChanged(m_estimate);
                                 });
  connect(this, &ChatController::chipsChanged, this, &ChatController::refreshEstimate, Qt::UniqueConnection);
}

void ChatController::setModelInfo(const ModelLoadInfo& info) {
  m_modelInfo = info;
  m_hasModel = true;
  if (info.patchSize > 0) m_patchSize = info.patchSize;
  if (info.maxImageSize > 0) m_maxImageSize = info.maxImageSize;
  if (info.maxContext > 0 && m_contextLength > info.maxContext) m_contextLength = info.maxContext;
  recomputeChips();
  emit modelChanged();
}

void ChatController::refreshEstimate() {
  if (!m_worker || !m_hasModel || !m_modelInfo.onCpu()) {
    if (!m_estimate.isEmpty()) {
      m_estimate.clear();
      emit estimateChanged(m_estimate);
    }
    return;
  }
  QList<QSize> sizes;
  for (const ContextChip& c : m_chips) sizes << c.resolution;
  m_worker->requestEstimate(++m_estimateTag, sizes, conversationTokens() + 16, std::min(m_params.max_tokens, 200));
}

// Conversation ---------------------------------------------------------------------------------------------------

void ChatController::setGenerateParams(const pixtral::GenerateParams& p) {
  m_params = p;
  if (m_conversationId && m_store) m_store->setSampling(m_conversationId, samplingJson(p));
}

bool ChatController::setSystemPrompt(const QString& text) {
  m_systemPrompt = text;
  if (!m_conversationId || !m_store) return true;
  if (!m_store->setSystemPrompt(m_conversationId, text)) return fail(m_store->lastError().message());
  return true;
}

bool ChatController::openConversation(qint64 id) {
  if (isGenerating()) stop();
  m_conversationId = id;
  m_systemPrompt.clear();
  if (id && m_store) {
    if (const auto conv = m_store->conversation(id)) {
      m_systemPrompt = conv->systemPrompt;
      // Its sampling settings: stored overrides over the engine's defaults.
      pixtral::GenerateParams p;
      const QJsonObject& js = conv->sampling;
      p.temperature = float(js.value(QStringLiteral("temperature")).toDouble(p.temperature));
      p.top_p = float(js.value(QStringLiteral("top_p")).toDouble(p.top_p));
      p.top_k = js.value(QStringLiteral("top_k")).toInt(p.top_k);
      p.max_tokens = js.value(QStringLiteral("max_tokens")).toInt(p.max_tokens);
      p.seed = std::uint64_t(js.value(QStringLiteral("seed")).toInteger(qint64(p.seed)));
      m_params = p;
    }
  }
  reloadPath();
  emit conversationChanged(id);
  return true;
}

void ChatController::reloadPath() {
  m_path = (m_conversationId && m_store) ? m_store->activePath(m_conversationId) : QList<Message>{};
  emit messagesReset();
}

int ChatController::siblingCount(int row) const {
  if (row < 0 || row >= m_path.size() || !m_store) return 0;
  return int(m_store->children(m_conversationId, m_path[row].parentId).size());
}

int ChatController::siblingIndex(int row) const {
  if (row < 0 || row >= m_path.size() || !m_store) return -1;
  const QList<Message> sib = m_store->children(m_conversationId, m_path[row].parentId);
  for (int i = 0; i < sib.size(); ++i)
    if (sib[i].id == m_path[row].id) return i;
  return -1;
}

bool ChatController::showSibling(int row, int delta) {
  if (isGenerating() || row < 0 || row >= m_path.size()) return false;
  const QList<Message> sib = m_store->children(m_conversationId, m_path[row].parentId);
  const int i = siblingIndex(row) + delta;
  if (i < 0 || i >= sib.size()) return false;
  if (!m_store->setActiveMessage(m_conversationId, sib[i].id)) return fail(m_store->lastError().message());
  reloadPath();
  return true;
}

// Chips ----------------------------------------------------------------------------------------------------------

void ChatController::recomputeChip(ContextChip& chip) const {
  if (chip.kind == AttachmentKind::Image) {
    chip.resolution = chip.image.size();
    const int longest = std::max(chip.resolution.width(), chip.resolution.height());
    // Only a side chosen below the model's maximum scales the image here; at the maximum the engine resizes it
    // (its own resampling, as the reference does).
    if (chip.maxSide < m_maxImageSize && longest > chip.maxSide) {
      const double s = double(chip.maxSide) / longest;
      chip.resolution = QSize(std::max(1, int(std::lround(chip.resolution.width() * s))),
                              std::max(1, int(std::lround(chip.resolution.height() * s))));
    }
  } else if (chip.document) {
    QSizeF pts = chip.document->pageSize(chip.page);
    if (chip.kind == AttachmentKind::Region)
      pts = QSizeF(pts.width() * chip.region.width(), pts.height() * chip.region.height());
    const double longest = std::max(pts.width(), pts.height());
    const int side = std::min(chip.maxSide, m_maxImageSize);
    if (longest > 0) {
      const double s = side / longest;
      chip.resolution = QSize(std::max(1, int(std::lround(pts.width() * s))),
                              std::max(1, int(std::lround(pts.height() * s))));
    }
  }
  chip.tokens = imageTokenCount(chip.resolution.width(), chip.resolution.height(), m_patchSize, m_maxImageSize);
  chip.textTokens = chip.includeText ? estimateTextTokens(attachmentTextPart([&] {
    Attachment a;
    a.kind = chip.kind;
    a.documentPath = chip.path;
    a.page = chip.page;
    a.pageText = chip.pageText;
    return a;
  }())) : 0;
}

// Reads the chip's text layer the first time it is asked for (Poppler, its own document: a page is quick).
static void loadChipText(ContextChip& chip) {
  if (!chip.pageText.isEmpty() || !chip.textNote.isEmpty()) return;
  if (!chip.document || chip.document->kind() != Document::Kind::Pdf) {
    chip.textNote = ChatController::tr("an image has no text layer");
    return;
  }
  const PageTextResult r = pdfPageText(chip.path, chip.page, chip.kind == AttachmentKind::Region ? chip.region : QRectF());
  chip.pageText = r.text;
  if (!r.error.isEmpty()) chip.textNote = r.error;
  else if (r.text.isEmpty()) chip.textNote = ChatController::tr("this page has no text layer");
}

void ChatController::setChipIncludeText(int index, bool on) {
  if (index < 0 || index >= m_chips.size() || m_chips[index].kind == AttachmentKind::Image) return;
  ContextChip& c = m_chips[index];
  if (on) loadChipText(c);
  c.includeText = on && !c.pageText.isEmpty();
  recomputeChip(c);
  emit chipsChanged();
}

void ChatController::setIncludePageText(bool on) {
  m_includePageText = on;
  for (ContextChip& c : m_chips) {
    if (c.kind == AttachmentKind::Image) continue;
    if (on) loadChipText(c);
    c.includeText = on && !c.pageText.isEmpty();
    recomputeChip(c);
  }
  emit chipsChanged();
}

void ChatController::recomputeChips() {
  for (ContextChip& c : m_chips) recomputeChip(c);
  emit chipsChanged();
}

void ChatController::addPageChip(std::shared_ptr<const Document> doc, int page) {
  if (!doc) return;
  const QString label = tr("page %1 of %2").arg(page + 1).arg(doc->title());
  addDocumentChip(AttachmentKind::Page, std::move(doc), page, QRectF(), label);
}

void ChatController::addRegionChip(std::shared_ptr<const Document> doc, int page, const QRectF& rect) {
  if (!doc || rect.isEmpty()) return;
  const QString label = tr("region on page %1 of %2").arg(page + 1).arg(doc->title());
  addDocumentChip(AttachmentKind::Region, std::move(doc), page, rect.intersected(QRectF(0, 0, 1, 1)), label);
}

void ChatController::addDocumentChip(AttachmentKind kind, std::shared_ptr<const Document> doc, int page,
                                     const QRectF& region, const QString& label) {
  ContextChip c;
  c.kind = kind;
  c.path = doc->path();
  c.page = page;
  c.region = region;
  c.document = std::move(doc);
  c.maxSide = m_maxImageSize;
  c.label = label;
  if (m_includePageText) {
    loadChipText(c);
    c.includeText = !c.pageText.isEmpty();
  }
  recomputeChip(c);
  m_chips << c;
  emit chipsChanged();
}

bool ChatController::addImageChip(const QString& path) {
  QImageReader reader(path);
  reader.setAutoTransform(true);
  const QImage image = reader.read();
  if (image.isNull()) return fail(tr("Cannot read the image %1: %2").arg(path, reader.errorString()));
  addImageChip(image, fileName(path));
  m_chips.last().path = QFileInfo(path).absoluteFilePath();
  return true;
}

void ChatController::addImageChip(const QImage& image, const QString& label) {
  ContextChip c;
  c.kind = AttachmentKind::Image;
  c.image = image;
  c.label = label;
  c.maxSide = m_maxImageSize;
  recomputeChip(c);
  m_chips << c;
  emit chipsChanged();
}

void ChatController::removeChip(int index) {
  if (index < 0 || index >= m_chips.size()) return;
  m_chips.removeAt(index);
  emit chipsChanged();
}

void ChatController::clearChips() {
  if (m_chips.isEmpty()) return;
  m_chips.clear();
  emit chipsChanged();
}

void ChatController::setChipMaxSide(int index, int maxSide) {
  if (index < 0 || index >= m_chips.size()) return;
  m_chips[index].maxSide = std::clamp(maxSide, 16, m_maxImageSize);
  recomputeChip(m_chips[index]);
  emit chipsChanged();
}

int ChatController::chipTokens() const {
  int n = 0;
  for (const ContextChip& c : m_chips) n += c.tokens + c.textTokens;
  return n;
}

int ChatController::conversationTokens() const {
  int n = 0;
  for (const Message& m : m_path) {
    if (!m.tokenIds.empty()) {
      n += int(m.tokenIds.size());
      continue;
    }
    n += int(m.text.size()) / 4 + 4;  // an estimate: ~4 characters a token, plus the control tokens
    for (const Attachment& a : m.attachments)
      n += imageTokenCount(a.resolution.width(), a.resolution.height(), m_patchSize, m_maxImageSize) +
           estimateTextTokens(attachmentTextPart(a));
  }
  return n;
}

int ChatController::estimatedPromptTokens(const QString& text) const {
  return conversationTokens() + chipTokens() + int(text.size()) / 4 + 4;
}

// Asking ---------------------------------------------------------------------------------------------------------

bool ChatController::fail(const QString& message) {
  m_error = message;
  emit errorOccurred(message);
  return false;
}

bool ChatController::canGenerate() {
  if (!m_store || !m_store->isOpen()) return fail(tr("The conversation history is not open."));
  retryUnsaved();  // an earlier answer not saved for want of space: saved first, if it can be now
  if (!m_worker || !m_hasModel) return fail(tr("No model is loaded: choose one in Settings ▸ Model."));
  if (isGenerating()) return fail(tr("An answer is still being written: stop it first."));
  return true;
}

bool ChatController::send(const QString& rawText) {
  const QString text = rawText.trimmed();
  if (text.isEmpty() && m_chips.isEmpty()) return fail(tr("Type a question first."));
  if (!canGenerate()) return false;
  const int needed = estimatedPromptTokens(text) + m_params.max_tokens;
  if (estimatedPromptTokens(text) >= m_contextLength)
    return fail(tr("This question needs about %1 tokens but the context holds %2: remove a chip, lower a "
                   "resolution or start a new conversation.").arg(needed).arg(m_contextLength));

  // Page and region images are rendered off the GUI thread (Poppler at the model's size); the question is
  // committed once they are ready. The chips leave the row now and come back if anything fails.
  const QList<ContextChip> chips = m_chips;
  const int maxImageSize = m_maxImageSize;
  auto prepare = [chips, maxImageSize]() { return prepareAttachments(chips, maxImageSize); };
  bool slow = false;
  for (const ContextChip& c : chips) slow = slow || c.kind != AttachmentKind::Image;
  if (!slow) {
    Prepared p = prepare();
    if (!p.error.isEmpty()) return fail(p.error);
    return commitQuestion(text, p.attachments);
  }
  m_preparing = true;
  m_cancelPrepare = false;
  clearChips();
  emit generatingChanged(true);
  auto* watcher = new QFutureWatcher<Prepared>(this);
  connect(watcher, &QFutureWatcher<Prepared>::finished, this, [this, watcher, chips, text] {
    watcher->deleteLater();
    m_preparing = false;
    const Prepared p = watcher->result();
    const bool ok = !m_cancelPrepare && p.error.isEmpty() && commitQuestion(text, p.attachments);
    if (ok) return;
    m_chips = chips;  // nothing is lost: the chips come back for another try
    emit chipsChanged();
    emit generatingChanged(false);
    if (!p.error.isEmpty()) fail(p.error);
  });
  watcher->setFuture(QtConcurrent::run(prepare));
  return true;
}

bool ChatController::commitQuestion(const QString& text, const QList<Attachment>& attachments) {
  if (!m_conversationId) {
    QString title = text.isEmpty() ? tr("Question about %n image(s)", nullptr, int(attachments.size())) : text;
    title = title.simplified();
    if (title.size() > 60) title = title.left(57) + QStringLiteral("…");
    const auto id = m_store->createConversation(title, m_systemPrompt, samplingJson(m_params), m_modelInfo.path);
    if (!id) return fail(m_store->lastError().message());
    m_conversationId = *id;
    emit conversationChanged(m_conversationId);
    emit conversationsChanged();
  }
  const qint64 parent = m_path.isEmpty() ? 0 : m_path.last().id;
  const auto userId = m_store->addUserMessage(m_conversationId, parent, text, attachments);
  if (!userId) return fail(m_store->lastError().message());
  clearChips();
  if (auto m = m_store->message(*userId)) m_path << *m;
  emit messageAppended(int(m_path.size()) - 1);
  emit conversationsChanged();
  return startAnswer(*userId);
}

bool ChatController::startAnswer(qint64 parentId) {
  const QString model = QFileInfo(m_modelInfo.path).fileName();
  const auto answerId = m_store->beginAssistantMessage(m_conversationId, parentId, model, samplingJson(m_params));
  if (!answerId) return fail(m_store->lastError().message());
  GenerationRequest r;
  r.conversationId = m_conversationId;
  r.messages = inferenceMessages();
  r.params = m_params;
  r.contextLength = m_contextLength;
  m_answerId = *answerId;
  m_saveFailed = false;
  if (auto m = m_store->message(*answerId)) m_path << *m;
  emit messageAppended(int(m_path.size()) - 1);
  m_ttftMs = -1;
  m_tokensPerSecond = 0;
  emit statsChanged(m_ttftMs, m_tokensPerSecond);
  m_sinceSend.start();
  m_requestId = m_worker->generate(std::move(r));
  emit generatingChanged(true);
  return true;
}

QList<QImage> ChatController::imagesOf(const Message& m) const {
  QList<QImage> out;
  for (const Attachment& a : m.attachments) {
    QImage img;
    if (!a.imageData.isEmpty()) img.loadFromData(a.imageData);
    out << img;  // a null image fails the generation with a message rather than being dropped silently
  }
  return out;
}

QList<InferenceMessage> ChatController::inferenceMessages() const {
  QList<InferenceMessage> out;
  if (m_store) {
    if (auto conv = m_store->conversation(m_conversationId); conv && !conv->systemPrompt.isEmpty())
      out << InferenceMessage{pixtral::Role::system, {InferencePart::fromText(conv->systemPrompt)}, {}};
  }
  for (const Message& m : m_path) {
    InferenceMessage im;
    if (m.role == MessageRole::Assistant) {
      im.role = pixtral::Role::assistant;
      im.parts << InferencePart::fromText(m.text);
      im.tokens.assign(m.tokenIds.begin(), m.tokenIds.end());
    } else if (m.role == MessageRole::System) {
      im.role = pixtral::Role::system;
      im.parts << InferencePart::fromText(m.text);
    } else {
      im.role = pixtral::Role::user;
      for (const QImage& img : imagesOf(m)) im.parts << InferencePart::fromImage(img);
      for (const Attachment& a : m.attachments)  // text layers: after the images, before the question
        if (const QString t = attachmentTextPart(a); !t.isEmpty()) im.parts << InferencePart::fromText(t);
      if (!m.text.isEmpty()) im.parts << InferencePart::fromText(m.text);
    }
    out << im;
  }
  return out;
}

void ChatController::stop() {
  if (m_preparing) m_cancelPrepare = true;
  if (m_answerId && m_worker) m_worker->stop(m_requestId);  // this answer only (the worker may serve others)
}

bool ChatController::regenerate() {
  if (!canGenerate()) return false;
  while (!m_path.isEmpty() && m_path.last().role == MessageRole::Assistant) m_path.removeLast();
  if (m_path.isEmpty()) return fail(tr("There is no question to answer again."));
  emit messagesReset();
  return startAnswer(m_path.last().id);
}

bool ChatController::editAndResend(int row, const QString& rawText) {
  if (!canGenerate()) return false;
  if (row < 0 || row >= m_path.size() || m_path[row].role != MessageRole::User)
    return fail(tr("Only your own messages can be edited."));
  const QString text = rawText.trimmed();
  const Message original = m_path[row];
  if (text.isEmpty() && original.attachments.isEmpty()) return fail(tr("Type a question first."));
  QList<Attachment> attachments = original.attachments;
  for (Attachment& a : attachments) a.id = 0;
  const auto userId = m_store->addUserMessage(m_conversationId, original.parentId, text, attachments);
  if (!userId) return fail(m_store->lastError().message());
  m_path = m_path.mid(0, row);
  if (auto m = m_store->message(*userId)) m_path << *m;
  emit messagesReset();
  return startAnswer(*userId);
}

void ChatController::onPiece(qint64 conversationId, quint64 requestId, const QString& text, int tokenId) {
  if (!m_answerId || conversationId != m_conversationId || requestId != m_requestId || m_path.isEmpty()) return;
  if (m_ttftMs < 0) {
    m_ttftMs = double(m_sinceSend.nsecsElapsed()) / 1e6;
    emit statsChanged(m_ttftMs, m_tokensPerSecond);
  }
  Message& last = m_path.last();
  last.text += text;
  last.tokenIds.push_back(tokenId);
  const std::int32_t id = tokenId;
  if (!m_store->appendToAssistantMessage(m_answerId, text, std::span<const std::int32_t>(&id, 1)) &&
      !m_saveFailed) {
    // Said once; the store keeps the text pending and retries with each piece. The answer goes on streaming.
    m_saveFailed = true;
    fail(tr("%1 This answer is still shown here and is saved as soon as the history can be written again; "
            "your question was saved.").arg(m_store->lastError().message()));
  }
  emit messageUpdated(int(m_path.size()) - 1, text);
}

void ChatController::onFinished(qint64 conversationId, const GenerationResult& result) {
  // By request id only: an answer stopped because another conversation was opened still ends (stored as
  // stopped, and isGenerating() false again).
  Q_UNUSED(conversationId);
  if (!m_answerId || result.requestId != m_requestId) return;
  const MessageState state =
      result.finishReason == QLatin1String("cancelled") ? MessageState::Stopped : MessageState::Complete;
  finishAnswer(state, &result, {});
}

void ChatController::onFailed(qint64 conversationId, const GenerationFailure& failure) {
  Q_UNUSED(conversationId);
  if (!m_answerId || failure.requestId != m_requestId) return;
  finishAnswer(MessageState::Error, nullptr, failure.message);
  fail(failure.message);
}

void ChatController::finishAnswer(MessageState state, const GenerationResult* result, const QString& error) {
  const qint64 id = m_answerId;
  m_answerId = 0;
  QJsonObject timings;
  if (result) {
    const pixtral::Timings& t = result->timings;
    m_tokensPerSecond = result->tokensPerSecond();
    if (t.ttft_ms > 0) m_ttftMs = t.ttft_ms;
    timings = {{QStringLiteral("ttft_ms"), t.ttft_ms},
               {QStringLiteral("prefill_ms"), t.prefill_ms},
               {QStringLiteral("vision_ms"), t.vision_ms},
               {QStringLiteral("tokens_per_s"), m_tokensPerSecond},
               {QStringLiteral("prompt_tokens"), t.prompt_tokens},
               {QStringLiteral("reused_tokens"), t.reused_tokens},
               {QStringLiteral("generated_tokens"), t.generated_tokens},
               {QStringLiteral("finish_reason"), result->finishReason}};
  } else {
    timings = {{QStringLiteral("error"), error}};
  }
  // The exact record of the answer, the final </s> included (what the engine's KV cache holds).
  UnsavedAnswer answer{id, state, timings, {}, false};
  if (result) answer.tokenIds.assign(result->tokens.begin(), result->tokens.end());
  const bool saved = saveAnswer(answer);
  if (!saved) {
    m_unsaved << answer;
    fail(tr("%1 The answer is still shown here and is saved as soon as the history can be written again; "
            "your question and what was saved before are kept.").arg(m_store->lastError().message()));
  }
  for (int row = 0; row < m_path.size(); ++row) {
    if (m_path[row].id != id) continue;
    std::optional<Message> stored;
    if (saved) stored = m_store->message(id);
    if (stored) {
      m_path[row] = *stored;
    } else {  // not saved: the store has only part of it; the screen keeps what streamed
      m_path[row].state = state;
      if (!answer.tokenIds.empty()) m_path[row].tokenIds = answer.tokenIds;
    }
    emit messageUpdated(row, {});
  }
  emit statsChanged(m_ttftMs, m_tokensPerSecond);
  emit generatingChanged(false);
  emit conversationsChanged();
}

bool ChatController::saveAnswer(UnsavedAnswer& a) {
  if (!a.finished && !m_store->finishAssistantMessage(a.id, a.state, a.timings)) return false;
  a.finished = true;
  return a.tokenIds.empty() || m_store->setTokenIds(a.id, a.tokenIds);
}

bool ChatController::retryUnsaved() {
  for (auto it = m_unsaved.begin(); it != m_unsaved.end();) {
    if (!saveAnswer(*it)) return false;  // still no space: the next try comes later
    it = m_unsaved.erase(it);
  }
  return true;
}

}  // namespace quire
