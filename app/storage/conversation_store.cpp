// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationStore: opening (read-only fallback, corrupt-file recovery, migrations), conversations, the message
// tree, streamed answers and search. Export/import live in conversation_export.cpp.
// Every query is a named constant run as a prepared statement (style.md rule 12).
#include "storage/conversation_store.h"
#include "storage/migrations.h"
#include "storage/transaction.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QStandardPaths>

namespace quire {

namespace {

constexpr char kInsertConversation[] =
    "INSERT INTO conversations (title, created, updated, system_prompt, sampling, model) VALUES (?, ?, ?, ?, ?, ?)";
constexpr char kRenameConversation[] = "UPDATE conversations SET title = ?2, updated = ?3 WHERE id = ?1";
constexpr char kSetSystemPrompt[] = "UPDATE conversations SET system_prompt = ?2, updated = ?3 WHERE id = ?1";
constexpr char kSetSampling[] = "UPDATE conversations SET sampling = ?2, updated = ?3 WHERE id = ?1";
constexpr char kSetPinned[] = "UPDATE conversations SET pinned = ?2 WHERE id = ?1";
constexpr char kSoftDelete[] = "UPDATE conversations SET deleted = ?2 WHERE id = ?1 AND deleted IS NULL";
constexpr char kRestore[] = "UPDATE conversations SET deleted = NULL WHERE id = ?1 AND deleted IS NOT NULL";
constexpr char kPurge[] = "DELETE FROM conversations WHERE deleted IS NOT NULL AND deleted <= ?1";
constexpr char kPurgeImages[] =
    "DELETE FROM images WHERE hash NOT IN (SELECT image_hash FROM attachments WHERE image_hash IS NOT NULL)";
constexpr char kTouchConversation[] = "UPDATE conversations SET updated = ?2 WHERE id = ?1";
constexpr char kSetActiveLeaf[] = "UPDATE conversations SET active_leaf = ?2, updated = ?3 WHERE id = ?1";
// Browsing versions selects a branch without reordering the conversation list.
constexpr char kSelectLeaf[] = "UPDATE conversations SET active_leaf = ?2 WHERE id = ?1";
constexpr char kListConversations[] =
    "SELECT id, title, created, updated, system_prompt, sampling, model, pinned, deleted, active_leaf "
    "FROM conversations WHERE deleted IS NULL ORDER BY pinned DESC, updated DESC, id DESC";
constexpr char kConversationById[] =
    "SELECT id, title, created, updated, system_prompt, sampling, model, pinned, deleted, active_leaf "
    "FROM conversations WHERE id = ?1";

constexpr char kInsertMessage[] =
    "INSERT INTO messages (conversation_id, parent_id, role, text, token_ids, created, model, sampling, timings, "
    "state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kParentConversation[] = "SELECT conversation_id FROM messages WHERE id = ?1";
constexpr char kSetTokenIds[] = "UPDATE messages SET token_ids = ?2 WHERE id = ?1";
constexpr char kCommitStream[] = "UPDATE messages SET text = ?2, token_ids = ?3 WHERE id = ?1";
constexpr char kFinishStream[] =
    "UPDATE messages SET text = ?2, token_ids = ?3, state = ?4, timings = ?5 WHERE id = ?1";
#define QUIRE_MESSAGE_COLUMNS \
  "SELECT id, conversation_id, parent_id, role, text, token_ids, created, model, sampling, timings, state "
constexpr char kMessageById[] = QUIRE_MESSAGE_COLUMNS "FROM messages WHERE id = ?1";
constexpr char kChildren[] =
    QUIRE_MESSAGE_COLUMNS "FROM messages WHERE conversation_id = ?1 AND parent_id IS ?2 ORDER BY id";
// Root → leaf: walk up from the active leaf, then order by depth descending.
constexpr char kActivePath[] =
    "WITH RECURSIVE path(id, depth) AS ("
    "  SELECT active_leaf, 0 FROM conversations WHERE id = ?1 AND active_leaf IS NOT NULL"
    "  UNION ALL SELECT m.parent_id, p.depth + 1 FROM messages m JOIN path p ON m.id = p.id"
    "  WHERE m.parent_id IS NOT NULL) "
    "SELECT m.id, m.conversation_id, m.parent_id, m.role, m.text, m.token_ids, m.created, m.model, m.sampling, "
    "m.timings, m.state FROM path p JOIN messages m ON m.id = p.id ORDER BY p.depth DESC";
#undef QUIRE_MESSAGE_COLUMNS
constexpr char kNewestChild[] = "SELECT max(id) FROM messages WHERE parent_id = ?1";

constexpr char kInsertImage[] = "INSERT OR IGNORE INTO images (hash, data, mime) VALUES (?1, ?2, ?3)";
constexpr char kInsertAttachment[] =
    "INSERT INTO attachments (message_id, position, kind, document_path, content_hash, page, region_x, region_y, "
    "region_w, region_h, width, height, image_hash, page_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kAttachments[] =
    "SELECT a.id, a.kind, a.document_path, a.content_hash, a.page, a.region_x, a.region_y, a.region_w, "
    "a.region_h, a.width, a.height, a.image_hash, i.data, i.mime, a.page_text FROM attachments a "
    "LEFT JOIN images i ON i.hash = a.image_hash WHERE a.message_id = ?1 ORDER BY a.position";

constexpr char kSearch[] =
    "SELECT m.conversation_id, m.id, c.title, snippet(messages_fts, 0, ?2, ?3, '…', 12) "
    "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
    "JOIN conversations c ON c.id = m.conversation_id "
    "WHERE messages_fts MATCH ?1 AND c.deleted IS NULL ORDER BY rank LIMIT ?4";

// NOT NULL text columns: a null QString would bind NULL.
QString nonNull(const QString& s) { return s.isNull() ? QStringLiteral("") : s; }
qint64 nowMs() { return QDateTime::currentMSecsSinceEpoch(); }
QDateTime fromMs(qint64 ms) { return QDateTime::fromMSecsSinceEpoch(ms, Qt::UTC); }
QString toJson(const QJsonObject& o) { return QString::fromUtf8(QJsonDocument(o).toJson(QJsonDocument::Compact)); }
QJsonObject fromJson(const QString& s) { return QJsonDocument::fromJson(s.toUtf8()).object(); }
qint64 idOrZero(const Statement& st, int column) { return st.isNull(column) ? 0 : st.columnInt64(column); }

Conversation conversationFrom(const Statement& st) {
  Conversation c;
  c.id = st.columnInt64(0);
  c.title = st.columnText(1);
  c.created = fromMs(st.columnInt64(2));
  c.updated = fromMs(st.columnInt64(3));
  c.systemPrompt = st.columnText(4);
  c.sampling = fromJson(st.columnText(5));
  c.model = st.columnText(6);
  c.pinned = st.columnInt64(7) != 0;
  c.deleted = !st.isNull(8);
  c.activeLeafId = idOrZero(st, 9);
  return c;
}

}  // namespace

ConversationStore::~ConversationStore() { close(); }

QString ConversationStore::defaultPath() {
  return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation))
      .filePath(QStringLiteral("conversations.sqlite"));
}

