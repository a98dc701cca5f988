// SPDX-License-Identifier: GPL-3.0-or-later
// Model folder checks (see model_folder.h).
// ref: engine/src/io/checkpoint.cpp detect_and_parse (the same rules, so a folder that passes here loads unless
// a file's content is wrong)
#include "inference/model_folder.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QSettings>

namespace quire {

namespace {

const char* const kSettingsKey = "model/folder";
const char* const kPrecisionKey = "model/precision";

bool isFile(const QDir& d, const QString& name) { return QFileInfo(d.filePath(name)).isFile(); }

QString tr(const char* s) { return QCoreApplication::translate("quire::ModelFolder", s); }

}  // namespace

QString modelDownloadHint() {
  return tr("Download Pixtral-12B from the Hugging Face repository mistralai/Pixtral-12B-2409 "
            "(params.json, consolidated.safetensors and tekken.json, about 25 GB) into a folder of your choice, "
            "then choose that folder in Settings \u25b8 Model.");
}

ModelFolderCheck checkModelFolder(const QString& dirPath) {
  ModelFolderCheck c;
  const QFileInfo fi(dirPath);
  if (dirPath.isEmpty()) {
    c.message = tr("No model folder is set. ") + modelDownloadHint();
    return c;
  }
  if (!fi.exists()) {
    c.message = tr("The model folder %1 does not exist. ").arg(dirPath) + modelDownloadHint();
    return c;
  }
  if (!fi.isDir()) {
    c.message = tr("%1 is a file, not a folder: choose the folder that holds the model files.").arg(dirPath);
    return c;
  }
  const QDir d(dirPath);
  const bool params = isFile(d, QStringLiteral("params.json"));
  const bool config = isFile(d, QStringLiteral("config.json"));
  const bool native = !d.entryList({QStringLiteral("consolidated.safetensors"), QStringLiteral("consolidated-*.safetensors"),
                                    QStringLiteral("consolidated.*.safetensors")},
                                   QDir::Files)
                           .isEmpty();
  const bool hf = isFile(d, QStringLiteral("model.safetensors")) ||
                  isFile(d, QStringLiteral("model.safetensors.index.json"));
  const bool tekken = isFile(d, QStringLiteral("tekken.json"));

  if (params && native) {
    c.layout = QStringLiteral("mistral");
  } else if (config && hf) {
    c.layout = QStringLiteral("hf");
  } else if (params) {
    c.missing << QStringLiteral("consolidated.safetensors");
  } else if (config) {
    c.missing << QStringLiteral("model.safetensors");
  } else {
    c.missing << QStringLiteral("params.json") << QStringLiteral("consolidated.safetensors");
  }
  if (!tekken) c.missing << QStringLiteral("tekken.json");
  c.ok = c.missing.isEmpty();
  if (!c.ok) {
    c.message = tr("The folder %1 is missing %2. ").arg(QDir::toNativeSeparators(dirPath), c.missing.join(QStringLiteral(", ")));
    if (!tekken && !c.layout.isEmpty())
      c.message += tr("Download tekken.json from the Hugging Face repository mistralai/Pixtral-12B-2409 and put it "
                      "in this folder (tokenizer.json is not supported).");
    else
      c.message += modelDownloadHint();
  }
  return c;
}

QString savedModelFolder() { return QSettings().value(QLatin1String(kSettingsKey)).toString(); }

void saveModelFolder(const QString& dir) { QSettings().setValue(QLatin1String(kSettingsKey), dir); }

pixtral::Precision savedPrecision() {
  const QString v = QSettings().value(QLatin1String(kPrecisionKey)).toString();
  pixtral::Precision p = pixtral::Precision::automatic;
  if (!pixtral::parse_precision(v.toStdString(), &p)) p = pixtral::Precision::automatic;
  return p;
}

void savePrecision(pixtral::Precision precision) {
  QSettings().setValue(QLatin1String(kPrecisionKey), QString::fromLatin1(pixtral::precision_name(precision)));
}

ModelLoadOptions savedModelLoadOptions() {
  ModelLoadOptions o;
  o.precision = savedPrecision();
  return o;
}

}  // namespace quire
