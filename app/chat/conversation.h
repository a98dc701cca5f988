// SPDX-License-Identifier: GPL-3.0-or-later
// Conversation: one chat — its title, per-conversation system prompt and sampling settings, and which leaf of
// its message tree is active (the branch the user is looking at). Plain data: no widgets, no I/O.
#pragma once

#include <QDateTime>
#include <QJsonObject>
#include <QString>

namespace quire {

struct Conversation {
  qint64 id = 0;
  QString title;
  QDateTime created;  ///< UTC, millisecond precision
  QDateTime updated;  ///< last change (new message, rename); the list is sorted by it
  QString systemPrompt;
  QJsonObject sampling;  ///< overrides of the engine's defaults: temperature, top_p, top_k, seed, max_tokens
  QString model;
  bool pinned = false;
  bool deleted = false;     ///< soft-deleted: hidden from the list until undone or purged
  qint64 activeLeafId = 0;  ///< last message of the active branch; 0 while empty
};

}  // namespace quire
