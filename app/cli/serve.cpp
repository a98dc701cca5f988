// SPDX-License-Identifier: GPL-3.0-or-later
// `quire serve` (see serve.h). Order: arguments → model folder check → model loaded on the InferenceWorker →
// ApiServer listening → URL and token printed → serve until SIGINT/SIGTERM (a self-pipe read by a
// QSocketNotifier, so the handler itself only writes one byte) → running generation stopped → exit.
// ref: app/cli/ask.cpp (model folder, device and context handling)
#include "cli/serve.h"

#include "cli/headless.h"
#include "inference/inference_thread.h"
#include "inference/model_folder.h"
#include "server/api_server.h"
#include "server/api_token.h"

#include <QCoreApplication>
#include <QFileInfo>
#include <QSocketNotifier>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <sys/socket.h>
#include <unistd.h>

namespace quire {

namespace {

const char* const kServeUsage =
    "Usage: quire serve [--model DIR] [--port N] [--device auto|cpu|cuda] [--context N] [--allow-local-files]\n"
    "                   [--max-queue N]\n"
    "Serves the model as an OpenAI-compatible API on http://127.0.0.1:PORT/v1 (GET /v1/models,\n"
    "POST /v1/chat/completions, streaming or not, images as data: URLs in image_url parts).\n"
    "Only this machine can connect; every request needs `Authorization: Bearer TOKEN` (printed at start, also in\n"
    "Settings > Local API...); requests from web pages (an Origin header) are refused.\n"
    "One answer at a time; others wait in a queue. Conversations served are NOT saved to the history.\n"
    "  --model DIR          the model folder (default: the one chosen in Settings > Model)\n"
    "  --port N             TCP port (default: Settings > Local API..., else 8642)\n"
    "  --device D           auto (default), cpu or cuda\n"
    "  --context N          context length in tokens (default: the engine's, capped at the model's)\n"
    "  --allow-local-files  also accept file:// URLs and absolute paths as images (off by default)\n"
    "  --max-queue N        requests that may wait behind the running one (default 8; more get 429)\n"
    "Ctrl+C stops. Exit codes: 0 stopped, 2 bad arguments, 3 model error or port in use.\n";

constexpr int kExitBadArguments = 2;
constexpr int kExitFailed = 3;

int g_signalPipe[2] = {-1, -1};

void onSignal(int) {
  const char b = 1;
  [[maybe_unused]] const ssize_t n = ::write(g_signalPipe[0], &b, 1);
}

void printErr(const QString& s) { std::fprintf(stderr, "quire serve: %s\n", s.toLocal8Bit().constData()); }

}  // namespace

const char* serveUsage() { return kServeUsage; }

bool parseServeArguments(const QStringList& args, ServeOptions* out, QString* error) {
  ServeOptions o;
  auto fail = [error](const QString& e) {
    *error = e;
    return false;
  };
  for (int i = 0; i < args.size(); ++i) {
    const QString f = args[i];
    if (f == QLatin1String("--allow-local-files")) { o.allowLocalFiles = true; continue; }
    if (!f.startsWith(QLatin1String("--"))) return fail(QStringLiteral("unexpected argument %1").arg(f));
    if (i + 1 >= args.size()) return fail(QStringLiteral("%1 needs a value (or is unknown)").arg(f));
    const QString v = args[++i];
    bool ok = false;
    if (f == QLatin1String("--model")) o.model = v;
    else if (f == QLatin1String("--port")) {
      const int p = v.toInt(&ok);
      if (!ok || p < 1 || p > 65535) return fail(QStringLiteral("--port: integer in 1-65535"));
      o.port = quint16(p);
      o.portGiven = true;
    } else if (f == QLatin1String("--context")) {
      const int c = v.toInt(&ok);
      if (!ok || c < 16 || c > (1 << 22)) return fail(QStringLiteral("--context: integer >= 16"));
      o.context = c;
    } else if (f == QLatin1String("--max-queue")) {
      const int q = v.toInt(&ok);
      if (!ok || q < 0 || q > 1000) return fail(QStringLiteral("--max-queue: integer in 0-1000"));
      o.maxQueue = q;
    } else if (f == QLatin1String("--device")) {
      if (v == QLatin1String("auto")) o.device = pixtral::Device::automatic;
      else if (v == QLatin1String("cpu")) o.device = pixtral::Device::cpu;
      else if (v == QLatin1String("cuda")) o.device = pixtral::Device::cuda;
      else return fail(QStringLiteral("--device must be auto, cpu or cuda"));
    } else {
      return fail(QStringLiteral("unknown option %1").arg(f));
    }
  }
  *out = std::move(o);
  return true;
}

int runServe(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  setHeadlessApplicationIdentity();

  const QStringList args = QCoreApplication::arguments().mid(2);  // after "quire serve"
  if (args.size() == 1 && (args[0] == QLatin1String("--help") || args[0] == QLatin1String("-h"))) {
    std::fputs(kServeUsage, stdout);
    return 0;
  }
  ServeOptions o;
  QString error;
  if (!parseServeArguments(args, &o, &error)) {
    printErr(error);
    std::fputs(kServeUsage, stderr);
    return kExitBadArguments;
  }
  const QString modelDir = resolveModelFolder(o.model, &error);
  if (modelDir.isEmpty()) {
    printErr(error);
    return kExitFailed;
  }

  // Ctrl+C / SIGTERM → one byte on the pipe → quit the event loop (nothing else runs in the handler).
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, g_signalPipe) != 0) {
    printErr(QStringLiteral("socketpair failed"));
    return kExitFailed;
  }
  QSocketNotifier signalNotifier(g_signalPipe[1], QSocketNotifier::Read);
  QObject::connect(&signalNotifier, &QSocketNotifier::activated, &app, [&] {
    char b = 0;
    [[maybe_unused]] const ssize_t n = ::read(g_signalPipe[1], &b, 1);
    std::fputs("quire serve: stopping\n", stderr);
    app.exit(0);
  });
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  InferenceThread thread;
  InferenceWorker* worker = thread.worker();
  std::unique_ptr<ApiServer> server;

  QObject::connect(worker, &InferenceWorker::modelLoadFailed, &app, [&](const QString& m) {
    printErr(m);
    app.exit(kExitFailed);
  });
  QObject::connect(worker, &InferenceWorker::modelLoadCancelled, &app, [&] { app.exit(kExitFailed); });
  QObject::connect(worker, &InferenceWorker::modelLoaded, &app, [&](const ModelLoadInfo& info) {
    ApiServerOptions so;
    so.token = apiToken();
    so.port = o.portGiven ? o.port : savedApiPort();
    so.modelId = QFileInfo(modelDir).fileName();
    const int defaultContext = pixtral::SessionOptions{}.context_length;
    so.contextLength = o.context > 0 ? o.context
                                     : (info.maxContext > 0 ? std::min(defaultContext, info.maxContext) : defaultContext);
    so.allowLocalFiles = o.allowLocalFiles;
    so.maxQueue = o.maxQueue;
    server = std::make_unique<ApiServer>(worker, so);
    QString why;
    if (!server->start(&why)) {
      printErr(why);
      app.exit(kExitFailed);
      return;
    }
    std::fprintf(stderr, "quire serve: model %s on %s (%s), context %d tokens\n",
                 so.modelId.toLocal8Bit().constData(), info.device.toLocal8Bit().constData(),
                 info.precision.toLocal8Bit().constData(), so.contextLength);
    if (o.allowLocalFiles) std::fputs("quire serve: local file images are allowed (--allow-local-files)\n", stderr);
    std::printf("URL:   %s\nToken: %s\n", server->baseUrl().toLocal8Bit().constData(), so.token.toLocal8Bit().constData());
    std::fputs("Conversations are not saved. Ctrl+C stops.\n", stdout);
    std::fflush(stdout);
  });

  ModelLoadOptions lo = savedModelLoadOptions();  // the precision chosen in Settings ▸ Model, as `quire ask`
  lo.device = o.device;
  worker->loadModel(modelDir, lo);
  const int rc = app.exec();
  server.reset();  // stops a running generation; then ~InferenceThread joins the worker
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return rc;
}

}  // namespace quire
