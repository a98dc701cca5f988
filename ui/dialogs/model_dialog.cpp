// SPDX-License-Identifier: GPL-3.0-or-later
// ModelDialog: see model_dialog.h.
#include "dialogs/model_dialog.h"

#include "inference/model_folder.h"

#include <QDialogButtonBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QVBoxLayout>

namespace quire {

ModelDialog::ModelDialog(QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Settings ▸ Model"));
  auto* layout = new QVBoxLayout(this);
  auto* intro = new QLabel(modelDownloadHint(), this);
  intro->setWordWrap(true);
  intro->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(intro);
  auto* row = new QHBoxLayout;
  m_path = new QLineEdit(this);
  m_path->setAccessibleName(tr("Model folder"));
  m_path->setPlaceholderText(tr("Folder with params.json + consolidated.safetensors, or config.json + model*.safetensors"));
  auto* browse = new QPushButton(tr("Browse…"), this);
  browse->setAccessibleName(tr("Choose the model folder"));
  row->addWidget(m_path, 1);
  row->addWidget(browse);
  layout->addLayout(row);
  m_status = new QLabel(this);
  m_status->setWordWrap(true);
  m_status->setAccessibleName(tr("Model folder check"));
  layout->addWidget(m_status);
  m_buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  m_buttons->button(QDialogButtonBox::Ok)->setAccessibleName(tr("Use this model"));
  m_buttons->button(QDialogButtonBox::Cancel)->setAccessibleName(tr("Cancel"));
  layout->addWidget(m_buttons);
  connect(m_buttons, &QDialogButtonBox::accepted, this, &ModelDialog::accept);
  connect(m_buttons, &QDialogButtonBox::rejected, this, &ModelDialog::reject);
  connect(m_path, &QLineEdit::textChanged, this, &ModelDialog::validate);
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Model folder"), folder());
    if (!dir.isEmpty()) setFolder(dir);
  });
  setFolder(savedModelFolder());
  validate();
}

QString ModelDialog::folder() const { return m_path->text().trimmed(); }

void ModelDialog::setFolder(const QString& dir) { m_path->setText(dir); }

void ModelDialog::validate() {
  if (folder().isEmpty()) {
    m_valid = false;
    m_status->setText(tr("Choose the folder that holds Pixtral-12B-2409."));
  } else {
    const ModelFolderCheck check = checkModelFolder(folder());
    m_valid = check.ok;
    m_status->setText(check.ok ? tr("Found a model in the %1 layout.")
                                     .arg(check.layout == QLatin1String("hf") ? tr("Hugging Face") : tr("Mistral native"))
                               : check.message);
  }
  m_buttons->button(QDialogButtonBox::Ok)->setEnabled(m_valid);
}

void ModelDialog::accept() {
  validate();
  if (!m_valid) return;
  saveModelFolder(folder());
  QDialog::accept();
}

}  // namespace quire
