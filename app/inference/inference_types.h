// SPDX-License-Identifier: GPL-3.0-or-later
// Plain data that crosses between the GUI thread and the InferenceWorker through queued signals: what was
// loaded, what to generate, what came out, how long a question will take. Value types only (copied by the
// queued connection); images travel as QImage (implicitly shared, read-only) and become engine images on the
// worker thread. All types are registered with Qt's meta-type system by registerInferenceTypes().
#pragma once

#include <pixtral/model.h>
#include <pixtral/session.h>

#include <QImage>
#include <QList>
#include <QMetaType>
#include <QString>

#include <cstdint>
#include <vector>

namespace quire {

/// How to load a model (Settings ▸ Model, `quire ask --device --precision`).
struct ModelLoadOptions {
  pixtral::Device device = pixtral::Device::automatic;
  int threads = 0;  ///< CPU threads; 0 = all
  /// Decoder weight storage; automatic: the engine's memory planner picks bf16/int8/int4 for the GPU's memory.
  pixtral::Precision precision = pixtral::Precision::automatic;
};

/// What the UI shows about the loaded model: device, precision, memory, context.
struct ModelLoadInfo {
  QString path;
  QString layout;          ///< "mistral" or "hf"
  QString backend;         ///< "cpu" or "cuda"
  QString device;          ///< "CPU (16 threads)", "NVIDIA H100 80GB HBM3"
  QString precision;       ///< decoder weights as loaded: "bf16", "int8", "int4" (the planner's choice for auto)
  QString weightDtype;     ///< the checkpoint's dtype: "bf16", "f16", "f32"
  QString fallbackReason;  ///< why automatic chose the CPU, when it did
  QString memoryPlan;      ///< the engine's memory plan in one line (MemoryPlan::summary)
  quint64 weightBytes = 0;      ///< the checkpoint's tensors as stored
  quint64 loadedWeightBytes = 0;  ///< the weights as loaded (quantized where the precision says so)
  quint64 parameters = 0;
  int maxContext = 0;       ///< longest context usable: the model's maximum, or less where memory is short (tokens)
  int modelMaxContext = 0;  ///< longest context the model supports (tokens)
  int maxImageSize = 0;     ///< longest image side the model takes (pixels; 1024 for Pixtral-12B)
  int patchSize = 0;        ///< vision patch side in pixels (16 for Pixtral-12B): an image costs (W/p + 1)·(H/p) tokens
  quint64 kvBytesPerToken = 0;  ///< KV-cache memory per token of context (every layer's K and V)
  double loadSeconds = 0;
  bool onCpu() const { return backend == QLatin1String("cpu"); }
  /// KV-cache memory of a conversation with a context of @p tokens.
  quint64 kvCacheBytes(int tokens) const { return kvBytesPerToken * quint64(tokens > 0 ? tokens : 0); }
};

/// One chunk of a message: text, or an image (a rendered page or region, a picture).
struct InferencePart {
  enum class Kind { Text, Image };
  Kind kind = Kind::Text;
  QString text;
  QImage image;

  static InferencePart fromText(const QString& t) { return {Kind::Text, t, {}}; }
  static InferencePart fromImage(const QImage& i) { return {Kind::Image, {}, i}; }
};

/// One turn of a conversation. Assistant turns carry the exact ids the model generated (never re-tokenized).
struct InferenceMessage {
  pixtral::Role role = pixtral::Role::user;
  QList<InferencePart> parts;
  std::vector<int> tokens;
};

/// A request to answer the last (user) turn of @p messages in conversation @p conversationId.
struct GenerationRequest {
  qint64 conversationId = 0;
  QList<InferenceMessage> messages;
  pixtral::GenerateParams params;
  int contextLength = 16384;  ///< the conversation's KV cache size (tokens)
  quint64 id = 0;             ///< assigned by InferenceWorker::generate()
};

/// The outcome of a generation (also for a cancelled one: the tokens produced before Stop).
struct GenerationResult {
  quint64 requestId = 0;
  std::vector<int> promptTokens;
  std::vector<int> tokens;  ///< generated ids, including the final </s> when it stopped there
  QString text;
  QString finishReason;     ///< "stop", "length" or "cancelled"
  pixtral::Timings timings;
  double tokensPerSecond() const {
    return timings.decode_ms_per_token > 0 ? 1000.0 / timings.decode_ms_per_token : 0.0;
  }
};

/// Why a generation failed: the engine's error code (context_overflow: the prompt is longer than the context;
/// out_of_memory; invalid_argument: a bad image or request; not_found: no model loaded; internal: an exception)
/// and the message for the user.
struct GenerationFailure {
  quint64 requestId = 0;
  pixtral::ErrorCode code = pixtral::ErrorCode::internal;
  QString message;
  bool contextOverflow() const { return code == pixtral::ErrorCode::context_overflow; }
};

/// How long a question is expected to take on this machine (shown before starting on the CPU).
struct TimeEstimate {
  bool valid = false;
  double secondsToFirstToken = 0;  ///< vision encoder + prefill
  double secondsPerToken = 0;      ///< decode
  int answerTokens = 0;            ///< the answer length assumed for secondsTotal
  double secondsTotal = 0;
  int promptTokens = 0;
  QString text;  ///< "about 40 s"
};

/// Registers the types above for queued connections. Idempotent; called by InferenceWorker's constructor.
void registerInferenceTypes();

}  // namespace quire

Q_DECLARE_METATYPE(quire::ModelLoadOptions)
Q_DECLARE_METATYPE(quire::ModelLoadInfo)
Q_DECLARE_METATYPE(quire::GenerationRequest)
Q_DECLARE_METATYPE(quire::GenerationResult)
Q_DECLARE_METATYPE(quire::GenerationFailure)
Q_DECLARE_METATYPE(quire::TimeEstimate)
