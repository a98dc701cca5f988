// SPDX-License-Identifier: GPL-3.0-or-later
// InferenceThread: owns the worker QThread and the InferenceWorker living on it. Construct on the GUI (or CLI)
// thread; the destructor stops any generation, cancels any load, and joins the thread (the worker, its sessions
// and its model are destroyed on the worker thread, where they were used).
#pragma once

#include "inference/inference_worker.h"

#include <QThread>

namespace quire {

class InferenceThread {
 public:
  InferenceThread();
  ~InferenceThread();
  InferenceThread(const InferenceThread&) = delete;
  InferenceThread& operator=(const InferenceThread&) = delete;

  /// The worker; connect to its signals, call its any-thread methods. Never call its worker-thread-only methods.
  InferenceWorker* worker() const { return m_worker; }
  QThread* thread() { return &m_thread; }

 private:
  QThread m_thread;
  InferenceWorker* m_worker = nullptr;  ///< deleted on m_thread via deleteLater
};

}  // namespace quire
