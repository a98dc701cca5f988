// SPDX-License-Identifier: GPL-3.0-or-later
// Model folder checks for Settings ▸ Model and `quire ask`: is this folder a Pixtral checkpoint the engine can
// load (Mistral native: params.json + consolidated*.safetensors + tekken.json; Hugging Face: config.json +
// model.safetensors[.index.json] + tekken.json)? A quick look at file names only — the engine checks every
// tensor on load. Mirrors the engine's detection (engine/src/io/checkpoint.cpp detect_and_parse).
// Also where the folder and the load options are remembered (QSettings keys "model/folder", "model/precision").
#pragma once

#include "inference/inference_types.h"

#include <pixtral/model.h>

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

/// The decoder precision chosen in Settings ▸ Model (automatic when none or unknown is saved).
pixtral::Precision savedPrecision();
void savePrecision(pixtral::Precision precision);

/// How the app loads the model: the saved Settings ▸ Model choices (precision), the rest at their defaults.
ModelLoadOptions savedModelLoadOptions();

}  // namespace quire
