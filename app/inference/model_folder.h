// SPDX-License-Identifier: GPL-3.0-or-later
// Model folder checks for Settings ▸ Model and `quire ask`: is this folder a Pixtral checkpoint the engine can
// load (Mistral native: params.json + consolidated*.safetensors + tekken.json; Hugging Face: config.json +
// model.safetensors[.index.json] + tekken.json)? A quick look at file names only — the engine checks every
// tensor on load. Mirrors the engine's detection (engine/src/io/checkpoint.cpp detect_and_parse).
// Also where the folder is remembered (QSettings key "model/folder").
#pragma once

#include <QString>
#include <QStringList>

namespace quire {

struct ModelFolderCheck {
  bool ok = false;
  QString layout;       ///< "mistral" or "hf" when ok
  QStringList missing;  ///< file names that are missing ("tekken.json", "consolidated.safetensors", ...)
  QString message;      ///< one paragraph for the user: what is missing and where to get it; empty when ok
};

/// Checks @p dir by file names. Thread-safe.
ModelFolderCheck checkModelFolder(const QString& dir);

/// The user-facing explanation of where to get the model (first run without a model).
QString modelDownloadHint();

/// The model folder remembered in QSettings (empty when none). Needs the application/organisation names set.
QString savedModelFolder();
void saveModelFolder(const QString& dir);

}  // namespace quire
