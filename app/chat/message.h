// SPDX-License-Identifier: GPL-3.0-or-later
// Message: one node of a conversation's message tree. parentId links a message to the one it answers or
// follows; regenerate and edit add a sibling, so earlier versions are kept and browsable.
// tokenIds is the engine's exact record of the message (an answer is never re-tokenized from its text).
// Plain data: no widgets, no I/O.
#pragma once

#include "chat/attachment.h"

#include <QDateTime>
#include <QJsonObject>
#include <QList>
#include <QString>

#include <cstdint>
#include <vector>

namespace quire {

/// Stored on disk as text ("system", "user", "assistant"); never rename.
enum class MessageRole { System, User, Assistant };
/// Stored on disk as text ("complete", "streaming", "stopped", "error"); never rename.
enum class MessageState {
  Complete,   ///< the answer ended normally (or a user/system message)
  Streaming,  ///< being written; after a crash, an answer cut short
  Stopped,    ///< the user pressed Stop
  Error,      ///< generation failed; the text so far is kept
};

QString messageRoleToString(MessageRole role);
bool messageRoleFromString(const QString& text, MessageRole* role);
QString messageStateToString(MessageState state);
bool messageStateFromString(const QString& text, MessageState* state);

struct Message {
  qint64 id = 0;
  qint64 conversationId = 0;
  qint64 parentId = 0;  ///< 0 for a root message
  MessageRole role = MessageRole::User;
  QString text;
  std::vector<std::int32_t> tokenIds;
  QDateTime created;  ///< UTC, millisecond precision
  QString model;      ///< the model that wrote an answer (empty for user messages)
  QJsonObject sampling;
  QJsonObject timings;  ///< e.g. {"ttft_ms":…, "tokens_per_s":…}
  MessageState state = MessageState::Complete;
  QList<Attachment> attachments;
};

}  // namespace quire
