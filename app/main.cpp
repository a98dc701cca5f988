// SPDX-License-Identifier: GPL-3.0-or-later
// Quire's composition root, the only file that sees both ui/ and app/. Headless commands (--version, --help;
// later `ask` and `serve` in app/cli/) run before any QApplication exists, so they need no display.
// Everything else starts the GUI — or hands the files to a Quire already running for this user.
#include "chat/chat_startup.h"
#include "cli/ask.h"
#include "cli/command_line.h"
#include "cli/serve.h"
#include "inference/inference_thread.h"
#include "inference/model_folder.h"
#include "instance/single_instance.h"
#include "main_window.h"
#include "theme.h"

#include <QApplication>
#include <QStatusBar>

#include <cstring>

int main(int argc, char** argv) {
  // Headless `quire ask ...` (app/cli/ask.h): its own QCoreApplication, no display.
  if (argc > 1 && std::strcmp(argv[1], "ask") == 0) return quire::runAsk(argc, argv);
  // Headless `quire serve ...` (app/cli/serve.h): the local OpenAI-compatible API, no display.
  if (argc > 1 && std::strcmp(argv[1], "serve") == 0) return quire::runServe(argc, argv);
  const quire::CommandLine cl = quire::parseCommandLine(argc, argv);
  if (cl.mode != quire::CommandLine::Mode::Gui) return quire::runHeadless(cl);

  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("Quire"));
  QApplication::setOrganizationName(QStringLiteral("Quire"));
  QApplication::setApplicationVersion(QStringLiteral(QUIRE_VERSION));
  QApplication::setDesktopFileName(QStringLiteral("quire"));

  quire::SingleInstance instance;
  if (!cl.newInstance) {
    if (instance.sendToRunning(cl.files)) return 0;  // the running Quire opens them
    instance.listen();
  }

  quire::applyTheme(quire::savedTheme());
  // The chat: the inference worker thread, the history (AppDataLocation) and the controller between them
  // (ui/chat/chat_startup.h). What happened to the history (damaged and kept aside, not opened) stays said in the
  // chat panel until dismissed; a read-only history is said there for as long as it lasts.
  quire::InferenceThread inference;
  quire::ChatStartup chat(inference.worker());
  quire::MainWindow window;
  chat.attachTo(window);
  // A model that fails to load is said in the chat panel's lasting notice (ChatPanel), not the status bar.
  QObject::connect(inference.worker(), &quire::InferenceWorker::modelLoaded, &window,
                   [&window](const quire::ModelLoadInfo& i) {
                     window.statusBar()->showMessage(
                         QObject::tr("Model loaded: %1, %2").arg(i.device, i.precision), 8000);
                   });
  if (const QString dir = quire::savedModelFolder(); !dir.isEmpty() && quire::checkModelFolder(dir).ok)
    inference.worker()->loadModel(dir);
  QObject::connect(&instance, &quire::SingleInstance::filesReceived, &window, [&window](const QStringList& files) {
    window.openFiles(files);
    window.show();
    window.raise();
    window.activateWindow();
  });
  window.show();
  window.openFiles(cl.files);
  return app.exec();
}
