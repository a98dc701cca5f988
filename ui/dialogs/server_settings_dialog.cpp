// SPDX-License-Identifier: GPL-3.0-or-later
// ServerSettingsDialog (see server_settings_dialog.h).
#include "dialogs/server_settings_dialog.h"

#include "server/api_token.h"

#include <QApplication>
#include <QClipboard>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

namespace quire {

ServerSettingsDialog::ServerSettingsDialog(QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Local API"));
  auto* intro = new QLabel(tr("Programs on this computer can ask Quire's model through an OpenAI-compatible API. "
                              "Start it in a terminal with <code>quire serve</code>. Only this computer can "
                              "connect, web pages are refused, and every request needs the token below. "
                              "Conversations served are not saved to the history."),
                           this);
  intro->setWordWrap(true);
  intro->setTextFormat(Qt::RichText);

  m_port = new QSpinBox(this);
  m_port->setRange(1024, 65535);
  m_port->setValue(savedApiPort());
  m_port->setAccessibleName(tr("Port"));
  m_url = new QLineEdit(this);
  m_url->setReadOnly(true);
  m_url->setAccessibleName(tr("Base URL"));

  m_token = new QLineEdit(apiToken(), this);
  m_token->setReadOnly(true);
  m_token->setAccessibleName(tr("Bearer token"));
  m_copy = new QPushButton(tr("&Copy"), this);
  m_copy->setAccessibleName(tr("Copy the token"));
  m_regenerate = new QPushButton(tr("&Regenerate"), this);
  m_regenerate->setAccessibleName(tr("Regenerate the token"));
  m_copied = new QLabel(this);
  auto* tokenRow = new QHBoxLayout;
  tokenRow->addWidget(m_token, 1);
  tokenRow->addWidget(m_copy);
  tokenRow->addWidget(m_regenerate);

  auto* form = new QFormLayout;
  form->addRow(tr("&Port:"), m_port);
  form->addRow(tr("Base URL:"), m_url);
  form->addRow(tr("&Token:"), tokenRow);
  form->addRow(QString(), m_copied);

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);

  auto* layout = new QVBoxLayout(this);
  layout->addWidget(intro);
  layout->addLayout(form);
  layout->addWidget(buttons);

  connect(m_port, &QSpinBox::valueChanged, this, [this](int p) {
    saveApiPort(quint16(p));
    updateUrl();
  });
  connect(m_copy, &QPushButton::clicked, this, [this] {
    QApplication::clipboard()->setText(m_token->text());
    m_copied->setText(tr("Copied."));
  });
  connect(m_regenerate, &QPushButton::clicked, this, [this] {
    m_token->setText(regenerateApiToken());
    m_copied->setText(tr("New token saved. A running `quire serve` keeps the old one until it is restarted."));
  });
  updateUrl();
}

QString ServerSettingsDialog::baseUrl() const { return QStringLiteral("http://127.0.0.1:%1/v1").arg(m_port->value()); }

void ServerSettingsDialog::updateUrl() { m_url->setText(baseUrl()); }

}  // namespace quire
