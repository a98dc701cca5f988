// SPDX-License-Identifier: GPL-3.0-or-later
// Theme: light, dark or the system's look, applied to the whole application and remembered in QSettings.
// Qt 6.4 has no colour-scheme API, so "system" means the platform style's own palette; light and dark use
// Fusion with an explicit palette so they look the same on every desktop.
#pragma once

#include <QString>

namespace quire {

enum class Theme { System, Light, Dark };

/// Applies @p theme to the running QApplication (call from the GUI thread).
void applyTheme(Theme theme);
/// The theme saved in settings (System when none).
Theme savedTheme();
void saveTheme(Theme theme);

}  // namespace quire
