// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationStore export/import. JSON follows `pixtral generate --messages` (engine/tools/cli_messages.h):
// {"messages": [{"role", "content": string | [{"type":"image_url","image_url":{"url":…}}, {"type":"text",…}]}]}
// The CLI ignores keys it does not know, so Quire's own record rides along in "quire" objects:
//   top level: {"format": 1, "title", "system_prompt", "sampling", "model", "created"}
//   per message: {"attachments": [{"kind", "document_path", "content_hash", "page", "region": [x,y,w,h],
//                 "resolution": [w,h], "image_part": index of its image_url part or -1, "page_text" and
//                 "text_part": its text layer and the index of the text part that carries it, when sent}],
//                 "token_ids", "model",
//                 "sampling", "timings", "state", "created"}
// Images go first, then the page text layers (if any), then the question, as the chat sends a user turn.
#include "storage/conversation_store.h"
#include "storage/transaction.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QMimeDatabase>

namespace quire {

namespace {

constexpr int kExportFormat = 1;

QJsonArray tokensToJson(const std::vector<std::int32_t>& ids) {
  QJsonArray out;
  for (std::int32_t id : ids) out.append(qint64(id));
  return out;
}

std::vector<std::int32_t> tokensFromJson(const QJsonArray& array) {
  std::vector<std::int32_t> out;
  out.reserve(std::size_t(array.size()));
  for (const QJsonValue& v : array) out.push_back(std::int32_t(v.toInteger()));
  return out;
}

QString dataUrl(const Attachment& a) {
  const QString mime = a.imageMime.isEmpty() ? QStringLiteral("image/png") : a.imageMime;
  return QStringLiteral("data:%1;base64,").arg(mime) + QString::fromLatin1(a.imageData.toBase64());
}

QString attachmentLabel(const Attachment& a) {
  const QString name = a.documentPath.isEmpty() ? ConversationStore::tr("pasted image")
                                                : QFileInfo(a.documentPath).fileName();
  QString label;
  switch (a.kind) {
    case AttachmentKind::Page: label = ConversationStore::tr("page %1 of %2").arg(a.page + 1).arg(name); break;
    case AttachmentKind::Region:
      label = ConversationStore::tr("region (%1, %2, %3 × %4) on page %5 of %6")
                  .arg(a.region.x(), 0, 'f', 3).arg(a.region.y(), 0, 'f', 3)
                  .arg(a.region.width(), 0, 'f', 3).arg(a.region.height(), 0, 'f', 3)
                  .arg(a.page + 1).arg(name);
      break;
    case AttachmentKind::Image: label = name; break;
  }
  if (a.resolution.isValid() && !a.resolution.isEmpty())
    label += QStringLiteral(" (%1 × %2)").arg(a.resolution.width()).arg(a.resolution.height());
  return label;
}

QJsonObject attachmentToJson(const Attachment& a, int imagePart, int textPart) {
  QJsonObject o{{"kind", attachmentKindToString(a.kind)}, {"document_path", a.documentPath},
                {"content_hash", a.contentHash}, {"page", a.page},
                {"resolution", QJsonArray{a.resolution.width(), a.resolution.height()}},
                {"image_part", imagePart}};
  if (a.kind == AttachmentKind::Region)
    o.insert("region", QJsonArray{a.region.x(), a.region.y(), a.region.width(), a.region.height()});
  if (!a.imageMime.isEmpty()) o.insert("mime", a.imageMime);
  if (textPart >= 0) {
    o.insert("page_text", a.pageText);
    o.insert("text_part", textPart);
  }
  return o;
}

// An image_url's bytes: a data URL is decoded, a path (or file:// URL) read relative to @p baseDir.
bool loadImageUrl(const QString& url, const QString& baseDir, Attachment* a) {
  if (url.startsWith(QLatin1String("data:"))) {
    const qsizetype comma = url.indexOf(QLatin1Char(','));
    const QString meta = url.mid(5, comma - 5);
    if (comma < 0 || !meta.endsWith(QLatin1String(";base64"))) return false;
    a->imageMime = meta.chopped(7);
    const auto decoded = QByteArray::fromBase64Encoding(url.mid(comma + 1).toLatin1(),
                                                        QByteArray::AbortOnBase64DecodingErrors);
    if (!decoded) return false;
    a->imageData = *decoded;
    return true;
  }
  QString path = url.startsWith(QLatin1String("file://")) ? url.mid(7) : url;
  if (QFileInfo(path).isRelative() && !baseDir.isEmpty()) path = QDir(baseDir).filePath(path);
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return false;
  a->imageData = f.readAll();
  a->imageMime = QMimeDatabase().mimeTypeForFileNameAndData(path, a->imageData).name();
  if (a->documentPath.isEmpty()) a->documentPath = QFileInfo(path).absoluteFilePath();
  return true;
}

}  // namespace

QString ConversationStore::exportMarkdown(qint64 conversationId) {
  const auto conv = conversation(conversationId);
  if (!conv) return {};
  const QList<Message> path = activePath(conversationId);
  if (m_lastError.isError() && path.isEmpty() && conv->activeLeafId != 0) return {};
  QString md = QStringLiteral("# ") + (conv->title.isEmpty() ? tr("Untitled conversation") : conv->title) +
               QStringLiteral("\n\n");
  if (!conv->systemPrompt.isEmpty())
    md += QStringLiteral("**") + tr("System prompt") + QStringLiteral(":** ") + conv->systemPrompt +
          QStringLiteral("\n\n");
  for (const Message& m : path) {
    QString heading;
    switch (m.role) {
      case MessageRole::System: heading = tr("System"); break;
      case MessageRole::User: heading = tr("You"); break;
      case MessageRole::Assistant:
        heading = m.model.isEmpty() ? tr("Assistant") : tr("Assistant (%1)").arg(m.model);
        break;
    }
    md += QStringLiteral("## ") + heading + QStringLiteral("\n\n");
    for (const Attachment& a : m.attachments)
      md += QStringLiteral("- 📎 ") + attachmentLabel(a) +
            (a.pageText.isEmpty() ? QString() : QStringLiteral(" ") + tr("(with its text layer)")) + QLatin1Char('\n');
    if (!m.attachments.isEmpty()) md += QLatin1Char('\n');
    md += m.text + QStringLiteral("\n\n");
    if (m.state == MessageState::Stopped) md += QStringLiteral("*") + tr("(stopped)") + QStringLiteral("*\n\n");
    if (m.state == MessageState::Streaming)
      md += QStringLiteral("*") + tr("(interrupted)") + QStringLiteral("*\n\n");
    if (m.state == MessageState::Error) md += QStringLiteral("*") + tr("(failed)") + QStringLiteral("*\n\n");
  }
  return md;
}

QByteArray ConversationStore::exportJson(qint64 conversationId, const JsonExportOptions& options) {
  const auto conv = conversation(conversationId);
  if (!conv) return {};
  QList<Message> path = activePath(conversationId);
  if (options.forReplay && !path.isEmpty() && path.last().role == MessageRole::Assistant) path.removeLast();
  QJsonArray messages;
  if (!conv->systemPrompt.isEmpty())
    messages.append(QJsonObject{{"role", "system"}, {"content", conv->systemPrompt}});
  for (const Message& m : path) {
    QJsonObject jm{{"role", messageRoleToString(m.role)}};
    QJsonArray parts;
    QJsonArray refs;
    QList<int> imageParts;
    for (const Attachment& a : m.attachments) {
      int imagePart = -1;
      if (!a.imageData.isEmpty()) {
        imagePart = int(parts.size());
        parts.append(QJsonObject{{"type", "image_url"}, {"image_url", QJsonObject{{"url", dataUrl(a)}}}});
      } else if (a.kind == AttachmentKind::Image && !a.documentPath.isEmpty()) {
        imagePart = int(parts.size());
        parts.append(QJsonObject{{"type", "image_url"}, {"image_url", QJsonObject{{"url", a.documentPath}}}});
      }
      imageParts << imagePart;
    }
    for (qsizetype k = 0; k < m.attachments.size(); ++k) {  // text layers after the images, before the question
      const Attachment& a = m.attachments[k];
      const QString textPart = attachmentTextPart(a);
      int textIndex = -1;
      if (!textPart.isEmpty()) {
        textIndex = int(parts.size());
        parts.append(QJsonObject{{"type", "text"}, {"text", textPart}});
      }
      refs.append(attachmentToJson(a, imageParts[k], textIndex));
    }
    if (parts.isEmpty()) {
      jm.insert("content", m.text);
    } else {
      parts.append(QJsonObject{{"type", "text"}, {"text", m.text}});
      jm.insert("content", parts);
    }
    QJsonObject quire{{"token_ids", tokensToJson(m.tokenIds)}, {"state", messageStateToString(m.state)},
                      {"created", m.created.toString(Qt::ISODateWithMs)}};
    if (!refs.isEmpty()) quire.insert("attachments", refs);
    if (!m.model.isEmpty()) quire.insert("model", m.model);
    if (!m.sampling.isEmpty()) quire.insert("sampling", m.sampling);
    if (!m.timings.isEmpty()) quire.insert("timings", m.timings);
    jm.insert("quire", quire);
    messages.append(jm);
  }
  const QJsonObject top{{"messages", messages},
                        {"quire", QJsonObject{{"format", kExportFormat}, {"title", conv->title},
                                              {"system_prompt", conv->systemPrompt}, {"sampling", conv->sampling},
                                              {"model", conv->model},
                                              {"created", conv->created.toString(Qt::ISODateWithMs)}}}};
  return QJsonDocument(top).toJson(QJsonDocument::Indented);
}

std::optional<qint64> ConversationStore::importJson(const QByteArray& json, const QString& baseDir) {
  QJsonParseError parseError;
  const QJsonDocument doc = QJsonDocument::fromJson(json, &parseError);
  if (doc.isNull())
    return fail(StorageError(StorageError::Kind::Misuse, tr("not valid JSON: %1").arg(parseError.errorString()))),
           std::nullopt;
  const QJsonObject top = doc.object();
  const QJsonArray array = doc.isArray() ? doc.array() : top.value("messages").toArray();
  const QJsonObject meta = top.value("quire").toObject();
  QString systemPrompt = meta.value("system_prompt").toString();
  QList<Message> messages;
  for (qsizetype i = 0; i < array.size(); ++i) {
    const QJsonObject jm = array.at(i).toObject();
    const QString where = tr("message %1").arg(i + 1);
    Message m;
    if (!messageRoleFromString(jm.value("role").toString(), &m.role))
      return fail(StorageError(StorageError::Kind::Misuse, tr("%1: unknown role").arg(where))), std::nullopt;
    const QJsonObject q = jm.value("quire").toObject();
    QList<QString> imageUrls;
    QList<int> pageTextParts;  // text parts that carry an attachment's text layer, not the question
    for (const QJsonValue& rv : q.value("attachments").toArray())
      if (const int tp = rv.toObject().value("text_part").toInt(-1); tp >= 0) pageTextParts << tp;
    const QJsonValue content = jm.value("content");
    if (content.isArray()) {
      const QJsonArray partsArray = content.toArray();
      for (qsizetype pi = 0; pi < partsArray.size(); ++pi) {
        const QJsonObject part = partsArray.at(pi).toObject();
        if (part.value("type") == QLatin1String("text")) {
          if (!pageTextParts.contains(int(pi))) m.text += part.value("text").toString();
        } else if (part.value("type") == QLatin1String("image_url")) {
          const QJsonValue iu = part.value("image_url");
          imageUrls.append(iu.isString() ? iu.toString() : iu.toObject().value("url").toString());
          continue;
        }
        imageUrls.append(QString());  // keep part indexes aligned with "image_part"
      }
    } else {
      m.text = content.toString();
    }
    QList<bool> used(imageUrls.size(), false);
    for (const QJsonValue& rv : q.value("attachments").toArray()) {
      const QJsonObject r = rv.toObject();
      Attachment a;
      attachmentKindFromString(r.value("kind").toString(), &a.kind);
      a.documentPath = r.value("document_path").toString();
      a.contentHash = r.value("content_hash").toString();
      a.page = r.value("page").toInt();
      const QJsonArray reg = r.value("region").toArray();
      if (reg.size() == 4) a.region = QRectF(reg[0].toDouble(), reg[1].toDouble(), reg[2].toDouble(), reg[3].toDouble());
      const QJsonArray res = r.value("resolution").toArray();
      if (res.size() == 2) a.resolution = QSize(res[0].toInt(), res[1].toInt());
      if (r.value("text_part").toInt(-1) >= 0) a.pageText = r.value("page_text").toString();
      const int part = r.value("image_part").toInt(-1);
      if (part >= 0 && part < imageUrls.size() && !imageUrls[part].isEmpty()) {
        used[part] = true;
        const QString docPath = a.documentPath;
        if (!imageUrls[part].startsWith(QLatin1String("data:")) && a.kind == AttachmentKind::Image) {
          a.documentPath = imageUrls[part];  // a path export: the file is the image (not stored in the database)
        } else if (!loadImageUrl(imageUrls[part], baseDir, &a)) {
          return fail(StorageError(StorageError::Kind::Misuse, tr("%1: unreadable image").arg(where))), std::nullopt;
        }
        if (!docPath.isEmpty()) a.documentPath = docPath;
        if (r.contains("mime")) a.imageMime = r.value("mime").toString();
      }
      m.attachments.append(a);
    }
    for (qsizetype p = 0; p < imageUrls.size(); ++p) {  // plain OpenAI image parts: images stored by content
      if (used[p] || imageUrls[p].isEmpty()) continue;
      Attachment a;
      a.kind = AttachmentKind::Image;
      if (!loadImageUrl(imageUrls[p], baseDir, &a))
        return fail(StorageError(StorageError::Kind::Misuse, tr("%1: unreadable image").arg(where))), std::nullopt;
      m.attachments.append(a);
    }
    m.tokenIds = tokensFromJson(q.value("token_ids").toArray());
    m.model = q.value("model").toString();
    m.sampling = q.value("sampling").toObject();
    m.timings = q.value("timings").toObject();
    m.created = QDateTime::fromString(q.value("created").toString(), Qt::ISODateWithMs);
    if (!messageStateFromString(q.value("state").toString(), &m.state)) m.state = MessageState::Complete;
    // The conversation's system prompt is exported as a leading system message; take it back as the setting.
    if (i == 0 && m.role == MessageRole::System && m.attachments.isEmpty() && q.isEmpty()) {
      systemPrompt = m.text;
      continue;
    }
    messages.append(m);
  }
  if (isReadOnly()) return failReadOnly(), std::nullopt;
  QString title = meta.value("title").toString();
  for (const Message& m : messages)
    if (title.isEmpty() && m.role == MessageRole::User) title = m.text.left(60).simplified();
  try {
    Transaction tx(m_db);
    const auto id = createConversation(title, systemPrompt, meta.value("sampling").toObject(),
                                       meta.value("model").toString());
    if (!id) return std::nullopt;  // the transaction rolls back
    qint64 parent = 0;
    for (const Message& m : messages) parent = insertMessage(*id, parent, m);
    tx.commit();
    return id;
  } catch (const StorageError& e) {
    return fail(e), std::nullopt;
  }
}

}  // namespace quire
