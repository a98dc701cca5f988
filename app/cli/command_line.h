// SPDX-License-Identifier: GPL-3.0-or-later
// CommandLine: parses quire's arguments before any QCoreApplication exists, so headless commands
// (--version, --help; later `quire ask`, `quire serve`) never need a display. New subcommands add a Mode and
// a branch in runHeadless().
#pragma once

#include <QString>
#include <QStringList>

namespace quire {

struct CommandLine {
  enum class Mode { Gui, Version, Help, Error };
  Mode mode = Mode::Gui;
  QStringList files;         ///< documents to open (GUI mode)
  bool newInstance = false;  ///< --new-instance: do not hand files to a running Quire
  QString error;             ///< for Mode::Error
};

/// Parses argv (argv[0] is the program). Never touches Qt application state.
CommandLine parseCommandLine(int argc, const char* const* argv);

/// Runs a headless mode (anything but Gui): prints to stdout/stderr, returns the exit status.
int runHeadless(const CommandLine& cl);

}  // namespace quire
