// SPDX-License-Identifier: GPL-3.0-or-later
// `quire ask` (see ask.h). The order of work: arguments → model folder check → documents opened (fast failures
// first) → model loaded on the InferenceWorker → images rendered at the model's size → (CPU) time estimate →
// streamed answer → saved. Runs under QCoreApplication only: Poppler renders through Splash into a QImage and
// Qt's image readers need no platform plugin, so no display is ever needed.
// ref: engine/tools/pixtral.cpp cmd_generate (argument checks, --json output)
#include "cli/ask.h"

#include "documents/document_loader.h"
#include "documents/model_image.h"
#include "cli/headless.h"
#include "inference/inference_thread.h"
#include "inference/model_folder.h"
#include "storage/conversation_store.h"

#include <nlohmann/json.hpp>

#include <QCoreApplication>
#include <QCryptographicHash>
#include <QFile>
#include <QFileInfo>
#include <QJsonObject>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

namespace quire {

namespace {

const char* const kAskUsage =
    "Usage: quire ask [--model DIR] [FILE [--page N] [--region x,y,w,h]] [--image FILE]... [--system TEXT]\n"
    "                 [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--context N]\n"
    "                 [--device auto|cpu|cuda] [--precision auto|bf16|int8|int4] [--no-save] [--json]\n"
    "                 \"question\"\n"
    "Answers a question about a PDF page (or a region of it), an image, or none, and saves it to the history.\n"
    "  --page N        1-based page of FILE (default 1)\n"
    "  --region x,y,w,h  part of the page, normalised 0-1, origin top-left\n"
    "  --image FILE    more images, after FILE's, in order\n"
    "  --precision P   decoder weights: auto (default: the GPU's memory decides), bf16, int8, int4\n"
    "  --json          answer streamed to stderr, one JSON line on stdout (as `pixtral generate --json`)\n"
    "Exit codes: 0 answered, 2 bad arguments, 3 model or document error.\n";

constexpr int kExitBadArguments = 2;
constexpr int kExitFailed = 3;

bool parseInt(const QString& s, long long min, long long* out) {
  bool ok = false;
  const long long v = s.toLongLong(&ok);
  if (!ok || v < min) return false;
  *out = v;
  return true;
}

bool parseRegion(const QString& s, QRectF* out) {
  const QStringList p = s.split(QLatin1Char(','));
  if (p.size() != 4) return false;
  double v[4];
  for (int i = 0; i < 4; ++i) {
    bool ok = false;
    v[i] = p[i].trimmed().toDouble(&ok);
    if (!ok || v[i] < 0 || v[i] > 1) return false;
  }
  constexpr double eps = 1e-9;
  if (v[2] <= 0 || v[3] <= 0 || v[0] + v[2] > 1 + eps || v[1] + v[3] > 1 + eps) return false;
  *out = QRectF(v[0], v[1], v[2], v[3]);
  return true;
}

void printErr(const QString& s) { std::fprintf(stderr, "quire ask: %s\n", s.toLocal8Bit().constData()); }

QString sha256OfFile(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  QCryptographicHash h(QCryptographicHash::Sha256);
  h.addData(&f);
  return QString::fromLatin1(h.result().toHex());
}

QString mimeOfImageFile(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return QStringLiteral("application/octet-stream");
  const QByteArray head = f.read(12);
  if (head.startsWith("\x89PNG")) return QStringLiteral("image/png");
  if (head.startsWith("\xff\xd8")) return QStringLiteral("image/jpeg");
  if (head.startsWith("RIFF") && head.mid(8, 4) == "WEBP") return QStringLiteral("image/webp");
  if (head.startsWith("GIF8")) return QStringLiteral("image/gif");
  return QStringLiteral("application/octet-stream");
}

// The documents of a question, opened before the model loads so a bad file fails fast.
struct Inputs {
  std::shared_ptr<Document> file;
  QList<std::shared_ptr<Document>> images;
};

int openInputs(const AskOptions& o, Inputs* in) {
  const DocumentLoader loader;
  if (!o.file.isEmpty()) {
    LoadResult r = loader.load(o.file);
    if (!r.ok()) {
      printErr(r.message);
      return kExitFailed;
    }
    in->file = r.document;
    if (o.page > in->file->pageCount()) {
      printErr(QStringLiteral("--page %1: %2 has %3 page(s)").arg(o.page).arg(o.file).arg(in->file->pageCount()));
      return kExitBadArguments;
    }
  }
  for (const QString& path : o.images) {
    LoadResult r = loader.load(path);
    if (!r.ok()) {
      printErr(r.message);
      return kExitFailed;
    }
    if (r.document->kind() != Document::Kind::Image) {
      printErr(QStringLiteral("--image %1: not an image (give a PDF as FILE with --page)").arg(path));
      return kExitBadArguments;
    }
    in->images << r.document;
  }
  return 0;
}

// Renders the message's images at the model's size; fills the attachments saved with the question.
bool renderParts(const AskOptions& o, const Inputs& in, int maxSide, QList<InferencePart>* parts,
                 QList<Attachment>* attachments) {
  if (in.file) {
    const int page = o.page - 1;
    const QImage img = o.region ? modelImageForRegion(*in.file, page, *o.region, maxSide)
                                : modelImageForPage(*in.file, page, maxSide);
    if (img.isNull()) {
      printErr(QStringLiteral("%1: page %2 could not be rendered").arg(o.file).arg(o.page));
      return false;
    }
    *parts << InferencePart::fromImage(img);
    Attachment a;
    a.documentPath = QFileInfo(o.file).absoluteFilePath();
    a.contentHash = sha256OfFile(o.file);
    a.resolution = img.size();
    if (in.file->kind() == Document::Kind::Image && !o.region) {
      a.kind = AttachmentKind::Image;
      QFile f(o.file);
      if (f.open(QIODevice::ReadOnly)) a.imageData = f.readAll();
      a.imageMime = mimeOfImageFile(o.file);
    } else {
      a.kind = o.region ? AttachmentKind::Region : AttachmentKind::Page;
      a.page = page;
      if (o.region) a.region = *o.region;
    }
    *attachments << a;
  }
  for (int i = 0; i < in.images.size(); ++i) {
    const QImage img = modelImageForPage(*in.images[i], 0, maxSide);
    if (img.isNull()) {
      printErr(QStringLiteral("%1 could not be decoded").arg(o.images[i]));
      return false;
    }
    *parts << InferencePart::fromImage(img);
    Attachment a;
    a.kind = AttachmentKind::Image;
    a.documentPath = QFileInfo(o.images[i]).absoluteFilePath();
    a.contentHash = sha256OfFile(o.images[i]);
    a.resolution = img.size();
    QFile f(o.images[i]);
    if (f.open(QIODevice::ReadOnly)) a.imageData = f.readAll();
    a.imageMime = mimeOfImageFile(o.images[i]);
    *attachments << a;
  }
  *parts << InferencePart::fromText(o.question);
  return true;
}

QJsonObject samplingJson(const pixtral::GenerateParams& p) {
  return {{QStringLiteral("temperature"), double(p.temperature)}, {QStringLiteral("top_p"), double(p.top_p)},
          {QStringLiteral("top_k"), p.top_k}, {QStringLiteral("seed"), qint64(p.seed)},
          {QStringLiteral("max_tokens"), p.max_tokens}};
}

QJsonObject timingsJson(const GenerationResult& r) {
  const pixtral::Timings& t = r.timings;
  return {{QStringLiteral("preprocess_ms"), t.preprocess_ms}, {QStringLiteral("vision_ms"), t.vision_ms},
          {QStringLiteral("prefill_ms"), t.prefill_ms},       {QStringLiteral("ttft_ms"), t.ttft_ms},
          {QStringLiteral("decode_ms_per_token"), t.decode_ms_per_token},
          {QStringLiteral("tokens_per_s"), r.tokensPerSecond()},
          {QStringLiteral("prompt_tokens"), t.prompt_tokens},
          {QStringLiteral("generated_tokens"), t.generated_tokens}};
}

// The history side of one question: the conversation, the user message, the answer as it streams. A store
// that cannot be opened or written never fails the answer; it is reported on stderr.
class AskRecorder {
 public:
  void begin(const AskOptions& o, const QList<Attachment>& attachments, const QString& model) {
    if (!m_store.open()) {
      printErr(QStringLiteral("not saved: %1").arg(m_store.lastError().message()));
      return;
    }
    QString title = o.question.simplified();
    if (title.size() > 60) title = title.left(59) + QChar(0x2026);
    const auto conv = m_store.createConversation(title, o.system, samplingJson(o.params), model);
    if (!conv) return fail();
    m_conversation = *conv;
    const auto user = m_store.addUserMessage(m_conversation, 0, o.question, attachments);
    if (!user) return fail();
    m_user = *user;
    const auto answer = m_store.beginAssistantMessage(m_conversation, m_user, model, samplingJson(o.params));
    if (!answer) return fail();
    m_answer = *answer;
  }
  void piece(const QString& text, int token) {
    if (!m_answer) return;
    const std::int32_t id = token;
    m_store.appendToAssistantMessage(m_answer, text, {&id, 1});
    m_text += text;
    ++m_streamed;
  }
  void finish(const GenerationResult& r) {
    if (!m_answer) return;
    // What was not streamed: the final </s>, and text the stream decoder held back until the end.
    for (std::size_t i = std::size_t(m_streamed); i < r.tokens.size(); ++i) {
      const std::int32_t id = r.tokens[i];
      const QString rest = (i + 1 == r.tokens.size() && r.text.startsWith(m_text)) ? r.text.mid(m_text.size()) : QString();
      m_store.appendToAssistantMessage(m_answer, rest, {&id, 1});
    }
    const std::vector<std::int32_t> prompt(r.promptTokens.begin(), r.promptTokens.end());
    m_store.setTokenIds(m_user, prompt);
    const MessageState state = r.finishReason == QLatin1String("cancelled") ? MessageState::Stopped : MessageState::Complete;
    if (!m_store.finishAssistantMessage(m_answer, state, timingsJson(r))) fail();
  }
  void failed() {
    if (m_answer) m_store.finishAssistantMessage(m_answer, MessageState::Error);
  }