bool ConversationStore::fail(const StorageError& error) {
  m_lastError = error;
  return false;
}

bool ConversationStore::failReadOnly() {
  return fail(StorageError(StorageError::Kind::ReadOnly, m_readOnlyReason));
}

bool ConversationStore::open(const QString& path, const OpenOptions& options) {
  close();
  m_lastError = {};
  m_readOnlyReason.clear();
  m_movedAsidePath.clear();
  const QFileInfo info(path);
  bool readOnly = options.readOnly;
  if (readOnly) {
    m_readOnlyReason = tr("The conversation history %1 is open read-only: new messages are not saved.").arg(path);
  } else if (info.exists() && !info.isWritable()) {
    readOnly = true;
    m_readOnlyReason =
        tr("The conversation history %1 is not writable: it is open read-only and new messages are not saved.")
            .arg(path);
  } else if (!info.exists() && path != QLatin1String(":memory:")) {
    QDir().mkpath(info.absolutePath());
  }
  if (openFile(path, readOnly)) return true;
  if (m_lastError.kind() == StorageError::Kind::Corrupt && !readOnly) {
    const StorageError corrupt = m_lastError;
    moveAside(path);
    if (m_movedAsidePath.isEmpty()) return fail(corrupt);
    return openFile(path, false);
  }
  // A writable file in a folder we cannot write to (no -wal/-shm possible) still reads.
  if ((m_lastError.kind() == StorageError::Kind::ReadOnly || m_lastError.kind() == StorageError::Kind::CantOpen) &&
      !readOnly && info.exists()) {
    const StorageError writeError = m_lastError;
    m_readOnlyReason =
        tr("The conversation history %1 cannot be written (%2): it is open read-only and new messages are not "
           "saved.").arg(path, writeError.sqliteMessage());
    if (openFile(path, true)) return true;
    m_readOnlyReason.clear();
    return fail(writeError);
  }
  return false;
}

