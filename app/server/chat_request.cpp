// SPDX-License-Identifier: GPL-3.0-or-later
// The chat-completions request parser (see chat_request.h).
#include "server/chat_request.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QJsonParseError>
#include <QRandomGenerator>
#include <QUrl>

#include <cmath>
#include <limits>

namespace quire {

namespace {

QString key(const char* s) { return QString::fromLatin1(s); }

// A number field: absent → true without touching *out; present but not a number → false.
bool numberField(const QJsonObject& o, const char* name, double* out, bool* given) {
  const QJsonValue v = o.value(key(name));
  *given = false;
  if (v.isUndefined() || v.isNull()) return true;
  if (!v.isDouble()) return false;
  *out = v.toDouble();
  *given = true;
  return std::isfinite(*out);
}

bool isInteger(double v) { return std::floor(v) == v; }

}  // namespace

QByteArray apiErrorBody(const ApiError& e) {
  QJsonObject err{{key("message"), e.message}, {key("type"), e.type}};
  err.insert(key("param"), e.param.isEmpty() ? QJsonValue(QJsonValue::Null) : QJsonValue(e.param));
  err.insert(key("code"), e.code.isEmpty() ? QJsonValue(QJsonValue::Null) : QJsonValue(e.code));
  return QJsonDocument(QJsonObject{{key("error"), err}}).toJson(QJsonDocument::Compact);
}

bool decodeImageUrl(const QString& url, bool allowLocalFiles, QImage* out, QString* why) {
  if (url.startsWith(QLatin1String("data:"), Qt::CaseInsensitive)) {
    const qsizetype comma = url.indexOf(QLatin1Char(','));
    if (comma < 0) {
      *why = QStringLiteral("malformed data: URL (no comma)");
      return false;
    }
    const QString meta = url.mid(5, comma - 5);
    if (!meta.endsWith(QLatin1String(";base64"), Qt::CaseInsensitive)) {
      *why = QStringLiteral("data: URL must be base64 (data:image/png;base64,...)");
      return false;
    }
    const auto decoded = QByteArray::fromBase64Encoding(url.mid(comma + 1).toLatin1(),
                                                        QByteArray::AbortOnBase64DecodingErrors);
    if (!decoded) {
      *why = QStringLiteral("data: URL is not valid base64");
      return false;
    }
    QImage img = QImage::fromData(*decoded);
    if (img.isNull()) {
      *why = QStringLiteral("data: URL does not hold an image Qt can decode (PNG, JPEG, WebP, GIF, BMP)");
      return false;
    }
    *out = std::move(img);
    return true;
  }
  QString path;
  if (url.startsWith(QLatin1String("file:"), Qt::CaseInsensitive)) {
    const QUrl u(url);
    if (!u.isLocalFile()) {
      *why = QStringLiteral("malformed file: URL");
      return false;
    }
    path = u.toLocalFile();
  } else if (QDir::isAbsolutePath(url) && !url.contains(QLatin1String("://"))) {
    path = url;
  } else {
    *why = QStringLiteral("only data: URLs are accepted (remote URLs are never fetched)");
    return false;
  }
  if (!allowLocalFiles) {
    *why = QStringLiteral("local file images are disabled (start `quire serve` with --allow-local-files)");
    return false;
  }
  if (!QFileInfo(path).isFile()) {
    *why = QStringLiteral("%1: no such file").arg(path);
    return false;
  }
  QImage img(path);
  if (img.isNull()) {
    *why = QStringLiteral("%1: not an image Qt can decode").arg(path);
    return false;
  }
  *out = std::move(img);
  return true;
}

bool parseChatRequest(const QByteArray& body, const ChatParseOptions& options, ChatRequest* out, ApiError* error) {
  auto fail = [error](const QString& message, const QString& param = {}, const QString& code = {}) {
    *error = ApiError::badRequest(message, param, code);
    return false;
  };
  QJsonParseError pe;
  const QJsonDocument doc = QJsonDocument::fromJson(body, &pe);
  if (pe.error != QJsonParseError::NoError)
    return fail(QStringLiteral("the body is not valid JSON: %1 at offset %2").arg(pe.errorString()).arg(pe.offset),
                {}, QStringLiteral("invalid_json"));
  if (!doc.isObject()) return fail(QStringLiteral("the body must be a JSON object"), {}, QStringLiteral("invalid_json"));
  const QJsonObject o = doc.object();
  ChatRequest r;

  const QJsonValue model = o.value(key("model"));
  if (!model.isUndefined() && !model.isNull() && !model.isString())
    return fail(QStringLiteral("model must be a string"), key("model"));
  r.model = model.toString();

  // Unsupported features are refused, never silently ignored.
  for (const char* f : {"tools", "functions", "tool_choice", "function_call", "logprobs", "top_logprobs"}) {
    const QJsonValue v = o.value(key(f));
    if (v.isUndefined() || v.isNull() || (v.isBool() && !v.toBool()) || (v.isArray() && v.toArray().isEmpty())) continue;
    return fail(QStringLiteral("%1 is not supported by this server").arg(key(f)), key(f), QStringLiteral("unsupported_parameter"));
  }
  if (const QJsonValue stop = o.value(key("stop"));
      !(stop.isUndefined() || stop.isNull() || (stop.isArray() && stop.toArray().isEmpty())))
    return fail(QStringLiteral("stop sequences are not supported by this server"), key("stop"),
                QStringLiteral("unsupported_parameter"));
  if (const QJsonValue rf = o.value(key("response_format")); rf.isObject()) {
    if (rf.toObject().value(key("type")).toString() != QLatin1String("text"))
      return fail(QStringLiteral("only response_format {\"type\": \"text\"} is supported"), key("response_format"),
                  QStringLiteral("unsupported_parameter"));
  }

  double v = 0;
  bool given = false;
  if (!numberField(o, "n", &v, &given) || (given && v != 1))
    return fail(QStringLiteral("n must be 1"), key("n"));
  if (!numberField(o, "temperature", &v, &given) || (given && (v < 0 || v > 2)))
    return fail(QStringLiteral("temperature must be a number in [0, 2]"), key("temperature"));
  if (given) r.params.temperature = float(v);
  if (!numberField(o, "top_p", &v, &given) || (given && (v <= 0 || v > 1)))
    return fail(QStringLiteral("top_p must be a number in (0, 1]"), key("top_p"));
  if (given) r.params.top_p = float(v);
  if (!numberField(o, "top_k", &v, &given) || (given && (v < 0 || !isInteger(v) || v > (1 << 24))))
    return fail(QStringLiteral("top_k must be an integer >= 0"), key("top_k"));
  if (given) r.params.top_k = int(v);
  for (const char* f : {"max_tokens", "max_completion_tokens"}) {
    if (!numberField(o, f, &v, &given) || (given && (v < 1 || !isInteger(v) || v > (1 << 22))))
      return fail(QStringLiteral("%1 must be a positive integer").arg(key(f)), key(f));
    if (given) r.params.max_tokens = int(v);
  }
  if (!numberField(o, "seed", &v, &given) || (given && (v < 0 || !isInteger(v) || v > 9007199254740992.0)))
    return fail(QStringLiteral("seed must be a non-negative integer"), key("seed"));
  r.seedGiven = given;
  r.params.seed = given ? std::uint64_t(v) : QRandomGenerator::global()->generate64();

  const QJsonValue stream = o.value(key("stream"));
  if (!stream.isUndefined() && !stream.isNull() && !stream.isBool()) return fail(QStringLiteral("stream must be a boolean"), key("stream"));
  r.stream = stream.toBool(false);
  if (const QJsonValue so = o.value(key("stream_options")); so.isObject())
    r.includeUsage = so.toObject().value(key("include_usage")).toBool(false);

  const QJsonValue messages = o.value(key("messages"));
  if (!messages.isArray() || messages.toArray().isEmpty())
    return fail(QStringLiteral("messages must be a non-empty array"), key("messages"));
  int images = 0;
  const QJsonArray list = messages.toArray();
  for (qsizetype i = 0; i < list.size(); ++i) {
    const QString param = QStringLiteral("messages[%1]").arg(i);
    if (!list[i].isObject()) return fail(QStringLiteral("%1 must be an object").arg(param), param);
    const QJsonObject m = list[i].toObject();
    const QString role = m.value(key("role")).toString();
    InferenceMessage im;
    if (role == QLatin1String("system") || role == QLatin1String("developer")) im.role = pixtral::Role::system;
    else if (role == QLatin1String("user")) im.role = pixtral::Role::user;
    else if (role == QLatin1String("assistant")) im.role = pixtral::Role::assistant;
    else
      return fail(QStringLiteral("%1.role must be system, user or assistant (got \"%2\")").arg(param, role), param + key(".role"));
    const QJsonValue content = m.value(key("content"));
    if (content.isString()) {
      im.parts << InferencePart::fromText(content.toString());
    } else if (content.isArray()) {
      const QJsonArray parts = content.toArray();
      for (qsizetype j = 0; j < parts.size(); ++j) {
        const QString pp = QStringLiteral("%1.content[%2]").arg(param).arg(j);
        const QJsonObject p = parts[j].toObject();
        const QString type = p.value(key("type")).toString();
        if (type == QLatin1String("text")) {
          if (!p.value(key("text")).isString()) return fail(QStringLiteral("%1.text must be a string").arg(pp), pp + key(".text"));
          im.parts << InferencePart::fromText(p.value(key("text")).toString());
        } else if (type == QLatin1String("image_url")) {
          if (im.role == pixtral::Role::system)
            return fail(QStringLiteral("%1: images are not allowed in system messages").arg(pp), pp);
          const QJsonValue iu = p.value(key("image_url"));
          const QString url = iu.isString() ? iu.toString() : iu.toObject().value(key("url")).toString();
          if (url.isEmpty()) return fail(QStringLiteral("%1.image_url.url is missing").arg(pp), pp + key(".image_url.url"));
          if (++images > options.maxImages)
            return fail(QStringLiteral("at most %1 images per request").arg(options.maxImages), pp, QStringLiteral("too_many_images"));
          QImage img;
          QString why;
          if (!decodeImageUrl(url, options.allowLocalFiles, &img, &why))
            return fail(QStringLiteral("%1: %2").arg(pp, why), pp + key(".image_url.url"), QStringLiteral("invalid_image_url"));
          im.parts << InferencePart::fromImage(img);
        } else {
          return fail(QStringLiteral("%1.type must be \"text\" or \"image_url\" (got \"%2\")").arg(pp, type), pp + key(".type"));
        }
      }
    } else if (!(content.isNull() && im.role == pixtral::Role::assistant)) {
      return fail(QStringLiteral("%1.content must be a string or a list of parts").arg(param), param + key(".content"));
    }
    if (im.parts.isEmpty() && im.role != pixtral::Role::assistant)
      return fail(QStringLiteral("%1.content is empty").arg(param), param + key(".content"));
    r.messages << im;
  }
  if (r.messages.back().role != pixtral::Role::user)
    return fail(QStringLiteral("the last message must be a user message"), key("messages"));
  *out = std::move(r);
  return true;
}

}  // namespace quire
