// SPDX-License-Identifier: GPL-3.0-or-later
// ModelDialog: see model_dialog.h.
#include "dialogs/model_dialog.h"

#include "inference/model_folder.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFormLayout>
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
  m_precision = new QComboBox(this);
  m_precision->setAccessibleName(tr("Precision"));
  // Item data: pixtral::precision_name (what savePrecision stores).
  m_precision->addItem(tr("Automatic — fit the GPU's memory (recommended)"), QStringLiteral("auto"));
  m_precision->addItem(tr("bf16 — full precision (about 25 GB of GPU memory)"), QStringLiteral("bf16"));
  m_precision->addItem(tr("int8 — near-lossless (about 14 GB)"), QStringLiteral("int8"));
  m_precision->addItem(tr("int4 — smallest (about 9 GB)"), QStringLiteral("int4"));
  m_precision->setToolTip(tr("How the language model's weights are kept on the GPU. Automatic uses bf16 when it "
                             "fits with a 16k-token context, else int8, else int4. On the CPU, automatic is bf16."));
  auto* form = new QFormLayout;
  form->addRow(tr("Precision:"), m_precision);
  layout->addLayout(form);
  setPrecision(savedPrecision());
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

pixtral::Precision ModelDialog::precision() const {
  pixtral::Precision p = pixtral::Precision::automatic;
  pixtral::parse_precision(m_precision->currentData().toString().toStdString(), &p);
  return p;
}

void ModelDialog::setPrecision(pixtral::Precision p) {
  const int i = m_precision->findData(QString::fromLatin1(pixtral::precision_name(p)));
  m_precision->setCurrentIndex(i < 0 ? 0 : i);
}

void ModelDialog::accept() {
  validate();
  if (!m_valid) return;
  saveModelFolder(folder());
  savePrecision(precision());
  QDialog::accept();
}

}  // namespace quire
