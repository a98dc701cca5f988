// SPDX-License-Identifier: GPL-3.0-or-later
// InferenceWorker on its thread with the tiny fixture models: tokens stream in order and equal the reference
// greedy tokens; Stop ends a generation within one token; the conversation's KV cache stays warm; load errors,
// cancelled loads and bad images arrive as signals with messages; the precision saved in Settings ▸ Model
// reaches the engine and comes back in ModelLoadInfo (with the memory plan, patch size and KV-cache size). Also
// the QImage → engine image conversion (alpha composited by the engine, Pillow's rule), the model folder check
// and the CPU time estimate.
#include "fixture_case.h"
#include "inference/engine_image.h"
#include "inference/inference_thread.h"
#include "inference/model_folder.h"
#include "inference/time_estimate.h"
#include "tiny_model.h"
#include "vision/preprocess.h"

#include <QPointer>
#include <QSemaphore>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <atomic>
#include <cmath>
#include <map>
#include <memory>

using namespace quire;
using quire::test::FixtureCase;

namespace {

constexpr int kLoadTimeoutMs = 60000;
constexpr int kGenerateTimeoutMs = 120000;

// Copies every file of @p from into @p to.
bool copyFolder(const QString& from, const QString& to) {
  QDir().mkpath(to);
  for (const QString& f : QDir(from).entryList(QDir::Files))
    if (!QFile::copy(QDir(from).filePath(f), QDir(to).filePath(f))) return false;
  return true;
}

// Re-emits a worker's signals on the test thread (queued, order kept), so QSignalSpy — which records in the
// emitting thread — never touches its list from the worker thread.
class Relay : public QObject {
  Q_OBJECT

 public:
  explicit Relay(InferenceWorker* w) : source(w) {
    connect(w, &InferenceWorker::modelLoadProgress, this, &Relay::modelLoadProgress, Qt::QueuedConnection);
    connect(w, &InferenceWorker::modelLoaded, this, &Relay::modelLoaded, Qt::QueuedConnection);
    connect(w, &InferenceWorker::modelLoadFailed, this, &Relay::modelLoadFailed, Qt::QueuedConnection);
    connect(w, &InferenceWorker::modelLoadCancelled, this, &Relay::modelLoadCancelled, Qt::QueuedConnection);
    connect(w, &InferenceWorker::pieceArrived, this, &Relay::pieceArrived, Qt::QueuedConnection);
    connect(w, &InferenceWorker::generationFinished, this, &Relay::generationFinished, Qt::QueuedConnection);
    connect(w, &InferenceWorker::generationFailed, this, &Relay::generationFailed, Qt::QueuedConnection);
    connect(w, &InferenceWorker::estimateReady, this, &Relay::estimateReady, Qt::QueuedConnection);
  }
  QPointer<InferenceWorker> source;

 Q_SIGNALS:
  void modelLoadProgress(double fraction, const QString& stage);
  void modelLoaded(const quire::ModelLoadInfo& info);
  void modelLoadFailed(const QString& message);
  void modelLoadCancelled();
  void pieceArrived(qint64 conversationId, quint64 requestId, const QString& text, int tokenId);
  void generationFinished(qint64 conversationId, const quire::GenerationResult& result);
  void generationFailed(qint64 conversationId, const quire::GenerationFailure& failure);
  void estimateReady(quint64 tag, const quire::TimeEstimate& estimate);
};

std::map<InferenceWorker*, std::unique_ptr<Relay>> g_relays;

Relay* relayOf(InferenceWorker* w) {
  auto& r = g_relays[w];
  if (!r || !r->source) r = std::make_unique<Relay>(w);
  return r.get();
}

}  // namespace

class TestInferenceWorker : public QObject {
  Q_OBJECT

  std::map<QString, std::unique_ptr<InferenceThread>> m_threads;  // one loaded model per folder

  // A worker with the model in @p dir loaded (cached for the whole test run); nullptr after a failed QVERIFY.
  InferenceWorker* loaded(const QString& dir) {
    auto& t = m_threads[dir];
    if (t) return t->worker();
    t = std::make_unique<InferenceThread>();
    QSignalSpy ok(relayOf(t->worker()), &Relay::modelLoaded);
    QSignalSpy failed(relayOf(t->worker()), &Relay::modelLoadFailed);
    t->worker()->loadModel(dir);
    if (!QTest::qWaitFor([&] { return ok.count() + failed.count() > 0; }, kLoadTimeoutMs)) return nullptr;
    if (!failed.isEmpty()) qWarning() << "load failed:" << failed.first().first().toString();
    return ok.count() == 1 ? t->worker() : nullptr;
  }

