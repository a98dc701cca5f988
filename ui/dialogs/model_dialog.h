// SPDX-License-Identifier: GPL-3.0-or-later
// ModelDialog (Settings ▸ Model): points Quire at a model folder (Mistral native or Hugging Face layout),
// validates it as the path is typed or chosen (the message names what is missing), offers the decoder precision
// (automatic by default: the engine's memory planner picks bf16, int8 or int4 for the GPU) and, when accepted,
// remembers both (saveModelFolder, savePrecision) — the caller then loads the model with them.
#pragma once

#include <pixtral/model.h>

#include <QDialog>

class QComboBox;
class QDialogButtonBox;
class QLabel;
class QLineEdit;

namespace quire {

class ModelDialog : public QDialog {
  Q_OBJECT

 public:
  explicit ModelDialog(QWidget* parent = nullptr);
  QString folder() const;
  void setFolder(const QString& dir);
  /// True when the folder holds a loadable layout (OK is enabled only then).
  bool isValid() const { return m_valid; }
  QLabel* statusLabel() const { return m_status; }
  /// The precision chosen (initially the saved one).
  pixtral::Precision precision() const;
  void setPrecision(pixtral::Precision p);
  QComboBox* precisionBox() const { return m_precision; }

  void accept() override;

 private:
  void validate();

  QLineEdit* m_path;
  QLabel* m_status;
  QComboBox* m_precision;
  QDialogButtonBox* m_buttons;
  bool m_valid = false;
};

}  // namespace quire
