// SPDX-License-Identifier: GPL-3.0-or-later
// ServerSettingsDialog (Settings ▸ Local API…): what a program on this computer needs to use `quire serve` — the
// address (port, saved), the bearer token with Copy and Regenerate, and how to start the server. The token is made
// once from the system CSPRNG and kept in QSettings (app/server/api_token.h); a running server keeps the token
// it started with until it is restarted.
#pragma once

#include <QDialog>

class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;

namespace quire {

class ServerSettingsDialog : public QDialog {
  Q_OBJECT

 public:
  explicit ServerSettingsDialog(QWidget* parent = nullptr);

  QLineEdit* tokenField() const { return m_token; }
  QPushButton* copyButton() const { return m_copy; }
  QPushButton* regenerateButton() const { return m_regenerate; }
  QSpinBox* portField() const { return m_port; }
  QString baseUrl() const;

 private:
  void updateUrl();

  QSpinBox* m_port;
  QLineEdit* m_url;
  QLineEdit* m_token;
  QPushButton* m_copy;
  QPushButton* m_regenerate;
  QLabel* m_copied;
};

}  // namespace quire
