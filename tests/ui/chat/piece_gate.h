// SPDX-License-Identifier: GPL-3.0-or-later
// Test helpers for streamed answers: PieceGate parks the inference worker's thread inside chosen pieces (a direct
// connection to pieceArrived) until the GUI thread has acted, so a step happens while the generation is certainly
// running; rendered() is a message's Markdown as the chat panel shows it (plain text).
#pragma once

#include "inference/inference_worker.h"

#include <QObject>
#include <QSemaphore>
#include <QTextDocument>

#include <atomic>
#include <set>

namespace quire::test {

// Parks the worker thread inside its pieces numbered in @p at (1-based) until release() is called once for each.
class PieceGate {
 public:
  PieceGate(InferenceWorker* worker, std::set<int> at) : m_at(std::move(at)) {
    m_conn = QObject::connect(worker, &InferenceWorker::pieceArrived, worker,
                              [this](qint64, quint64, const QString&, int) {
                                const int n = ++m_emitted;
                                if (m_at.count(n)) {
                                  m_reached.release();
                                  m_go.acquire();
                                }
                              }, Qt::DirectConnection);
  }
  ~PieceGate() {
    QObject::disconnect(m_conn);
    m_go.release(100);  // never leave the worker parked
  }
  /// Waits (blocking this thread) until the worker is parked in the next gated piece.
  bool reached(int timeoutMs = 120000) { return m_reached.tryAcquire(1, timeoutMs); }
  void release() { m_go.release(); }
  /// The pieces the worker has emitted so far.
  int emitted() const { return m_emitted.load(); }

 private:
  std::set<int> m_at;
  std::atomic<int> m_emitted{0};
  QSemaphore m_reached, m_go;
  QMetaObject::Connection m_conn;
};

inline QString rendered(const QString& markdown) {
  QTextDocument d;
  d.setMarkdown(markdown);
  return d.toPlainText();
}

}  // namespace quire::test
