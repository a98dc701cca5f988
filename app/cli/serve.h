// SPDX-License-Identifier: GPL-3.0-or-later
// `quire serve`: the OpenAI-compatible local API (app/server/api_server.h), headless (QCoreApplication, no display).
//   quire serve [--model DIR] [--port N] [--device auto|cpu|cuda] [--context N] [--allow-local-files]
//               [--max-queue N]
// Loads the model (the folder of Settings ▸ Model unless --model), listens on 127.0.0.1 only, prints the base URL
// and the bearer token (QSettings "server/token", made once from the system CSPRNG; shown in Settings ▸ Local
// API…), serves until Ctrl+C (SIGINT) or SIGTERM, then stops the running generation and exits 0.
// Conversations served are not saved to the history.
// Exit codes: 0 stopped cleanly, 2 bad arguments, 3 model error or port in use.
#pragma once

#include <pixtral/model.h>

#include <QString>
#include <QStringList>

namespace quire {

struct ServeOptions {
  QString model;  ///< empty: the folder saved in Settings ▸ Model
  quint16 port = 0;  ///< 0: the saved port (default 8642)
  bool portGiven = false;
  pixtral::Device device = pixtral::Device::automatic;
  int context = 0;  ///< 0: the engine's default, capped at the model's maximum
  bool allowLocalFiles = false;
  int maxQueue = 8;
};

/// Parses the arguments after `serve`. False with *error for bad arguments (exit code 2).
bool parseServeArguments(const QStringList& args, ServeOptions* out, QString* error);

/// The usage text of `quire serve`.
const char* serveUsage();

/// Runs `quire serve` (argv[1] == "serve"): creates a QCoreApplication, serves until a signal, returns the exit code.
int runServe(int argc, char** argv);

}  // namespace quire