bool ConversationStore::openFile(const QString& path, bool readOnly) {
  try {
    m_db = Database::open(path, readOnly ? Database::OpenMode::ReadOnly : Database::OpenMode::ReadWriteCreate);
    const QString check = m_db.queryText("PRAGMA quick_check");
    if (check != QLatin1String("ok")) throw StorageError(StorageError::Kind::Corrupt, check.left(200));
    migrate(m_db);
    return true;
  } catch (const StorageError& e) {
    m_db.close();
    return fail(e);
  }
}

void ConversationStore::moveAside(const QString& path) {
  m_db.close();
  const QString stamp = QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss"));
  QString aside = path + QStringLiteral(".corrupt-") + stamp;
  for (int n = 2; QFileInfo::exists(aside); ++n)
    aside = path + QStringLiteral(".corrupt-%1-%2").arg(stamp).arg(n);
  if (!QFile::rename(path, aside)) return;
  // The WAL belongs to the damaged file (it may hold its last commits); the shared-memory index is rebuilt.
  QFile::rename(path + QStringLiteral("-wal"), aside + QStringLiteral("-wal"));
  QFile::remove(path + QStringLiteral("-shm"));
  m_movedAsidePath = aside;
}

QString ConversationStore::movedAsideMessage() const {
  if (m_movedAsidePath.isEmpty()) return {};
  return tr("Your conversation history was damaged and could not be opened. It was kept as %1 and a new, empty "
            "history was started.").arg(m_movedAsidePath);
}

void ConversationStore::close() {
  if (m_db.isOpen() && !m_db.isReadOnly()) {
    for (auto& [id, pending] : m_pending) commitPending(id, pending, nullptr, nullptr);
  }
  m_pending.clear();
  m_db.close();
}

// Conversations ------------------------------------------------------------------------------------------------

std::optional<qint64> ConversationStore::createConversation(const QString& title, const QString& systemPrompt,
                                                            const QJsonObject& sampling, const QString& model) {
  if (isReadOnly()) return failReadOnly(), std::nullopt;
  try {
    const qint64 now = nowMs();
    Statement st = m_db.prepare(kInsertConversation);
    st.bind(1, nonNull(title)).bind(2, now).bind(3, now);
    st.bind(4, nonNull(systemPrompt)).bind(5, toJson(sampling));
    st.bind(6, nonNull(model)).run();
    return m_db.lastInsertRowId();
  } catch (const StorageError& e) {
    return fail(e), std::nullopt;
  }
}

