// SPDX-License-Identifier: GPL-3.0-or-later
// InferenceThread (see inference_thread.h).
#include "inference/inference_thread.h"

namespace quire {

InferenceThread::InferenceThread() {
  m_thread.setObjectName(QStringLiteral("quire-inference"));
  m_worker = new InferenceWorker;
  m_worker->moveToThread(&m_thread);
  QObject::connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
  m_thread.start();
}

InferenceThread::~InferenceThread() {
  m_worker->stop();
  m_worker->cancelLoad();
  m_thread.quit();  // queued work still pending is dropped by quit only after the current slot returns
  m_thread.wait();
}

}  // namespace quire
