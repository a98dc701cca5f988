// SPDX-License-Identifier: GPL-3.0-or-later
// SamplingDialog: the current conversation's sampling settings — temperature, top-p, top-k, the longest answer
// and the seed — starting from the conversation's values; "Engine Defaults" puts back pixtral::GenerateParams'
// defaults. The chat panel applies the accepted values with ChatController::setGenerateParams (kept with the
// conversation).
#pragma once

#include <pixtral/session.h>

#include <QDialog>

class QDoubleSpinBox;
class QSpinBox;

namespace quire {

class SamplingDialog : public QDialog {
  Q_OBJECT

 public:
  explicit SamplingDialog(const pixtral::GenerateParams& params, QWidget* parent = nullptr);

  pixtral::GenerateParams params() const;
  void setParams(const pixtral::GenerateParams& params);

  QDoubleSpinBox* temperatureBox() const { return m_temperature; }
  QDoubleSpinBox* topPBox() const { return m_topP; }
  QSpinBox* topKBox() const { return m_topK; }
  QSpinBox* maxTokensBox() const { return m_maxTokens; }
  QSpinBox* seedBox() const { return m_seed; }

 private:
  QDoubleSpinBox* m_temperature;
  QDoubleSpinBox* m_topP;
  QSpinBox* m_topK;
  QSpinBox* m_maxTokens;
  QSpinBox* m_seed;
  std::uint64_t m_bigSeed = 0;  ///< a seed beyond the box's range, kept while the box shows its cap
};

}  // namespace quire
