// SPDX-License-Identifier: GPL-3.0-or-later
// The local API's bearer token and port, kept in QSettings ("server/token", "server/port"). The token is made once
// from the system CSPRNG (QRandomGenerator::system(): getrandom(2) on Linux), 256 bits, base64url, and shown by
// `quire serve` at start and in Settings ▸ Local API… (Copy, Regenerate). Needs the application and organisation
// names set (QSettings' default scope), like every other setting of the app.
#pragma once

#include <QByteArray>
#include <QString>

namespace quire {

constexpr quint16 kDefaultApiPort = 8642;

/// A fresh token: "quire-" + 43 base64url characters (32 random bytes).
QString generateApiToken();
/// The saved token; makes and saves one first when there is none.
QString apiToken();
/// Replaces the saved token with a fresh one and returns it (the old one stops working at the next start).
QString regenerateApiToken();
/// The port saved in the dialog (default kDefaultApiPort).
quint16 savedApiPort();
void saveApiPort(quint16 port);

/// Compares a presented token with the expected one in time independent of where they differ.
bool tokensEqual(const QByteArray& presented, const QByteArray& expected);

}  // namespace quire