  static GenerationRequest greedyRequest(qint64 conv, const QList<InferenceMessage>& msgs, int maxTokens) {
    GenerationRequest r;
    r.conversationId = conv;
    r.messages = msgs;
    r.params.temperature = 0;
    r.params.max_tokens = maxTokens;
    r.contextLength = 8192;  // e_long needs ~4.7k
    return r;
  }

 private Q_SLOTS:
  void initTestCase() {
    if (test::fixtureCases().isEmpty())
      QSKIP("tests/fixtures/models/tiny-* not found (run tests/fixtures/models/make_fixtures.py)");
  }

  // Streaming --------------------------------------------------------------------------------------------------
  void tokensArriveInOrderAndEqualTheReference_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("layout");
    QTest::addColumn<QString>("caseName");
    for (const FixtureCase& c : test::fixtureCases()) {
      for (const char* layout : {"native", "hf"}) {
        if (c.model != QLatin1String("tiny-bf16") && QLatin1String(layout) == QLatin1String("hf")) continue;
        QTest::addRow("%s/%s/%s", qPrintable(c.model), layout, qPrintable(c.name)) << c.model << QString::fromLatin1(layout) << c.name;
      }
    }
  }
  void tokensArriveInOrderAndEqualTheReference() {
    QFETCH(QString, model);
    QFETCH(QString, layout);
    QFETCH(QString, caseName);
    const FixtureCase c = test::fixtureCase(model, caseName);
    InferenceWorker* w = loaded(c.modelDir + QLatin1Char('/') + layout);
    QVERIFY(w);
    QSignalSpy pieces(relayOf(w), &Relay::pieceArrived);
    QSignalSpy finished(relayOf(w), &Relay::generationFinished);
    QSignalSpy failed(relayOf(w), &Relay::generationFailed);
    const qint64 conv = qHash(model + layout + caseName) & 0xffffff;
    const quint64 id = w->generate(greedyRequest(conv, test::caseMessages(c), c.maxTokens));
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() + failed.count() > 0, kGenerateTimeoutMs);
    QVERIFY2(failed.isEmpty(), qPrintable(failed.isEmpty() ? QString() : failed.first().at(1).value<GenerationFailure>().message));
    const auto result = finished.first().at(1).value<GenerationResult>();
    QCOMPARE(finished.first().at(0).toLongLong(), conv);
    QCOMPARE(result.requestId, id);
    QCOMPARE(result.promptTokens, c.promptTokens);
    QCOMPARE(result.tokens, c.greedyTokens);
    QCOMPARE(result.finishReason, c.finishReason);
    // The streamed ids, in arrival order, are the answer (a final </s> is not streamed as a piece).
    std::vector<int> streamed;
    QString text;
    for (const QList<QVariant>& p : pieces) {
      QCOMPARE(p.at(0).toLongLong(), conv);
      QCOMPARE(p.at(1).toULongLong(), id);  // every piece names its request
      text += p.at(2).toString();
      streamed.push_back(p.at(3).toInt());
    }
    std::vector<int> expected = c.greedyTokens;
    if (!expected.empty() && expected.back() == 2 && c.finishReason == QLatin1String("stop")) expected.pop_back();
    QCOMPARE(streamed, expected);
    QVERIFY(result.text.startsWith(text));
  }

  void followUpReusesTheWarmKvCache() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("b_image"));
    InferenceWorker* w = loaded(c.modelDir + QStringLiteral("/native"));
    QVERIFY(w);
    QSignalSpy finished(relayOf(w), &Relay::generationFinished);
    QList<InferenceMessage> msgs = test::caseMessages(c);
    w->generate(greedyRequest(4242, msgs, 8));
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kGenerateTimeoutMs);
    const auto first = finished.first().at(1).value<GenerationResult>();
    msgs << InferenceMessage{pixtral::Role::assistant, {InferencePart::fromText(first.text)}, first.tokens};
    msgs << InferenceMessage{pixtral::Role::user, {InferencePart::fromText(QStringLiteral("And the colours?"))}, {}};
    w->generate(greedyRequest(4242, msgs, 8));
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kGenerateTimeoutMs);
    const auto second = finished.at(1).at(1).value<GenerationResult>();
    QCOMPARE(second.timings.vision_ms, 0.0);  // the image's features were cached
    QVERIFY2(second.timings.reused_tokens >= int(first.promptTokens.size()),
             qPrintable(QStringLiteral("reused %1 of %2").arg(second.timings.reused_tokens).arg(first.promptTokens.size())));
  }

  // Stop ---------------------------------------------------------------------------------------------------------
  void stopEndsTheGenerationWithinOneToken() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    InferenceWorker* w = loaded(c.modelDir + QStringLiteral("/native"));
    QVERIFY(w);
    // The worker thread parks inside its 3rd piece until this (GUI) thread has called stop(); so stop() is called
    // from another thread while the generation is certainly running.
    QSemaphore atThird, stopped;
    std::atomic<int> seen{0};
    auto conn = connect(w, &InferenceWorker::pieceArrived, w, [&](qint64, quint64, const QString&, int) {
      if (++seen == 3) {
        atThird.release();
        stopped.acquire();
      }
    }, Qt::DirectConnection);
    QSignalSpy finished(relayOf(w), &Relay::generationFinished);
    GenerationRequest r = greedyRequest(777, test::caseMessages(c), 2000);
    w->generate(r);
    QVERIFY(atThird.tryAcquire(1, kGenerateTimeoutMs));
    const int atStop = seen.load();
    w->stop();
    stopped.release();
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kGenerateTimeoutMs);
    disconnect(conn);
    const auto result = finished.first().at(1).value<GenerationResult>();
    QCOMPARE(result.finishReason, QStringLiteral("cancelled"));
    QVERIFY2(int(result.tokens.size()) <= atStop + 1,
             qPrintable(QStringLiteral("%1 tokens after stop at %2").arg(result.tokens.size()).arg(atStop)));
    QCOMPARE(seen.load(), int(result.tokens.size()));

    // The next question is not affected by the earlier Stop.
    w->generate(greedyRequest(778, test::caseMessages(c), c.maxTokens));
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kGenerateTimeoutMs);
    QCOMPARE(finished.at(1).at(1).value<GenerationResult>().tokens, c.greedyTokens);
  }

  void stopCancelsQueuedRequests() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    InferenceWorker* w = loaded(c.modelDir + QStringLiteral("/native"));
    QVERIFY(w);
    QSignalSpy finished(relayOf(w), &Relay::generationFinished);
    QSemaphore inFirst, go;
    auto conn = connect(w, &InferenceWorker::pieceArrived, w, [&](qint64 conv, quint64, const QString&, int) {
      if (conv == 901) {
        inFirst.release();
        go.acquire();
      }
    }, Qt::DirectConnection);
    w->generate(greedyRequest(901, test::caseMessages(c), 1));  // parks in its only piece
    QVERIFY(inFirst.tryAcquire(1, kGenerateTimeoutMs));
    w->generate(greedyRequest(902, test::caseMessages(c), 50));  // queued behind it
    w->stop();
    go.release();
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kGenerateTimeoutMs);
    disconnect(conn);
    QCOMPARE(finished.at(1).at(0).toLongLong(), qint64(902));
    const auto queued = finished.at(1).at(1).value<GenerationResult>();
    QCOMPARE(queued.finishReason, QStringLiteral("cancelled"));
    QVERIFY(queued.tokens.empty());
  }

  // stop(id) stops that request only: the one running (parked in its 2nd piece) ends "cancelled", a queued
  // one behind it — of the same conversation, so only the id tells them apart — runs to its end; and a queued
  // request stopped by id never runs. Pieces and results name their request.
  void stopOneRequestById() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    InferenceWorker* w = loaded(c.modelDir + QStringLiteral("/native"));
    QVERIFY(w);
    QSignalSpy pieces(relayOf(w), &Relay::pieceArrived);
    QSignalSpy finished(relayOf(w), &Relay::generationFinished);
    QSemaphore inSecond, go;
    // The first request to stream is the one parked (the worker runs them in order: busyId). Its id is taken from
    // its first piece, not set after generate() returns: the worker may stream before this thread gets to that.
    std::atomic<quint64> parkIn{0};
    std::atomic<int> seen{0};
    auto conn = connect(w, &InferenceWorker::pieceArrived, w, [&](qint64, quint64 id, const QString&, int) {
      quint64 none = 0;
      parkIn.compare_exchange_strong(none, id);
      if (id == parkIn.load() && ++seen == 2) {
        inSecond.release();
        go.acquire();
      }
    }, Qt::DirectConnection);
    const quint64 busyId = w->generate(greedyRequest(931, test::caseMessages(c), 2000));
    const quint64 nextId = w->generate(greedyRequest(931, test::caseMessages(c), c.maxTokens));
    const quint64 droppedId = w->generate(greedyRequest(931, test::caseMessages(c), c.maxTokens));
    QVERIFY(busyId != 0 && nextId != busyId && droppedId != nextId);
    QVERIFY(inSecond.tryAcquire(1, kGenerateTimeoutMs));
    w->stop(busyId);
    w->stop(droppedId);
    go.release();
    QCOMPARE(parkIn.load(), busyId);  // after the release: a failed check must not leave the worker parked
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 3, kGenerateTimeoutMs);
    disconnect(conn);
    std::map<quint64, GenerationResult> results;
    for (const QList<QVariant>& f : finished) {
      const auto r = f.at(1).value<GenerationResult>();
      results[r.requestId] = r;
    }
    QCOMPARE(int(results.size()), 3);
    QCOMPARE(results[busyId].finishReason, QStringLiteral("cancelled"));
    QVERIFY2(results[busyId].tokens.size() <= 3, qPrintable(QString::number(results[busyId].tokens.size())));
    QCOMPARE(results[nextId].tokens, c.greedyTokens);  // not touched by the other request's stop
    QCOMPARE(results[nextId].finishReason, c.finishReason);
    QCOMPARE(results[droppedId].finishReason, QStringLiteral("cancelled"));
    QVERIFY(results[droppedId].tokens.empty());
    // Each request's pieces carry its id: the pieces of nextId are exactly its streamed answer.
    std::vector<int> nextStreamed;
    int busyPieces = 0;
    for (const QList<QVariant>& p : pieces) {
      const quint64 id = p.at(1).toULongLong();
      QVERIFY(id == busyId || id == nextId);  // the stopped queued request streamed nothing
      if (id == nextId) nextStreamed.push_back(p.at(3).toInt());
      else ++busyPieces;
    }
    QCOMPARE(busyPieces, int(results[busyId].tokens.size()));
    std::vector<int> expected = c.greedyTokens;
    if (!expected.empty() && expected.back() == 2 && c.finishReason == QLatin1String("stop")) expected.pop_back();
    QCOMPARE(nextStreamed, expected);
  }

  // A prompt longer than the context fails with the engine's context_overflow code (what `quire serve` turns
  // into HTTP 400), naming the request.
  void contextOverflowCarriesItsCode() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    InferenceWorker* w = loaded(c.modelDir + QStringLiteral("/native"));
    QVERIFY(w);
    QSignalSpy failed(relayOf(w), &Relay::generationFailed);
    QSignalSpy finished(relayOf(w), &Relay::generationFinished);
    QString longText;
    for (int i = 0; i < 40; ++i) longText += QStringLiteral("Tell me more about this picture, please. ");
    GenerationRequest r = greedyRequest(944, {InferenceMessage{pixtral::Role::user, {InferencePart::fromText(longText)}, {}}}, 4);
    r.contextLength = 32;
    const quint64 id = w->generate(r);
    QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, kGenerateTimeoutMs);
    QCOMPARE(finished.count(), 0);
    QCOMPARE(failed.first().at(0).toLongLong(), qint64(944));
    const auto failure = failed.first().at(1).value<GenerationFailure>();
    QCOMPARE(failure.requestId, id);
    QCOMPARE(failure.code, pixtral::ErrorCode::context_overflow);
    QVERIFY(failure.contextOverflow());
    QVERIFY2(failure.message.contains(QStringLiteral("32")), qPrintable(failure.message));
  }

  // Failures as signals -----------------------------------------------------------------------------------------
  void badImagesFailWithAMessage_data() {
    QTest::addColumn<QImage>("image");
    QTest::newRow("null image") << QImage();
    QTest::newRow("undecodable file") << QImage(QStringLiteral(QUIRE_FIXTURES_DIR "/models/index.json"));
  }
  void badImagesFailWithAMessage() {
    QFETCH(QImage, image);
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    InferenceWorker* w = loaded(c.modelDir + QStringLiteral("/native"));
    QVERIFY(w);
    QSignalSpy failed(relayOf(w), &Relay::generationFailed);
    QSignalSpy finished(relayOf(w), &Relay::generationFinished);
    InferenceMessage m{pixtral::Role::user, {InferencePart::fromText(QStringLiteral("Look:")), InferencePart::fromImage(image)}, {}};
    w->generate(greedyRequest(55, {m}, 4));
    QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, kGenerateTimeoutMs);
    QCOMPARE(finished.count(), 0);
    QCOMPARE(failed.first().at(0).toLongLong(), qint64(55));
    const auto failure = failed.first().at(1).value<GenerationFailure>();
    QVERIFY2(failure.message.contains(QStringLiteral("image 1")), qPrintable(failure.message));
    QCOMPARE(failure.code, pixtral::ErrorCode::invalid_argument);
  }

  void generateWithoutAModelFails() {
    InferenceThread t;
    QSignalSpy failed(relayOf(t.worker()), &Relay::generationFailed);
    t.worker()->generate(greedyRequest(1, {InferenceMessage{pixtral::Role::user, {InferencePart::fromText(QStringLiteral("hi"))}, {}}}, 4));
    QTRY_COMPARE(failed.count(), 1);
    QVERIFY(failed.first().at(1).value<GenerationFailure>().message.contains(QStringLiteral("No model")));
  }

  void loadErrorsArriveAsMessages_data() {
    QTest::addColumn<QString>("damage");
    QTest::addColumn<QString>("expected");  // a word the message must contain
    QTest::newRow("missing folder") << QStringLiteral("missing") << QStringLiteral("does not exist");
    QTest::newRow("no tokenizer") << QStringLiteral("no-tekken") << QStringLiteral("tekken.json");
    QTest::newRow("no weights") << QStringLiteral("no-weights") << QStringLiteral("consolidated.safetensors");
    QTest::newRow("truncated weights") << QStringLiteral("truncated") << QString();
    QTest::newRow("garbage header") << QStringLiteral("garbage") << QString();
    QTest::newRow("broken params.json") << QStringLiteral("params") << QStringLiteral("params.json");
  }
  void loadErrorsArriveAsMessages() {
    QFETCH(QString, damage);
    QFETCH(QString, expected);
    QTemporaryDir tmp;
    const QString dir = tmp.filePath(QStringLiteral("model"));
    if (damage != QLatin1String("missing"))
      QVERIFY(copyFolder(QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/native"), dir));
    const QString weights = QDir(dir).filePath(QStringLiteral("consolidated.safetensors"));
    if (damage == QLatin1String("no-tekken")) QVERIFY(QFile::remove(QDir(dir).filePath(QStringLiteral("tekken.json"))));
    if (damage == QLatin1String("no-weights")) QVERIFY(QFile::remove(weights));
    if (damage == QLatin1String("truncated")) QVERIFY(QFile::resize(weights, QFileInfo(weights).size() / 2));
    if (damage == QLatin1String("garbage")) {
      QFile f(weights);
      QVERIFY(f.open(QIODevice::ReadWrite));
      f.write(QByteArray(64, '\xff'));
    }
    if (damage == QLatin1String("params")) {
      QFile f(QDir(dir).filePath(QStringLiteral("params.json")));
      QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
      f.write("{\"dim\": ");
    }
    InferenceThread t;
    QSignalSpy loadedSpy(relayOf(t.worker()), &Relay::modelLoaded);
    QSignalSpy failed(relayOf(t.worker()), &Relay::modelLoadFailed);
    t.worker()->loadModel(dir);
    QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, kLoadTimeoutMs);
    QCOMPARE(loadedSpy.count(), 0);
    const QString message = failed.first().first().toString();
    QVERIFY(!message.isEmpty());
    if (!expected.isEmpty()) QVERIFY2(message.contains(expected), qPrintable(message));
  }

  void loadReportsProgressAndInfo() {
    InferenceThread t;
    QSignalSpy progress(relayOf(t.worker()), &Relay::modelLoadProgress);
    QSignalSpy loadedSpy(relayOf(t.worker()), &Relay::modelLoaded);
    t.worker()->loadModel(QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/hf"), {pixtral::Device::cpu, 2});
    QTRY_COMPARE_WITH_TIMEOUT(loadedSpy.count(), 1, kLoadTimeoutMs);
    QVERIFY(progress.count() >= 2);
    double last = -1;
    for (const QList<QVariant>& p : progress) {
      QVERIFY(p.at(0).toDouble() >= last);
      last = p.at(0).toDouble();
    }
    QCOMPARE(last, 1.0);
    const auto info = loadedSpy.first().first().value<ModelLoadInfo>();
    QCOMPARE(info.backend, QStringLiteral("cpu"));
    QCOMPARE(info.layout, QStringLiteral("hf"));
    QCOMPARE(info.precision, QStringLiteral("bf16"));
    QVERIFY(!info.device.isEmpty());
    QVERIFY(info.weightBytes > 0);
    QVERIFY(info.maxContext > 0);
  }

  // Precision: Settings ▸ Model → InferenceWorker → LoadOptions, and back in ModelLoadInfo ------------------------
  void savedPrecisionReachesTheEngine_data() {
    QTest::addColumn<QString>("precision");
    QTest::newRow("int8") << QStringLiteral("int8");
    QTest::newRow("int4") << QStringLiteral("int4");
    QTest::newRow("auto (CPU: bf16)") << QStringLiteral("auto");
  }
  void savedPrecisionReachesTheEngine() {
    QFETCH(QString, precision);
    QStandardPaths::setTestModeEnabled(true);  // QSettings in a test location, not the user's
    struct Restore {
      ~Restore() { savePrecision(pixtral::Precision::automatic); }
    } restore;
    // A tiny model whose dims are multiples of 128 (int4 groups), written once for the run.
    static const std::string dir = [] {
      pixtral::tiny::TinyModelSpec s;
      s.dim = 128, s.n_layers = 2, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 32, s.hidden_dim = 256;
      s.bf16 = true;
      return pixtral::tiny::write_tiny_model(s);
    }();
    QVERIFY(!dir.empty());
    pixtral::Precision p = pixtral::Precision::bf16;
    QVERIFY(pixtral::parse_precision(precision.toStdString(), &p));
    savePrecision(p);
    QCOMPARE(savedPrecision(), p);
    ModelLoadOptions o = savedModelLoadOptions();
    QCOMPARE(o.precision, p);
    o.device = pixtral::Device::cpu;
    o.threads = 2;
    InferenceThread t;
    QSignalSpy loadedSpy(relayOf(t.worker()), &Relay::modelLoaded);
    QSignalSpy failed(relayOf(t.worker()), &Relay::modelLoadFailed);
    t.worker()->loadModel(QString::fromStdString(dir), o);
    QTRY_COMPARE_WITH_TIMEOUT(loadedSpy.count() + failed.count(), 1, kLoadTimeoutMs);
    QVERIFY2(failed.isEmpty(), failed.isEmpty() ? "" : qPrintable(failed.first().first().toString()));
    const auto info = loadedSpy.first().first().value<ModelLoadInfo>();
    const QString expected = precision == QLatin1String("auto") ? QStringLiteral("bf16") : precision;
    QCOMPARE(info.precision, expected);
    QCOMPARE(info.weightDtype, QStringLiteral("bf16"));
    QVERIFY2(info.memoryPlan.startsWith(expected + QStringLiteral(" on cpu")), qPrintable(info.memoryPlan));
    QCOMPARE(info.patchSize, 16);
    // KV cache: 2 layers × (K, V) × 2 kv heads × 32 dims × f32 (the CPU backend's activations) per token.
    QCOMPARE(info.kvBytesPerToken, quint64(2 * 2 * 2 * 32 * 4));
    QCOMPARE(info.kvCacheBytes(1000), quint64(1000) * info.kvBytesPerToken);
    QVERIFY(info.maxContext > 0 && info.maxContext <= info.modelMaxContext);
    if (expected == QLatin1String("bf16")) QCOMPARE(info.loadedWeightBytes, info.weightBytes);
    else QVERIFY(info.loadedWeightBytes < info.weightBytes);
  }

  void unknownSavedPrecisionIsAutomatic() {
    QStandardPaths::setTestModeEnabled(true);
    QSettings().setValue(QStringLiteral("model/precision"), QStringLiteral("fp8"));
    QCOMPARE(savedPrecision(), pixtral::Precision::automatic);
    savePrecision(pixtral::Precision::automatic);
    QCOMPARE(QSettings().value(QStringLiteral("model/precision")).toString(), QStringLiteral("auto"));
  }

  void cancelledLoadSaysSo() {
    InferenceThread t;
    QSignalSpy cancelled(relayOf(t.worker()), &Relay::modelLoadCancelled);
    QSignalSpy loadedSpy(relayOf(t.worker()), &Relay::modelLoaded);
    // Cancel from inside the first progress step (the worker thread waits until this thread has cancelled).
    QSemaphore inProgress, cancelledNow;
    connect(t.worker(), &InferenceWorker::modelLoadProgress, t.worker(), [&](double, const QString&) {
      if (inProgress.available() == 0 && cancelledNow.available() == 0) {
        inProgress.release();
        cancelledNow.acquire();
        cancelledNow.release();
      }
    }, Qt::DirectConnection);
    t.worker()->loadModel(QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/native"));
    QVERIFY(inProgress.tryAcquire(1, kLoadTimeoutMs));
    t.worker()->cancelLoad();
    cancelledNow.release();
    QTRY_COMPARE_WITH_TIMEOUT(cancelled.count(), 1, kLoadTimeoutMs);
    QCOMPARE(loadedSpy.count(), 0);
  }

  // Time estimate ------------------------------------------------------------------------------------------------
  void estimateGrowsWithTheImage() {
    InferenceWorker* w = loaded(QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/native"));
    QVERIFY(w);
    QSignalSpy ready(relayOf(w), &Relay::estimateReady);
    w->requestEstimate(1, {QSize(16, 16)}, 20, 50);
    w->requestEstimate(2, {QSize(64, 64)}, 20, 50);
    QTRY_COMPARE(ready.count(), 2);
    const auto small = ready.at(0).at(1).value<TimeEstimate>();
    const auto big = ready.at(1).at(1).value<TimeEstimate>();
    QCOMPARE(ready.at(1).at(0).toULongLong(), quint64(2));
    QVERIFY(small.valid && big.valid);
    QVERIFY(big.promptTokens > small.promptTokens);
    QVERIFY(big.secondsToFirstToken > small.secondsToFirstToken);
    QCOMPARE(big.secondsPerToken, small.secondsPerToken);
    QVERIFY(big.text.startsWith(QStringLiteral("about ")));
  }

  void estimateFromRatesAndCalibration() {
    pixtral::ModelInfo m;  // Pixtral-12B's shape
    m.dim = 5120, m.n_layers = 40, m.n_heads = 32, m.n_kv_heads = 8, m.head_dim = 128, m.hidden_dim = 14336;
    m.vocab_size = 131072, m.vision_dim = 1024, m.vision_layers = 24, m.patch_size = 16;
    m.weight_bytes = 25'400'000'000ull;
    const QuestionCost page = questionCost(m, 4200, 4096);
    // A decoder row costs about 2 FLOPs per decoder weight (12.2 B): within 10 % of 2·12.2e9 per token.
    const double perRow = page.prefillFlops / 4200;
    QVERIFY2(perRow > 2 * 11.5e9 && perRow < 2 * 13.5e9, qPrintable(QString::number(perRow)));
    Throughput rate{1e12, 1e11, false};
    const TimeEstimate e = estimateTime(page, rate, 100);
    QVERIFY(e.valid);
    QCOMPARE(e.secondsPerToken, 0.254);
    QVERIFY(qAbs(e.secondsTotal - (e.secondsToFirstToken + 25.4)) < 1e-9);
    pixtral::Timings t;
    t.prompt_tokens = 4200, t.prefill_ms = 2000, t.vision_ms = 500, t.generated_tokens = 10, t.decode_ms_per_token = 100;
    calibrate(&rate, page, t);
    QVERIFY(rate.measured);
    QVERIFY(qAbs(rate.flopsPerSecond - (page.prefillFlops + page.visionFlops) / 2.5) < 1);
    QVERIFY(qAbs(rate.bytesPerSecond - m.weight_bytes / 0.1) < 1);
    QCOMPARE(formatAbout(42.4), QStringLiteral("about 42 s"));
    QCOMPARE(formatAbout(600), QStringLiteral("about 10 min"));
  }

  void probeMeasuresSomething() {
    const Throughput t = probeThroughput(1);
    QVERIFY(t.flopsPerSecond > 1e7);
    QVERIFY(t.bytesPerSecond > 1e7);
  }

  // Conversions and checks ---------------------------------------------------------------------------------------
  void engineImageKeepsPixelsAndAlpha_data() {
    QTest::addColumn<QImage>("image");
    QTest::addColumn<int>("format");
    QTest::addColumn<QByteArray>("firstPixel");
    QImage gray(3, 2, QImage::Format_Grayscale8);
    gray.fill(77);
    QImage rgb(3, 2, QImage::Format_RGB32);
    rgb.fill(QColor(10, 20, 30));
    QImage rgba(3, 2, QImage::Format_ARGB32);
    rgba.fill(QColor(200, 100, 50, 0));  // fully transparent: the colour must survive (no premultiplication)
    QImage half(3, 2, QImage::Format_ARGB32);
    half.fill(QColor(1, 2, 3, 128));
    QTest::newRow("gray8") << gray << int(pixtral::PixelFormat::gray8) << QByteArray("\x4d", 1);
    QTest::newRow("rgb") << rgb << int(pixtral::PixelFormat::rgb8) << QByteArray("\x0a\x14\x1e", 3);
    QTest::newRow("transparent") << rgba << int(pixtral::PixelFormat::rgba8) << QByteArray("\xc8\x64\x32\x00", 4);
    QTest::newRow("half alpha") << half << int(pixtral::PixelFormat::rgba8) << QByteArray("\x01\x02\x03\x80", 4);
  }
  void engineImageKeepsPixelsAndAlpha() {
    QFETCH(QImage, image);
    QFETCH(int, format);
    QFETCH(QByteArray, firstPixel);
    pixtral::Image out;
    QVERIFY(toEngineImage(image, &out));
    QCOMPARE(int(out.format), format);
    QCOMPARE(out.width, 3);
    QCOMPARE(out.height, 2);
    QCOMPARE(out.pixels.size(), std::size_t(6 * pixtral::bytes_per_pixel(out.format)));
    QCOMPARE(QByteArray(reinterpret_cast<const char*>(out.pixels.data()), firstPixel.size()), firstPixel);
    const std::size_t last = out.pixels.size() - std::size_t(firstPixel.size());
    QCOMPARE(QByteArray(reinterpret_cast<const char*>(out.pixels.data() + last), firstPixel.size()), firstPixel);
  }

  // The one alpha path: the app keeps alpha, the engine composites it on white with Pillow's rule,
  // DIV255(c·a + 255·(255 − a)) (spec §4.1) — computed here as round(x / 255).
  void engineCompositesAlphaOnWhite() {
    QImage img(16, 16, QImage::Format_ARGB32);
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) img.setPixelColor(x, y, QColor(x * 17, y * 16, 255 - x * 13, (x * 16 + y * 37) % 256));
    pixtral::Image e;
    QVERIFY(toEngineImage(img, &e));
    QCOMPARE(e.format, pixtral::PixelFormat::rgba8);
    auto rgb = pixtral::vision::to_rgb8(e.view());
    QVERIFY(rgb.ok());
    QCOMPARE(rgb->format, pixtral::PixelFormat::rgb8);
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        const QColor c = img.pixelColor(x, y);
        const int a = c.alpha(), in[3] = {c.red(), c.green(), c.blue()};
        for (int ch = 0; ch < 3; ++ch) {
          const long want = std::lround(double(in[ch] * a + 255 * (255 - a)) / 255.0);
          QCOMPARE(int(rgb->pixels[std::size_t((y * 16 + x) * 3 + ch)]), int(want));
        }
      }
  }

  void engineImageRefusesNull() {
    pixtral::Image out;
    QString why;
    QVERIFY(!toEngineImage(QImage(), &out, &why));
    QVERIFY(!why.isEmpty());
  }

  void modelFolderCheckNamesWhatIsMissing_data() {
    QTest::addColumn<QStringList>("files");
    QTest::addColumn<bool>("ok");
    QTest::addColumn<QStringList>("missing");
    QTest::newRow("empty") << QStringList{} << false << QStringList{"params.json", "consolidated.safetensors", "tekken.json"};
    QTest::newRow("native") << QStringList{"params.json", "consolidated.safetensors", "tekken.json"} << true << QStringList{};
    QTest::newRow("native shards") << QStringList{"params.json", "consolidated-00001-of-00002.safetensors", "tekken.json"} << true << QStringList{};
    QTest::newRow("hf") << QStringList{"config.json", "model.safetensors.index.json", "tekken.json"} << true << QStringList{};
    QTest::newRow("no tekken") << QStringList{"params.json", "consolidated.safetensors"} << false << QStringList{"tekken.json"};
    QTest::newRow("params only") << QStringList{"params.json", "tekken.json"} << false << QStringList{"consolidated.safetensors"};
    QTest::newRow("config only") << QStringList{"config.json"} << false << QStringList{"model.safetensors", "tekken.json"};
  }
  void modelFolderCheckNamesWhatIsMissing() {
    QFETCH(QStringList, files);
    QFETCH(bool, ok);
    QFETCH(QStringList, missing);
    QTemporaryDir tmp;
    for (const QString& f : files) {
      QFile file(tmp.filePath(f));
      QVERIFY(file.open(QIODevice::WriteOnly));
    }
    const ModelFolderCheck c = checkModelFolder(tmp.path());
    QCOMPARE(c.ok, ok);
    QCOMPARE(c.missing, missing);
    for (const QString& m : missing) QVERIFY2(c.message.contains(m), qPrintable(c.message));
    if (!ok) QVERIFY2(c.message.contains(QStringLiteral("mistralai/Pixtral-12B-2409")), qPrintable(c.message));
    else QVERIFY(c.message.isEmpty());
  }

  void modelFolderCheckOnFixturesAndNonFolders() {
    QVERIFY(checkModelFolder(QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/native")).ok);
    QCOMPARE(checkModelFolder(QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/hf")).layout, QStringLiteral("hf"));
    QVERIFY(!checkModelFolder(QStringLiteral(QUIRE_FIXTURES_DIR "/models/index.json")).ok);
    QVERIFY(checkModelFolder(QStringLiteral("/nonexistent/model")).message.contains(QStringLiteral("does not exist")));
    QVERIFY(!checkModelFolder(QString()).ok);
  }

  void cleanupTestCase() {
    g_relays.clear();
    m_threads.clear();
  }
};

QTEST_GUILESS_MAIN(TestInferenceWorker)
#include "tst_inference_worker.moc"
