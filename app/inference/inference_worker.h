// SPDX-License-Identifier: GPL-3.0-or-later
// InferenceWorker: the one pixtral::Model and one pixtral::Session per conversation, on a worker QThread
// (InferenceThread moves it there). The GUI never waits on it:
//  - loadModel(), generate(), closeConversation(), requestEstimate() may be called from any thread; they only
//    queue the work (Qt::QueuedConnection) and return at once. Results come back as signals, which reach
//    receivers on other threads queued as well.
//  - stop() and cancelLoad() are thread-safe and act immediately (atomic flags + Session::request_stop, not
//    through the queue): a generation ends within one token (one prefill chunk while prefilling), a load at
//    the next progress step.
//  - Nothing throws out of a slot: engine errors and std::exceptions become *Failed signals with messages.
// The sessions of the most recently used conversations stay alive (maxWarmSessions(), default 2), so a follow-up
// question about the same page reuses the KV cache and the image features instead of re-encoding them.
// ref: nomic-ai/gpt4all gpt4all-chat/src/chatllm.cpp (model on a worker thread, atomic stop flag)
#pragma once

#include "inference/inference_types.h"
#include "inference/model_folder.h"
#include "inference/time_estimate.h"

#include <QObject>
#include <QSize>

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <set>

namespace quire {

class InferenceWorker : public QObject {
  Q_OBJECT

 public:
  explicit InferenceWorker(QObject* parent = nullptr);
  ~InferenceWorker() override;

  // Any thread: queue work ------------------------------------------------------------------------------------
  /// Loads the model in @p dir (replacing the loaded one). Progress, then modelLoaded or modelLoadFailed.
  /// Without options: the choices saved in Settings ▸ Model (savedModelLoadOptions(), e.g. the precision).
  void loadModel(const QString& dir, const ModelLoadOptions& options = savedModelLoadOptions());
  /// Queues @p request; returns its id, which every signal about it carries (pieceArrived, GenerationResult,
  /// GenerationFailure), so several hosts can share the worker and each follow only its own requests. Pieces
  /// stream as pieceArrived, then generationFinished or generationFailed. Requests run one at a time, in order.
  quint64 generate(GenerationRequest request);
  /// Forgets a conversation's session (deleted conversation).
  void closeConversation(qint64 conversationId);
  /// Estimates the time of a question with these images (their sizes) and @p textTokens of text; the answer
  /// comes as estimateReady(tag, ...). Valid only once a model is loaded (else estimate.valid is false).
  void requestEstimate(quint64 tag, const QList<QSize>& imageSizes, int textTokens, int answerTokens = 200);

  // Any thread: act now ---------------------------------------------------------------------------------------
  /// Stops the running generation and cancels every one queued before this call. Thread-safe, immediate.
  void stop();
  /// Stops request @p requestId only: at once when it runs (within one token or prefill chunk), when it comes up
  /// when still queued (it finishes "cancelled" without running); others are untouched. Thread-safe.
  void stop(quint64 requestId);
  /// Cancels a load in progress or queued: it ends with modelLoadCancelled (at the next progress step).
  void cancelLoad();

  // Worker thread (or tests that drive it synchronously) -------------------------------------------------------
  /// True while a model is loaded. Worker thread only.
  bool hasModel() const { return m_model != nullptr; }
  /// Sessions kept alive (LRU). Worker thread only.
  void setMaxWarmSessions(int n) { m_maxSessions = n < 1 ? 1 : n; }
  int maxWarmSessions() const { return m_maxSessions; }
  /// Token ids cached in @p conversationId's session (empty when it has none). Worker thread only.
  std::vector<int> cachedTokens(qint64 conversationId) const;
  /// The estimate computed synchronously. Worker thread only.
  TimeEstimate estimate(const QList<QSize>& imageSizes, int textTokens, int answerTokens) const;

 Q_SIGNALS:
  void modelLoadProgress(double fraction, const QString& stage);
  void modelLoaded(const quire::ModelLoadInfo& info);
  void modelLoadFailed(const QString& message);
  void modelLoadCancelled();
  /// A piece of the answer: complete UTF-8 text (may be empty while a character is incomplete) and its token.
  void pieceArrived(qint64 conversationId, quint64 requestId, const QString& text, int tokenId);
  void generationFinished(qint64 conversationId, const quire::GenerationResult& result);
  /// The request failed: failure.code says why (context_overflow: the prompt does not fit the context).
  void generationFailed(qint64 conversationId, const quire::GenerationFailure& failure);
  void estimateReady(quint64 tag, const quire::TimeEstimate& estimate);

 private Q_SLOTS:
  void doLoad(quint64 loadId, const QString& dir, const quire::ModelLoadOptions& options);
  void doGenerate(const quire::GenerationRequest& request);
  void doClose(qint64 conversationId);
  void doEstimate(quint64 tag, const QList<QSize>& imageSizes, int textTokens, int answerTokens);

 private:
  struct ConversationSession {
    qint64 conversationId = 0;
    int contextLength = 0;
    std::unique_ptr<pixtral::Session> session;
  };

  void loadImpl(quint64 loadId, const QString& dir, const ModelLoadOptions& options);
  void generateImpl(const GenerationRequest& request);
  pixtral::Result<pixtral::Session*> sessionFor(qint64 conversationId, int contextLength);
  bool stopRequested(quint64 requestId) const;
  void forgetStop(quint64 requestId);
  void fail(const GenerationRequest& request, pixtral::ErrorCode code, const QString& message);
  void unloadModel();

  std::shared_ptr<pixtral::Model> m_model;
  std::list<ConversationSession> m_sessions;  ///< most recently used first
  int m_maxSessions = 2;
  Throughput m_rate;

  std::atomic<quint64> m_nextRequest{0};  ///< last id handed out by generate()
  std::atomic<quint64> m_stopUpTo{0};     ///< requests with id ≤ this are stopped
  std::atomic<quint64> m_nextLoad{0};
  std::atomic<quint64> m_cancelLoadUpTo{0};
  mutable std::mutex m_runningMutex;     ///< guards m_running, m_runningId and m_stopped against stop()
  pixtral::Session* m_running = nullptr;  ///< the session inside generate(), if any
  quint64 m_runningId = 0;                ///< its request
  std::set<quint64> m_stopped;            ///< requests stopped one by one (stop(id)) that have not ended yet
};

}  // namespace quire
