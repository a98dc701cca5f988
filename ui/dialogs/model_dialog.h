// SPDX-License-Identifier: GPL-3.0-or-later
// ModelDialog (Settings ▸ Model): points Quire at a model folder (Mistral native or Hugging Face layout),
// validates it as the path is typed or chosen (the message names what is missing) and, when accepted,
// remembers it (saveModelFolder) — the caller then loads it.
#pragma once

#include <QDialog>

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

  void accept() override;

 private:
  void validate();

  QLineEdit* m_path;
  QLabel* m_status;
  QDialogButtonBox* m_buttons;
  bool m_valid = false;
};

}  // namespace quire
