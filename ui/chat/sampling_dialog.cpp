// SPDX-License-Identifier: GPL-3.0-or-later
// SamplingDialog: see sampling_dialog.h.
#include "chat/sampling_dialog.h"

#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QPushButton>
#include <QSpinBox>

#include <algorithm>
#include <limits>

namespace quire {

SamplingDialog::SamplingDialog(const pixtral::GenerateParams& params, QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Sampling Settings"));
  setAccessibleName(tr("Sampling settings of this conversation"));
  auto* form = new QFormLayout(this);
  m_temperature = new QDoubleSpinBox(this);
  m_temperature->setRange(0.0, 2.0);
  m_temperature->setSingleStep(0.05);
  m_temperature->setDecimals(2);
  m_temperature->setSpecialValueText(tr("0 (greedy)"));
  m_temperature->setAccessibleName(tr("Temperature"));
  m_topP = new QDoubleSpinBox(this);
  m_topP->setRange(0.01, 1.0);
  m_topP->setSingleStep(0.05);
  m_topP->setDecimals(2);
  m_topP->setAccessibleName(tr("Top-p (nucleus mass; 1 is off)"));
  m_topK = new QSpinBox(this);
  m_topK->setRange(0, 1 << 20);
  m_topK->setSpecialValueText(tr("off"));
  m_topK->setAccessibleName(tr("Top-k (0 is off)"));
  m_maxTokens = new QSpinBox(this);
  m_maxTokens->setRange(1, 1 << 20);
  m_maxTokens->setAccessibleName(tr("Longest answer in tokens"));
  m_seed = new QSpinBox(this);
  m_seed->setRange(0, std::numeric_limits<int>::max());
  m_seed->setAccessibleName(tr("Seed"));
  form->addRow(tr("&Temperature:"), m_temperature);
  form->addRow(tr("Top-&p:"), m_topP);
  form->addRow(tr("Top-&k:"), m_topK);
  form->addRow(tr("&Longest answer (tokens):"), m_maxTokens);
  form->addRow(tr("&Seed:"), m_seed);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  QPushButton* defaults = buttons->addButton(tr("Engine &Defaults"), QDialogButtonBox::ResetRole);
  defaults->setObjectName(QStringLiteral("samplingDefaults"));
  defaults->setAccessibleName(tr("Put back the engine's default sampling"));
  buttons->button(QDialogButtonBox::Ok)->setAccessibleName(tr("Apply the sampling settings"));
  buttons->button(QDialogButtonBox::Cancel)->setAccessibleName(tr("Keep the sampling settings as they were"));
  connect(defaults, &QPushButton::clicked, this, [this] { setParams(pixtral::GenerateParams{}); });
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  form->addRow(buttons);
  setParams(params);
}

void SamplingDialog::setParams(const pixtral::GenerateParams& p) {
  m_temperature->setValue(p.temperature);
  m_topP->setValue(p.top_p);
  m_topK->setValue(p.top_k);
  m_maxTokens->setValue(p.max_tokens);
  const auto cap = std::uint64_t(std::numeric_limits<int>::max());
  m_bigSeed = p.seed > cap ? p.seed : 0;
  m_seed->setValue(int(std::min(p.seed, cap)));
}

pixtral::GenerateParams SamplingDialog::params() const {
  pixtral::GenerateParams p;
  p.temperature = float(m_temperature->value());
  p.top_p = float(m_topP->value());
  p.top_k = m_topK->value();
  p.max_tokens = m_maxTokens->value();
  p.seed = std::uint64_t(m_seed->value());
  if (m_bigSeed && m_seed->value() == m_seed->maximum()) p.seed = m_bigSeed;  // untouched: not cut to the cap
  return p;
}

}  // namespace quire
