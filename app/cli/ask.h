// SPDX-License-Identifier: GPL-3.0-or-later
// `quire ask`: one question about a document page, a region, or images, answered headless (no display, no
// QApplication) through the same code paths as the GUI: DocumentLoader / Poppler rendering for the images, the
// InferenceWorker for the model, the ConversationStore for the history.
//   quire ask [--model DIR] [FILE [--page N] [--region x,y,w,h]] [--image FILE]... [--system TEXT]
//             [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--context N]
//             [--device auto|cpu|cuda] [--precision auto|bf16|int8|int4] [--no-save] [--json] "question"
// Exit codes: 0 answered, 2 bad arguments, 3 model, document or generation error.
// With --json the output follows `pixtral generate --json` (engine/tools/pixtral.cpp cmd_generate): streamed
// text on stderr, one ASCII-only JSON line on stdout.
#pragma once

#include <pixtral/model.h>
#include <pixtral/session.h>

#include <QRectF>
#include <QString>
#include <QStringList>

#include <optional>

namespace quire {

struct AskOptions {
  QString model;           ///< empty: the folder saved in Settings ▸ Model
  QString file;            ///< a PDF or an image; empty: none
  int page = 1;            ///< 1-based
  bool pageGiven = false;
  std::optional<QRectF> region;  ///< normalised 0–1, origin top-left
  QStringList images;      ///< --image files, in order
  QString system;
  bool systemGiven = false;
  pixtral::GenerateParams params;
  int context = 0;         ///< 0: the engine's default, capped at the model's maximum
  pixtral::Device device = pixtral::Device::automatic;
  /// Decoder weight storage; when not given, the Settings ▸ Model choice (savedPrecision(), automatic by default).
  pixtral::Precision precision = pixtral::Precision::automatic;
  bool precisionGiven = false;
  bool save = true;
  bool json = false;
  QString question;
};

/// Parses the arguments after `ask`. Returns false and sets *error for bad arguments (exit code 2).
bool parseAskArguments(const QStringList& args, AskOptions* out, QString* error);

/// The usage text of `quire ask`.
const char* askUsage();

/// Runs `quire ask` (argv[1] == "ask"): creates a QCoreApplication, answers, returns the exit code.
int runAsk(int argc, char** argv);

}  // namespace quire
