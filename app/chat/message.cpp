// SPDX-License-Identifier: GPL-3.0-or-later
#include "chat/message.h"

namespace quire {

QString messageRoleToString(MessageRole role) {
  switch (role) {
    case MessageRole::System: return QStringLiteral("system");
    case MessageRole::User: return QStringLiteral("user");
    case MessageRole::Assistant: return QStringLiteral("assistant");
  }
  return {};
}

bool messageRoleFromString(const QString& text, MessageRole* role) {
  for (MessageRole r : {MessageRole::System, MessageRole::User, MessageRole::Assistant}) {
    if (messageRoleToString(r) == text) {
      *role = r;
      return true;
    }
  }
  return false;
}

QString messageStateToString(MessageState state) {
  switch (state) {
    case MessageState::Complete: return QStringLiteral("complete");
    case MessageState::Streaming: return QStringLiteral("streaming");
    case MessageState::Stopped: return QStringLiteral("stopped");
    case MessageState::Error: return QStringLiteral("error");
  }
  return {};
}

bool messageStateFromString(const QString& text, MessageState* state) {
  for (MessageState s : {MessageState::Complete, MessageState::Streaming, MessageState::Stopped, MessageState::Error}) {
    if (messageStateToString(s) == text) {
      *state = s;
      return true;
    }
  }
  return false;
}

}  // namespace quire
