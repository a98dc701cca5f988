// SPDX-License-Identifier: GPL-3.0-or-later
// CommandLine (see command_line.h).
#include "cli/command_line.h"

#include <cstdio>

namespace quire {

namespace {

const char* const kUsage =
    "Usage: quire [OPTIONS] [FILES...]\n"
    "Ask questions about documents and images with Pixtral-12B, on your own GPU.\n\n"
    "  FILES           PDFs or images to open (handed to a running Quire if there is one)\n"
    "  --new-instance  start a new window even if Quire is already running\n"
    "  --version       print the version and exit\n"
    "  -h, --help      print this help and exit\n";

}  // namespace

CommandLine parseCommandLine(int argc, const char* const* argv) {
  CommandLine cl;
  bool onlyFiles = false;
  for (int i = 1; i < argc; ++i) {
    const QString arg = QString::fromLocal8Bit(argv[i]);
    if (!onlyFiles && arg == QLatin1String("--")) {
      onlyFiles = true;
    } else if (!onlyFiles && (arg == QLatin1String("--version") || arg == QLatin1String("-v"))) {
      cl.mode = CommandLine::Mode::Version;
      return cl;
    } else if (!onlyFiles && (arg == QLatin1String("--help") || arg == QLatin1String("-h"))) {
      cl.mode = CommandLine::Mode::Help;
      return cl;
    } else if (!onlyFiles && arg == QLatin1String("--new-instance")) {
      cl.newInstance = true;
    } else if (!onlyFiles && arg.startsWith(QLatin1Char('-')) && arg.size() > 1) {
      // Qt's own options (-platform, -style, ...) pass through to QApplication.
      if (arg == QLatin1String("-platform") || arg == QLatin1String("-style") || arg == QLatin1String("-display")) {
        ++i;
        continue;
      }
      if (arg.startsWith(QLatin1String("--"))) {
        cl.mode = CommandLine::Mode::Error;
        cl.error = QStringLiteral("unknown option: %1").arg(arg);
        return cl;
      }
    } else {
      cl.files << arg;
    }
  }
  return cl;
}

int runHeadless(const CommandLine& cl) {
  switch (cl.mode) {
    case CommandLine::Mode::Version: std::printf("quire %s\n", QUIRE_VERSION); return 0;
    case CommandLine::Mode::Help: std::fputs(kUsage, stdout); return 0;
    case CommandLine::Mode::Error:
      std::fprintf(stderr, "quire: %s\n%s", qPrintable(cl.error), kUsage);
      return 2;
    case CommandLine::Mode::Gui: break;
  }
  return 0;
}

}  // namespace quire
