// SPDX-License-Identifier: GPL-3.0-or-later
// The local API's token and port settings (see api_token.h).
#include "server/api_token.h"

#include <QRandomGenerator>
#include <QSettings>

#include <array>

namespace quire {

namespace {
const char* const kTokenKey = "server/token";
const char* const kPortKey = "server/port";
}  // namespace

QString generateApiToken() {
  std::array<quint32, 8> words{};
  QRandomGenerator::system()->fillRange(words.data(), words.size());
  const QByteArray raw(reinterpret_cast<const char*>(words.data()), qsizetype(sizeof(words)));
  return QStringLiteral("quire-") +
         QString::fromLatin1(raw.toBase64(QByteArray::Base64UrlEncoding | QByteArray::OmitTrailingEquals));
}

QString apiToken() {
  QSettings s;
  QString t = s.value(QLatin1String(kTokenKey)).toString();
  if (t.size() < 16) {  // none yet (or hand-edited to something guessable): make one
    t = generateApiToken();
    s.setValue(QLatin1String(kTokenKey), t);
    s.sync();
  }
  return t;
}

QString regenerateApiToken() {
  QSettings s;
  const QString t = generateApiToken();
  s.setValue(QLatin1String(kTokenKey), t);
  s.sync();
  return t;
}

quint16 savedApiPort() {
  bool ok = false;
  const int p = QSettings().value(QLatin1String(kPortKey), kDefaultApiPort).toInt(&ok);
  return ok && p > 0 && p < 65536 ? quint16(p) : kDefaultApiPort;
}

void saveApiPort(quint16 port) { QSettings().setValue(QLatin1String(kPortKey), int(port)); }

bool tokensEqual(const QByteArray& presented, const QByteArray& expected) {
  // Length is not secret (every token has the same length); the contents are compared without early exit.
  if (presented.size() != expected.size() || expected.isEmpty()) return false;
  unsigned char diff = 0;
  for (qsizetype i = 0; i < expected.size(); ++i) diff |= static_cast<unsigned char>(presented[i] ^ expected[i]);
  return diff == 0;
}

}  // namespace quire
