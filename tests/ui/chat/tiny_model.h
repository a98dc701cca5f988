// SPDX-License-Identifier: GPL-3.0-or-later
// Test helpers shared by the chat tests that generate with the tiny fixture model on the real worker thread:
// loading it (CPU, two threads) and the greedy generation settings they use.
#pragma once

#include "chat/chat_controller.h"
#include "inference/inference_thread.h"
#include "inference/inference_worker.h"

#include <QObject>
#include <QString>
#include <QtTest>

namespace quire::test {

/// Loads the model in @p modelDir (the fixture's native layout) on the CPU in @p thread's worker and waits up to
/// @p timeoutMs. Returns the failure message, empty when it loaded (then @p info holds what the worker reported).
inline QString loadModelOnWorker(InferenceThread& thread, const QString& modelDir, ModelLoadInfo* info,
                                 int timeoutMs) {
  QObject context;  // the connections end with this call
  bool loaded = false;
  QString failure;
  QObject::connect(thread.worker(), &InferenceWorker::modelLoaded, &context, [&](const ModelLoadInfo& i) {
    *info = i;
    loaded = true;
  });
  QObject::connect(thread.worker(), &InferenceWorker::modelLoadFailed, &context,
                   [&](const QString& m) { failure = m; });
  thread.worker()->loadModel(modelDir, {pixtral::Device::cpu, 2});
  if (!QTest::qWaitFor([&] { return loaded || !failure.isEmpty(); }, timeoutMs))
    return QStringLiteral("the model did not load within %1 ms").arg(timeoutMs);
  return loaded ? QString() : failure;
}

/// Greedy answers of at most @p maxTokens tokens in a 4096-token context, with the loaded model's info (the tiny
/// model's patch size comes with it).
inline void configureGreedy(ChatController& c, const ModelLoadInfo& info, int maxTokens) {
  c.setModelInfo(info);
  pixtral::GenerateParams p;
  p.temperature = 0;
  p.max_tokens = maxTokens;
  c.setGenerateParams(p);
  c.setContextLength(4096);
}

}  // namespace quire::test
