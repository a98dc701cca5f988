// SPDX-License-Identifier: GPL-3.0-or-later
// InferenceWorker (see inference_worker.h).
#include "inference/inference_worker.h"

#include "inference/engine_image.h"
#include "inference/model_folder.h"

#include <QElapsedTimer>
#include <QFileInfo>
#include <QMetaObject>

#include <algorithm>
#include <exception>
#include <new>

namespace quire {

namespace {

QString qs(const std::string& s) { return QString::fromStdString(s); }

ModelLoadInfo infoOf(const pixtral::ModelInfo& m) {
  ModelLoadInfo i;
  i.path = qs(m.path);
  i.layout = qs(m.layout);
  i.backend = qs(m.backend);
  i.device = qs(m.device_name);
  i.precision = qs(m.precision);
  i.weightDtype = qs(m.weight_dtype);
  i.fallbackReason = qs(m.fallback_reason);
  i.memoryPlan = qs(m.plan.summary());
  i.weightBytes = m.weight_bytes;
  i.loadedWeightBytes = m.plan.weight_bytes;
  i.parameters = m.parameters;
  i.modelMaxContext = m.max_context;
  // Where memory is short (the plan measured the GPU at load), the longest context that fits.
  i.maxContext = m.plan.max_context > 0 ? std::min(m.max_context, m.plan.max_context) : m.max_context;
  i.maxImageSize = m.max_image_size;
  i.patchSize = m.patch_size;
  i.kvBytesPerToken = m.plan.kv_bytes_per_token;
  return i;
}

// Engine messages from app messages; images converted here, on the worker thread.
pixtral::Result<std::vector<pixtral::Message>> toEngineMessages(const QList<InferenceMessage>& in) {
  std::vector<pixtral::Message> out;
  out.reserve(std::size_t(in.size()));
  int imageNo = 0;
  for (const InferenceMessage& m : in) {
    pixtral::Message e;
    e.role = m.role;
    e.tokens = m.tokens;
    for (const InferencePart& p : m.parts) {
      if (p.kind == InferencePart::Kind::Text) {
        e.parts.push_back(pixtral::ContentPart::from_text(p.text.toStdString()));
        continue;
      }
      ++imageNo;
      auto img = std::make_shared<pixtral::Image>();
      QString why;
      if (!toEngineImage(p.image, img.get(), &why))
        return pixtral::Status(pixtral::ErrorCode::invalid_argument,
                               QObject::tr("image %1: %2").arg(imageNo).arg(why).toStdString());
      e.parts.push_back(pixtral::ContentPart::from_image(std::move(img)));
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

InferenceWorker::InferenceWorker(QObject* parent) : QObject(parent) { registerInferenceTypes(); }

InferenceWorker::~InferenceWorker() { unloadModel(); }

void InferenceWorker::loadModel(const QString& dir, const ModelLoadOptions& options) {
  const quint64 id = ++m_nextLoad;
  QMetaObject::invokeMethod(this, "doLoad", Qt::QueuedConnection, Q_ARG(quint64, id), Q_ARG(QString, dir),
                            Q_ARG(quire::ModelLoadOptions, options));
}

quint64 InferenceWorker::generate(GenerationRequest request) {
  request.id = ++m_nextRequest;
  const quint64 id = request.id;
  QMetaObject::invokeMethod(this, "doGenerate", Qt::QueuedConnection, Q_ARG(quire::GenerationRequest, request));
  return id;
}

void InferenceWorker::closeConversation(qint64 conversationId) {
  QMetaObject::invokeMethod(this, "doClose", Qt::QueuedConnection, Q_ARG(qint64, conversationId));
}

void InferenceWorker::requestEstimate(quint64 tag, const QList<QSize>& imageSizes, int textTokens,
                                      int answerTokens) {
  QMetaObject::invokeMethod(this, "doEstimate", Qt::QueuedConnection, Q_ARG(quint64, tag),
                            Q_ARG(QList<QSize>, imageSizes), Q_ARG(int, textTokens), Q_ARG(int, answerTokens));
}

void InferenceWorker::stop() {
  m_stopUpTo.store(m_nextRequest.load());
  std::lock_guard lock(m_runningMutex);
  if (m_running) m_running->request_stop();
}

void InferenceWorker::stop(quint64 requestId) {
  if (requestId == 0 || requestId > m_nextRequest.load()) return;
  std::lock_guard lock(m_runningMutex);
  m_stopped.insert(requestId);
  if (m_running && m_runningId == requestId) m_running->request_stop();
}

bool InferenceWorker::stopRequested(quint64 requestId) const {
  if (requestId <= m_stopUpTo.load()) return true;
  std::lock_guard lock(m_runningMutex);
  return m_stopped.count(requestId) != 0;
}

void InferenceWorker::forgetStop(quint64 requestId) {
  std::lock_guard lock(m_runningMutex);
  m_stopped.erase(requestId);
}

void InferenceWorker::fail(const GenerationRequest& request, pixtral::ErrorCode code, const QString& message) {
  Q_EMIT generationFailed(request.conversationId, GenerationFailure{request.id, code, message});
}

void InferenceWorker::cancelLoad() { m_cancelLoadUpTo.store(m_nextLoad.load()); }

void InferenceWorker::unloadModel() {
  m_sessions.clear();  // sessions before the model they came from
  m_model.reset();
}

// Slots ----------------------------------------------------------------------------------------------------------

void InferenceWorker::doLoad(quint64 loadId, const QString& dir, const ModelLoadOptions& options) {
  try {
    loadImpl(loadId, dir, options);
  } catch (const std::bad_alloc&) {
    unloadModel();
    Q_EMIT modelLoadFailed(tr("Not enough memory to load the model: close other programs, or use a GPU."));
  } catch (const std::exception& e) {
    unloadModel();
    Q_EMIT modelLoadFailed(tr("Loading the model failed: %1").arg(QString::fromUtf8(e.what())));
  } catch (...) {
    unloadModel();
    Q_EMIT modelLoadFailed(tr("Loading the model failed (unknown error)."));
  }
}

void InferenceWorker::loadImpl(quint64 loadId, const QString& dir, const ModelLoadOptions& options) {
  unloadModel();  // one model at a time: free the old one before mapping the new one
  if (loadId <= m_cancelLoadUpTo.load()) {
    Q_EMIT modelLoadCancelled();
    return;
  }
  const ModelFolderCheck check = checkModelFolder(dir);
  if (!check.ok) {
    Q_EMIT modelLoadFailed(check.message);
    return;
  }
  pixtral::LoadOptions lo;
  lo.device = options.device;
  lo.threads = options.threads;
  lo.precision = options.precision;
  lo.on_progress = [this, loadId](double fraction, std::string_view stage) {
    Q_EMIT modelLoadProgress(fraction, QString::fromUtf8(stage.data(), qsizetype(stage.size())));
    return loadId > m_cancelLoadUpTo.load();
  };
  QElapsedTimer timer;
  timer.start();
  auto model = pixtral::Model::load(QFileInfo(dir).absoluteFilePath().toStdString(), lo);
  if (!model.ok()) {
    if (model.status().code() == pixtral::ErrorCode::cancelled || loadId <= m_cancelLoadUpTo.load())
      Q_EMIT modelLoadCancelled();
    else
      Q_EMIT modelLoadFailed(qs(model.status().message()));
    return;
  }
  m_model = std::move(model.value());
  ModelLoadInfo info = infoOf(m_model->info());
  info.loadSeconds = timer.elapsed() / 1000.0;
  m_rate = info.onCpu() ? probeThroughput(options.threads) : Throughput{};
  Q_EMIT modelLoaded(info);
}

void InferenceWorker::doGenerate(const GenerationRequest& request) {
  const auto clearRunning = [this] {
    std::lock_guard lock(m_runningMutex);
    m_running = nullptr;
    m_runningId = 0;
  };
  try {
    generateImpl(request);
  } catch (const std::bad_alloc&) {
    clearRunning();
    fail(request, pixtral::ErrorCode::out_of_memory, tr("Out of memory: try a smaller image, a shorter context or a GPU."));
  } catch (const std::exception& e) {
    clearRunning();
    fail(request, pixtral::ErrorCode::internal, tr("Generation failed: %1").arg(QString::fromUtf8(e.what())));
  } catch (...) {
    clearRunning();
    fail(request, pixtral::ErrorCode::internal, tr("Generation failed (unknown error)."));
  }
  forgetStop(request.id);
}

void InferenceWorker::generateImpl(const GenerationRequest& request) {
  const qint64 conv = request.conversationId;
  const quint64 id = request.id;
  if (!m_model) {
    fail(request, pixtral::ErrorCode::not_found, tr("No model is loaded."));
    return;
  }
  if (request.messages.isEmpty() || request.messages.back().role != pixtral::Role::user) {
    fail(request, pixtral::ErrorCode::invalid_argument,
         tr("Nothing to answer: the conversation does not end with a question."));
    return;
  }
  auto messages = toEngineMessages(request.messages);
  if (!messages.ok()) {
    fail(request, messages.status().code(), qs(messages.status().message()));
    return;
  }
  const auto cancelled = [&] {
    GenerationResult r;
    r.requestId = id;
    r.finishReason = QString::fromLatin1(pixtral::finish_reason_name(pixtral::FinishReason::cancelled));
    Q_EMIT generationFinished(conv, r);
  };
  if (stopRequested(id)) return cancelled();  // stopped while still queued
  auto session = sessionFor(conv, request.contextLength);
  if (!session.ok()) {
    fail(request, session.status().code(), qs(session.status().message()));
    return;
  }
  {
    std::lock_guard lock(m_runningMutex);
    m_running = *session;
    m_runningId = id;
  }
  auto onPiece = [this, conv, id](std::string_view piece, int token) {
    Q_EMIT pieceArrived(conv, id, QString::fromUtf8(piece.data(), qsizetype(piece.size())), token);
    return !stopRequested(id);
  };
  auto gen = (*session)->generate(*messages, request.params, onPiece);
  {
    std::lock_guard lock(m_runningMutex);
    m_running = nullptr;
    m_runningId = 0;
  }
  if (!gen.ok()) {
    if (gen.status().code() == pixtral::ErrorCode::cancelled) return cancelled();  // stopped during prefill
    fail(request, gen.status().code(), qs(gen.status().message()));
    return;
  }
  GenerationResult r;
  r.requestId = id;
  r.promptTokens = std::move(gen->prompt_tokens);
  r.tokens = std::move(gen->tokens);
  r.text = QString::fromStdString(gen->text);
  r.finishReason = QString::fromLatin1(pixtral::finish_reason_name(gen->finish));
  r.timings = gen->timings;
  if (m_model->info().backend == "cpu") {
    const int img = m_model->tokenizer().special().img;
    const int imagePatches = int(std::count(r.promptTokens.begin(), r.promptTokens.end(), img));
    calibrate(&m_rate, questionCost(m_model->info(), r.timings.prompt_tokens, imagePatches), r.timings);
  }
  Q_EMIT generationFinished(conv, r);
}

pixtral::Result<pixtral::Session*> InferenceWorker::sessionFor(qint64 conversationId, int contextLength) {
  for (auto it = m_sessions.begin(); it != m_sessions.end(); ++it) {
    if (it->conversationId != conversationId) continue;
    if (it->contextLength == contextLength) {
      m_sessions.splice(m_sessions.begin(), m_sessions, it);  // most recently used first
      return m_sessions.front().session.get();
    }
    m_sessions.erase(it);  // a different context length: a new KV cache
    break;
  }
  // Free the least recently used sessions first, so their KV caches are gone before the new one is allocated.
  while (int(m_sessions.size()) >= m_maxSessions) m_sessions.pop_back();
  pixtral::SessionOptions so;
  so.context_length = contextLength;
  auto s = m_model->create_session(so);
  // Not enough memory for another KV cache (the engine refuses before allocating): give the older conversations'
  // caches back and try once more; they are rebuilt from their messages when asked again.
  if (!s.ok() && s.status().code() == pixtral::ErrorCode::out_of_memory && !m_sessions.empty()) {
    m_sessions.clear();
    s = m_model->create_session(so);
  }
  if (!s.ok()) return s.status();
  m_sessions.push_front({conversationId, contextLength, std::move(s.value())});
  return m_sessions.front().session.get();
}

void InferenceWorker::doClose(qint64 conversationId) {
  m_sessions.remove_if([conversationId](const ConversationSession& s) { return s.conversationId == conversationId; });
}

std::vector<int> InferenceWorker::cachedTokens(qint64 conversationId) const {
  for (const auto& s : m_sessions)
    if (s.conversationId == conversationId) return s.session->cached_tokens();
  return {};
}

TimeEstimate InferenceWorker::estimate(const QList<QSize>& imageSizes, int textTokens, int answerTokens) const {
  if (!m_model) return {};
  int imageTokens = 0, imagePatches = 0;
  for (const QSize& s : imageSizes) {
    const int t = m_model->image_token_count(s.width(), s.height());
    imageTokens += t;
    imagePatches += t;  // (Wp + 1)·Hp ≈ Wp·Hp: the row breaks are within a few % of the patches
  }
  const int promptTokens = textTokens + imageTokens + 4;  // <s> [INST] … [/INST]
  return estimateTime(questionCost(m_model->info(), promptTokens, imagePatches), m_rate, answerTokens);
}

void InferenceWorker::doEstimate(quint64 tag, const QList<QSize>& imageSizes, int textTokens, int answerTokens) {
  Q_EMIT estimateReady(tag, m_rate.flopsPerSecond > 0 ? estimate(imageSizes, textTokens, answerTokens) : TimeEstimate{});
}

// Meta types -------------------------------------------------------------------------------------------------------

void registerInferenceTypes() {
  static const bool once = [] {
    qRegisterMetaType<quire::ModelLoadOptions>();
    qRegisterMetaType<quire::ModelLoadInfo>();
    qRegisterMetaType<quire::GenerationRequest>();
    qRegisterMetaType<quire::GenerationResult>();
    qRegisterMetaType<quire::GenerationFailure>();
    qRegisterMetaType<quire::TimeEstimate>();
    qRegisterMetaType<QList<QSize>>();
    return true;
  }();
  (void)once;
}

}  // namespace quire