bool ConversationStore::updateConversationColumn(const char* sql, qint64 id, const QString& value) {
  if (isReadOnly()) return failReadOnly();
  try {
    Statement st = m_db.prepare(sql);
    st.bind(1, id).bind(2, nonNull(value)).bind(3, nowMs()).run();
    if (m_db.changes() == 0)
      return fail(StorageError(StorageError::Kind::Misuse, tr("no conversation with id %1").arg(id)));
    return true;
  } catch (const StorageError& e) {
    return fail(e);
  }
}

bool ConversationStore::renameConversation(qint64 id, const QString& title) {
  return updateConversationColumn(kRenameConversation, id, title);
}
bool ConversationStore::setSystemPrompt(qint64 id, const QString& prompt) {
  return updateConversationColumn(kSetSystemPrompt, id, prompt);
}
bool ConversationStore::setSampling(qint64 id, const QJsonObject& sampling) {
  return updateConversationColumn(kSetSampling, id, toJson(sampling));
}

bool ConversationStore::setPinned(qint64 id, bool pinned) {
  if (isReadOnly()) return failReadOnly();
  try {
    m_db.prepare(kSetPinned).bind(1, id).bind(2, qint64(pinned)).run();
    return m_db.changes() > 0;
  } catch (const StorageError& e) {
    return fail(e);
  }
}

bool ConversationStore::deleteConversation(qint64 id) {
  if (isReadOnly()) return failReadOnly();
  try {
    m_db.prepare(kSoftDelete).bind(1, id).bind(2, nowMs()).run();
    return m_db.changes() > 0;
  } catch (const StorageError& e) {
    return fail(e);
  }
}

bool ConversationStore::restoreConversation(qint64 id) {
  if (isReadOnly()) return failReadOnly();
  try {
    m_db.prepare(kRestore).bind(1, id).run();
    return m_db.changes() > 0;
  } catch (const StorageError& e) {
    return fail(e);
  }
}

int ConversationStore::purgeDeleted(const QDateTime& deletedBefore) {
  if (isReadOnly()) return failReadOnly(), -1;
  try {
    Transaction tx(m_db);
    m_db.prepare(kPurge).bind(1, deletedBefore.isValid() ? deletedBefore.toMSecsSinceEpoch() : nowMs()).run();
    const int removed = m_db.changes();
    m_db.prepare(kPurgeImages).run();
    tx.commit();
    return removed;
  } catch (const StorageError& e) {
    return fail(e), -1;
  }
}

QList<Conversation> ConversationStore::conversations() {
  QList<Conversation> out;
  try {
    Statement st = m_db.prepare(kListConversations);
    while (st.step()) out.append(conversationFrom(st));
  } catch (const StorageError& e) {
    fail(e);
  }
  return out;
}

std::optional<Conversation> ConversationStore::conversation(qint64 id) {
  try {
    Statement st = m_db.prepare(kConversationById);
    st.bind(1, id);
    if (st.step()) return conversationFrom(st);
    fail(StorageError(StorageError::Kind::Misuse, tr("no conversation with id %1").arg(id)));
  } catch (const StorageError& e) {
    fail(e);
  }
  return std::nullopt;
}

bool ConversationStore::touchConversation(qint64 id) {
  m_db.prepare(kTouchConversation).bind(1, id).bind(2, nowMs()).run();
  return true;
}

// Messages -----------------------------------------------------------------------------------------------------

QString ConversationStore::storeImage(const Attachment& a) {
  if (a.imageData.isEmpty()) return {};
  const QString hash =
      QString::fromLatin1(QCryptographicHash::hash(a.imageData, QCryptographicHash::Sha256).toHex());
  const QString mime = a.imageMime.isEmpty() ? QStringLiteral("application/octet-stream") : a.imageMime;
  m_db.prepare(kInsertImage).bind(1, hash).bind(2, a.imageData).bind(3, mime).run();
  return hash;
}