 private:
  void fail() {
    printErr(QStringLiteral("not saved: %1").arg(m_store.lastError().message()));
    m_answer = 0;
  }
  ConversationStore m_store;
  qint64 m_conversation = 0, m_user = 0, m_answer = 0;
  QString m_text;
  int m_streamed = 0;
};

std::string pixtralJsonLine(const GenerationResult& r, double loadMs, const QString& device, const QString& precision) {
  using nlohmann::json;
  const pixtral::Timings& t = r.timings;
  // Field for field what `pixtral generate --json` prints (engine/tools/pixtral.cpp), ASCII-only, + the precision.
  json j = {{"prompt_tokens", r.promptTokens},
            {"tokens", r.tokens},
            {"text", r.text.toStdString()},
            {"finish_reason", r.finishReason.toStdString()},
            {"timings",
             {{"load_ms", loadMs},
              {"preprocess_ms", t.preprocess_ms},
              {"vision_ms", t.vision_ms},
              {"prefill_ms", t.prefill_ms},
              {"ttft_ms", t.ttft_ms},
              {"decode_ms_per_token", t.decode_ms_per_token}}},
            {"device", device.toStdString()},
            {"precision", precision.toStdString()}};
  return j.dump(-1, ' ', true, json::error_handler_t::replace);
}

}  // namespace

const char* askUsage() { return kAskUsage; }

bool parseAskArguments(const QStringList& args, AskOptions* out, QString* error) {
  AskOptions o;
  if (args.isEmpty()) {
    *error = QStringLiteral("missing the question (the last argument)");
    return false;
  }
  o.question = args.last();
  const int n = int(args.size()) - 1;  // options and FILE are args[0, n)
  if (o.question.trimmed().isEmpty() || (o.question.startsWith(QLatin1String("--")) && o.question.size() > 2)) {
    *error = QStringLiteral("the last argument must be the question");
    return false;
  }
  auto fail = [error](const QString& e) {
    *error = e;
    return false;
  };
  for (int i = 0; i < n; ++i) {
    const QString f = args[i];
    if (f == QLatin1String("--json")) { o.json = true; continue; }
    if (f == QLatin1String("--no-save")) { o.save = false; continue; }
    if (!f.startsWith(QLatin1String("--"))) {
      if (!o.file.isEmpty()) return fail(QStringLiteral("more than one FILE (%1, %2); use --image for more images").arg(o.file, f));
      o.file = f;
      continue;
    }
    if (i + 1 >= n) return fail(QStringLiteral("%1 needs a value (or is unknown)").arg(f));
    const QString v = args[++i];
    long long k = 0;
    bool ok = false;
    if (f == QLatin1String("--model")) o.model = v;
    else if (f == QLatin1String("--image")) o.images << v;
    else if (f == QLatin1String("--system")) { o.system = v; o.systemGiven = true; }
    else if (f == QLatin1String("--page")) { if (!parseInt(v, 1, &k) || k > 1000000) return fail(QStringLiteral("--page: integer >= 1")); o.page = int(k); o.pageGiven = true; }
    else if (f == QLatin1String("--region")) { QRectF r; if (!parseRegion(v, &r)) return fail(QStringLiteral("--region: x,y,w,h within 0-1 with w, h > 0")); o.region = r; }
    else if (f == QLatin1String("--max-tokens")) { if (!parseInt(v, 1, &k) || k > 1 << 20) return fail(QStringLiteral("--max-tokens: positive integer")); o.params.max_tokens = int(k); }
    else if (f == QLatin1String("--context")) { if (!parseInt(v, 16, &k) || k > 1 << 22) return fail(QStringLiteral("--context: integer >= 16")); o.context = int(k); }
    else if (f == QLatin1String("--top-k")) { if (!parseInt(v, 0, &k) || k > 1 << 24) return fail(QStringLiteral("--top-k: integer >= 0")); o.params.top_k = int(k); }
    else if (f == QLatin1String("--seed")) { const qulonglong s = v.toULongLong(&ok); if (!ok) return fail(QStringLiteral("--seed: non-negative integer")); o.params.seed = s; }
    else if (f == QLatin1String("--temperature")) { const double t = v.toDouble(&ok); if (!ok || t < 0 || !std::isfinite(t)) return fail(QStringLiteral("--temperature: number >= 0")); o.params.temperature = float(t); }
    else if (f == QLatin1String("--top-p")) { const double p = v.toDouble(&ok); if (!ok || p <= 0 || p > 1) return fail(QStringLiteral("--top-p: number in (0, 1]")); o.params.top_p = float(p); }
    else if (f == QLatin1String("--device")) {
      if (v == QLatin1String("auto")) o.device = pixtral::Device::automatic;
      else if (v == QLatin1String("cpu")) o.device = pixtral::Device::cpu;
      else if (v == QLatin1String("cuda")) o.device = pixtral::Device::cuda;
      else return fail(QStringLiteral("--device must be auto, cpu or cuda"));
    } else if (f == QLatin1String("--precision")) {
      if (!pixtral::parse_precision(v.toStdString(), &o.precision))
        return fail(QStringLiteral("--precision must be auto, bf16, int8 or int4"));
      o.precisionGiven = true;
    } else return fail(QStringLiteral("unknown option %1").arg(f));
  }
  if (o.file.isEmpty() && (o.pageGiven || o.region)) return fail(QStringLiteral("--page and --region need a FILE"));
  *out = std::move(o);
  return true;
}

int runAsk(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  setHeadlessApplicationIdentity();

  QStringList args = QCoreApplication::arguments().mid(2);  // after "quire ask"
  if (args.size() == 1 && (args[0] == QLatin1String("--help") || args[0] == QLatin1String("-h"))) {
    std::fputs(kAskUsage, stdout);
    return 0;
  }
  AskOptions o;
  QString error;
  if (!parseAskArguments(args, &o, &error)) {
    printErr(error);
    std::fputs(kAskUsage, stderr);
    return kExitBadArguments;
  }
  const QString modelDir = resolveModelFolder(o.model, &error);
  if (modelDir.isEmpty()) {
    printErr(error);
    return kExitFailed;
  }
  Inputs inputs;
  if (const int rc = openInputs(o, &inputs)) return rc;

  InferenceThread thread;
  InferenceWorker* worker = thread.worker();
  std::FILE* stream = o.json ? stderr : stdout;
  AskRecorder recorder;
  ModelLoadInfo info;
  GenerationRequest request;
  request.conversationId = 1;

  QObject::connect(worker, &InferenceWorker::modelLoadFailed, &app, [&](const QString& m) {
    printErr(m);
    app.exit(kExitFailed);
  });
  QObject::connect(worker, &InferenceWorker::modelLoadCancelled, &app, [&] { app.exit(kExitFailed); });
  QObject::connect(worker, &InferenceWorker::modelLoaded, &app, [&](const ModelLoadInfo& i) {
    info = i;
    QList<InferencePart> parts;
    QList<Attachment> attachments;
    if (!renderParts(o, inputs, info.maxImageSize > 0 ? info.maxImageSize : 1024, &parts, &attachments)) {
      app.exit(kExitFailed);
      return;
    }
    if (o.systemGiven) request.messages << InferenceMessage{pixtral::Role::system, {InferencePart::fromText(o.system)}, {}};
    request.messages << InferenceMessage{pixtral::Role::user, parts, {}};
    request.params = o.params;
    const int defaultContext = pixtral::SessionOptions{}.context_length;
    request.contextLength = o.context > 0 ? o.context
                                          : (info.maxContext > 0 ? std::min(defaultContext, info.maxContext) : defaultContext);
    if (o.save) recorder.begin(o, attachments, QFileInfo(modelDir).fileName());
    if (info.onCpu() && !o.json) {
      QList<QSize> sizes;
      for (const InferencePart& p : parts)
        if (p.kind == InferencePart::Kind::Image) sizes << p.image.size();
      const int textTokens = int(o.question.toUtf8().size() / 4 + o.system.toUtf8().size() / 4) + 8;
      worker->requestEstimate(0, sizes, textTokens, std::min(o.params.max_tokens, 200));
    } else {
      worker->generate(request);
    }
  });
  QObject::connect(worker, &InferenceWorker::estimateReady, &app, [&](quint64, const TimeEstimate& e) {
    if (e.valid)
      std::fprintf(stderr, "quire: on %s this question takes %s (%s to the first word)\n",
                   info.device.toLocal8Bit().constData(), e.text.toLocal8Bit().constData(),
                   formatAbout(e.secondsToFirstToken).toLocal8Bit().constData());
    worker->generate(request);
  });
  QObject::connect(worker, &InferenceWorker::pieceArrived, &app, [&](qint64, quint64, const QString& text, int token) {
    const QByteArray utf8 = text.toUtf8();
    std::fwrite(utf8.constData(), 1, std::size_t(utf8.size()), stream);
    std::fflush(stream);
    if (o.save) recorder.piece(text, token);
  });
  QObject::connect(worker, &InferenceWorker::generationFailed, &app, [&](qint64, const GenerationFailure& f) {
    std::fputc('\n', stream);
    printErr(f.message);
    if (o.save) recorder.failed();
    app.exit(kExitFailed);
  });
  QObject::connect(worker, &InferenceWorker::generationFinished, &app, [&](qint64, const GenerationResult& r) {
    std::fputc('\n', stream);
    std::fflush(stream);
    if (o.save) recorder.finish(r);
    if (o.json) {
      std::printf("%s\n", pixtralJsonLine(r, info.loadSeconds * 1000.0, info.device, info.precision).c_str());
      std::fflush(stdout);
    }
    app.exit(0);
  });

  ModelLoadOptions lo = savedModelLoadOptions();
  lo.device = o.device;
  if (o.precisionGiven) lo.precision = o.precision;
  worker->loadModel(modelDir, lo);
  return app.exec();
}

}  // namespace quire
