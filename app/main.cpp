// SPDX-License-Identifier: GPL-3.0-or-later
// Quire's composition root: headless commands (--version, ask, serve) run without a display (no QApplication);
// everything else starts the GUI.
#include <QApplication>
#include <QCoreApplication>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("quire %s\n", QUIRE_VERSION);
      return 0;
    }
  }
  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("Quire"));
  return 0;
}