// Inserts the message and its attachments and makes it the active leaf; the caller holds a transaction.
qint64 ConversationStore::insertMessage(qint64 conversationId, qint64 parentId, const Message& m) {
  if (parentId != 0) {
    Statement parent = m_db.prepare(kParentConversation);
    parent.bind(1, parentId);
    if (!parent.step() || parent.columnInt64(0) != conversationId)
      throw StorageError(StorageError::Kind::Misuse,
                         tr("message %1 is not in conversation %2").arg(parentId).arg(conversationId));
  }
  const qint64 now = nowMs();
  Statement st = m_db.prepare(kInsertMessage);
  st.bind(1, conversationId);
  if (parentId != 0) st.bind(2, parentId);
  st.bind(3, messageRoleToString(m.role)).bind(4, nonNull(m.text)).bind(5, encodeTokenIds(m.tokenIds));
  st.bind(6, m.created.isValid() ? m.created.toMSecsSinceEpoch() : now).bind(7, nonNull(m.model));
  st.bind(8, toJson(m.sampling)).bind(9, toJson(m.timings)).bind(10, messageStateToString(m.state));
  st.run();
  const qint64 id = m_db.lastInsertRowId();
  int position = 0;
  for (const Attachment& a : m.attachments) {
    const QString imageHash = storeImage(a);
    Statement at = m_db.prepare(kInsertAttachment);
    at.bind(1, id).bind(2, position++).bind(3, attachmentKindToString(a.kind)).bind(4, nonNull(a.documentPath));
    at.bind(5, nonNull(a.contentHash)).bind(6, a.page);
    if (a.kind == AttachmentKind::Region) {
      at.bind(7, a.region.x()).bind(8, a.region.y()).bind(9, a.region.width()).bind(10, a.region.height());
    }
    at.bind(11, a.resolution.width()).bind(12, a.resolution.height());
    if (!imageHash.isEmpty()) at.bind(13, imageHash);
    at.bind(14, nonNull(a.pageText));
    at.run();
  }
  m_db.prepare(kSetActiveLeaf).bind(1, conversationId).bind(2, id).bind(3, now).run();
  if (m_db.changes() == 0)
    throw StorageError(StorageError::Kind::Misuse, tr("no conversation with id %1").arg(conversationId));
  return id;
}

std::optional<qint64> ConversationStore::addMessage(qint64 conversationId, qint64 parentId, const Message& message) {
  if (isReadOnly()) return failReadOnly(), std::nullopt;
  try {
    Transaction tx(m_db);
    const qint64 id = insertMessage(conversationId, parentId, message);
    tx.commit();
    return id;
  } catch (const StorageError& e) {
    return fail(e), std::nullopt;
  }
}

std::optional<qint64> ConversationStore::addUserMessage(qint64 conversationId, qint64 parentId, const QString& text,
                                                        const QList<Attachment>& attachments,
                                                        std::span<const std::int32_t> tokenIds) {
  Message m;
  m.role = MessageRole::User;
  m.text = text;
  m.attachments = attachments;
  m.tokenIds.assign(tokenIds.begin(), tokenIds.end());
  return addMessage(conversationId, parentId, m);
}

bool ConversationStore::setTokenIds(qint64 messageId, std::span<const std::int32_t> tokenIds) {
  if (isReadOnly()) return failReadOnly();
  try {
    m_db.prepare(kSetTokenIds).bind(1, messageId).bind(2, encodeTokenIds(tokenIds)).run();
    return m_db.changes() > 0;
  } catch (const StorageError& e) {
    return fail(e);
  }
}

std::optional<qint64> ConversationStore::beginAssistantMessage(qint64 conversationId, qint64 parentId,
                                                               const QString& model, const QJsonObject& sampling) {
  Message m;
  m.role = MessageRole::Assistant;
  m.model = model;
  m.sampling = sampling;
  m.state = MessageState::Streaming;
  const auto id = addMessage(conversationId, parentId, m);
  if (id) {
    PendingAnswer& pending = m_pending[*id];
    pending.conversationId = conversationId;
    pending.sinceCommit.start();
  }
  return id;
}

