// SPDX-License-Identifier: GPL-3.0-or-later
// The OpenAI chat-completions request body (POST /v1/chat/completions) read into the app's InferenceMessage list
// and the engine's GenerateParams, and the OpenAI error shape the server answers with. No networking here: the
// functions are pure and tested on their own.
// Accepted: messages with role system|developer|user|assistant; content a string, null (assistant only) or a list
// of parts {type:"text", text} / {type:"image_url", image_url:{url}} where url is a data: URL (base64 image), or
// — only when local files are allowed — a file:// URL or an absolute path. Images are decoded by Qt (QImage),
// exactly as the GUI and `quire ask` decode them, then handed to the engine unchanged.
// Sampling: temperature [0, 2], top_p (0, 1], max_tokens / max_completion_tokens >= 1, seed (absent: a random
// one, as OpenAI), top_k (an extension), n == 1, stream, stream_options.include_usage. Refused with 400 rather
// than ignored: stop sequences, tools/functions, response_format other than text, n > 1, logprobs.
// ref: https://platform.openai.com/docs/api-reference/chat/create (field names and the error object)
#pragma once

#include "inference/inference_types.h"

#include <QByteArray>
#include <QImage>
#include <QList>
#include <QString>

namespace quire {

/// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError {
  int status = 0;  ///< 0: no error
  QString type;    ///< "invalid_request_error", "authentication_error", "permission_error", "server_error", ...
  QString message;
  QString param;   ///< the offending field, or empty (null in JSON)
  QString code;    ///< a short machine-readable code, or empty (null)

  bool isError() const { return status != 0; }
  static ApiError badRequest(const QString& message, const QString& param = {}, const QString& code = {}) {
    return {400, QStringLiteral("invalid_request_error"), message, param, code};
  }
};

/// The JSON body of an error response (compact UTF-8).
QByteArray apiErrorBody(const ApiError& e);

struct ChatParseOptions {
  bool allowLocalFiles = false;
  int maxImages = 32;  ///< per request
};

struct ChatRequest {
  QString model;  ///< as sent (informational; the server answers with the model it serves)
  QList<InferenceMessage> messages;
  pixtral::GenerateParams params;
  bool stream = false;
  bool includeUsage = false;  ///< stream_options.include_usage
  bool seedGiven = false;
};

/// Parses @p body. On failure returns false and fills *error (status 400, with the offending param).
bool parseChatRequest(const QByteArray& body, const ChatParseOptions& options, ChatRequest* out, ApiError* error);

/// Decodes an image_url: data:<mime>;base64,<data> always; file:///abs/path or /abs/path only when
/// @p allowLocalFiles. Returns false with a reason for the user otherwise (refused scheme, bad base64, not an image).
bool decodeImageUrl(const QString& url, bool allowLocalFiles, QImage* out, QString* why);

}  // namespace quire