bool ConversationStore::commitPending(qint64 messageId, PendingAnswer& pending, const MessageState* finalState,
                                      const QJsonObject* timings) {
  try {
    Transaction tx(m_db);
    Statement st = m_db.prepare(finalState ? kFinishStream : kCommitStream);
    st.bind(1, messageId).bind(2, nonNull(pending.text)).bind(3, encodeTokenIds(pending.tokenIds));
    if (finalState) st.bind(4, messageStateToString(*finalState)).bind(5, toJson(timings ? *timings : QJsonObject()));
    st.run();
    touchConversation(pending.conversationId);
    tx.commit();
  } catch (const StorageError& e) {
    return fail(e);
  }
  pending.dirty = false;
  pending.uncommittedTokens = 0;
  pending.sinceCommit.restart();
  return true;
}

bool ConversationStore::appendToAssistantMessage(qint64 messageId, const QString& piece,
                                                 std::span<const std::int32_t> tokenIds) {
  auto it = m_pending.find(messageId);
  if (it == m_pending.end())
    return fail(StorageError(StorageError::Kind::Misuse, tr("message %1 is not being streamed").arg(messageId)));
  PendingAnswer& pending = it->second;
  pending.text += piece;
  pending.tokenIds.insert(pending.tokenIds.end(), tokenIds.begin(), tokenIds.end());
  pending.uncommittedTokens += int(tokenIds.size());
  pending.dirty = true;
  if (isReadOnly()) return failReadOnly();
  if (pending.sinceCommit.elapsed() >= m_commitIntervalMs || pending.uncommittedTokens >= m_commitTokens)
    return commitPending(messageId, pending, nullptr, nullptr);
  return true;
}

bool ConversationStore::flushAssistantMessage(qint64 messageId) {
  auto it = m_pending.find(messageId);
  if (it == m_pending.end() || !it->second.dirty) return true;
  if (isReadOnly()) return failReadOnly();
  return commitPending(messageId, it->second, nullptr, nullptr);
}

bool ConversationStore::finishAssistantMessage(qint64 messageId, MessageState state, const QJsonObject& timings) {
  auto it = m_pending.find(messageId);
  if (it == m_pending.end())
    return fail(StorageError(StorageError::Kind::Misuse, tr("message %1 is not being streamed").arg(messageId)));
  if (isReadOnly()) return failReadOnly();
  if (!commitPending(messageId, it->second, &state, &timings)) return false;
  m_pending.erase(it);
  return true;
}

QList<Attachment> ConversationStore::attachments(qint64 messageId) {
  QList<Attachment> out;
  Statement st = m_db.prepare(kAttachments);
  st.bind(1, messageId);
  while (st.step()) {
    Attachment a;
    a.id = st.columnInt64(0);
    attachmentKindFromString(st.columnText(1), &a.kind);
    a.documentPath = st.columnText(2);
    a.contentHash = st.columnText(3);
    a.page = st.columnInt(4);
    if (!st.isNull(5))
      a.region = QRectF(st.columnDouble(5), st.columnDouble(6), st.columnDouble(7), st.columnDouble(8));
    a.resolution = QSize(st.columnInt(9), st.columnInt(10));
    a.imageHash = st.columnText(11);
    a.imageData = st.columnBlob(12);
    a.imageMime = st.columnText(13);
    a.pageText = st.columnText(14);
    out.append(a);
  }
  return out;
}

QList<Message> ConversationStore::messagesFrom(Statement& st) {
  QList<Message> out;
  while (st.step()) {
    Message m;
    m.id = st.columnInt64(0);
    m.conversationId = st.columnInt64(1);
    m.parentId = idOrZero(st, 2);
    messageRoleFromString(st.columnText(3), &m.role);
    m.text = st.columnText(4);
    m.tokenIds = decodeTokenIds(st.columnBlob(5));
    m.created = fromMs(st.columnInt64(6));
    m.model = st.columnText(7);
    m.sampling = fromJson(st.columnText(8));
    m.timings = fromJson(st.columnText(9));
    messageStateFromString(st.columnText(10), &m.state);
    out.append(std::move(m));
  }
  for (Message& m : out) m.attachments = attachments(m.id);
  return out;
}

std::optional<Message> ConversationStore::message(qint64 messageId) {
  try {
    Statement st = m_db.prepare(kMessageById);
    st.bind(1, messageId);
    QList<Message> list = messagesFrom(st);
    if (!list.isEmpty()) return list.front();
    fail(StorageError(StorageError::Kind::Misuse, tr("no message with id %1").arg(messageId)));
  } catch (const StorageError& e) {
    fail(e);
  }
  return std::nullopt;
}

QList<Message> ConversationStore::children(qint64 conversationId, qint64 parentId) {
  try {
    Statement st = m_db.prepare(kChildren);
    st.bind(1, conversationId);
    if (parentId != 0) st.bind(2, parentId);
    return messagesFrom(st);
  } catch (const StorageError& e) {
    fail(e);
    return {};
  }
}

QList<Message> ConversationStore::activePath(qint64 conversationId) {
  try {
    Statement st = m_db.prepare(kActivePath);
    st.bind(1, conversationId);
    return messagesFrom(st);
  } catch (const StorageError& e) {
    fail(e);
    return {};
  }
}

bool ConversationStore::setActiveMessage(qint64 conversationId, qint64 messageId) {
  if (isReadOnly()) return failReadOnly();
  try {
    Statement owner = m_db.prepare(kParentConversation);
    owner.bind(1, messageId);
    if (!owner.step() || owner.columnInt64(0) != conversationId)
      return fail(StorageError(StorageError::Kind::Misuse,
                               tr("message %1 is not in conversation %2").arg(messageId).arg(conversationId)));
    qint64 leaf = messageId;
    Statement newest = m_db.prepare(kNewestChild);
    for (;;) {
      newest.reset();
      newest.bind(1, leaf);
      if (!newest.step() || newest.isNull(0)) break;
      leaf = newest.columnInt64(0);
    }
    m_db.prepare(kSelectLeaf).bind(1, conversationId).bind(2, leaf).run();
    return true;
  } catch (const StorageError& e) {
    return fail(e);
  }
}

// Search -------------------------------------------------------------------------------------------------------

QString ConversationStore::ftsQuery(const QString& userInput) {
  // Each word becomes a quoted FTS5 string ("" escapes a quote), so AND/OR/NOT/NEAR, '*', '^', ':', '(' and
  // column filters in user input are plain text. Words without a letter or digit match nothing and are dropped.
  QStringList terms;
  const QStringList words = userInput.split(QRegularExpression(QStringLiteral("\\s+")), Qt::SkipEmptyParts);
  for (const QString& word : words) {
    bool searchable = false;
    for (QChar c : word) searchable = searchable || c.isLetterOrNumber();
    if (!searchable) continue;
    QString quoted = word;
    quoted.replace(QLatin1Char('"'), QStringLiteral("\"\""));
    terms.append(QLatin1Char('"') + quoted + QLatin1Char('"'));
  }
  if (terms.isEmpty()) return {};
  terms.last() += QLatin1Char('*');  // search as you type: the last word is a prefix
  return terms.join(QLatin1Char(' '));
}

QList<ConversationHit> ConversationStore::search(const QString& query, int limit, const QString& openMark,
                                           const QString& closeMark) {
  QList<ConversationHit> hits;
  const QString expression = ftsQuery(query);
  if (expression.isEmpty()) return hits;
  try {
    Statement st = m_db.prepare(kSearch);
    st.bind(1, expression).bind(2, nonNull(openMark)).bind(3, nonNull(closeMark)).bind(4, qint64(limit));
    while (st.step())
      hits.append({st.columnInt64(0), st.columnInt64(1), st.columnText(2), st.columnText(3)});
  } catch (const StorageError& e) {
    fail(e);
  }
  return hits;
}

}  // namespace quire
