// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationStore: the chat history on disk — conversations, their message trees, attachments, full-text
// search, export/import. Durability: a user message is committed when added; a streamed answer is committed at
// most every commitIntervalMs() (default 1 s) or every commitTokens() tokens, so a crash loses at most the last
// second of an answer. Delete is a soft delete (undo with restoreConversation(); purgeDeleted() removes rows).
// Failures never throw out of this class: calls return false / std::nullopt / empty and lastError() says why
// (disk full: nothing committed is lost and the store stays usable; read-only: writes refused, isReadOnly();
// corrupt file at open: moved aside, a fresh database started, movedAsidePath() says where).
// Threading: a store and its connection belong to the thread that called open() (one connection per thread);
// another thread (the CLI, a worker) opens its own store on the same file.
#pragma once

#include "chat/attachment.h"
#include "chat/conversation.h"
#include "chat/message.h"
#include "storage/database.h"
#include "storage/storage_error.h"

#include <QCoreApplication>
#include <QElapsedTimer>
#include <QList>
#include <QString>

#include <cstdint>
#include <map>
#include <optional>
#include <span>

namespace quire {

struct ConversationHit {
  qint64 conversationId = 0;
  qint64 messageId = 0;
  QString conversationTitle;
  QString snippet;  ///< message text around the match; matched terms between the marks given to search()
};

struct StoreOpenOptions {
  bool readOnly = false;  ///< open read-only even when the file is writable
};

struct StoreJsonExportOptions {
  bool forReplay = false;  ///< drop a trailing assistant answer, so `pixtral generate --messages` answers it
};

class ConversationStore {
  Q_DECLARE_TR_FUNCTIONS(ConversationStore)

 public:
  using OpenOptions = StoreOpenOptions;
  using JsonExportOptions = StoreJsonExportOptions;

  ConversationStore() = default;
  ~ConversationStore();
  ConversationStore(const ConversationStore&) = delete;
  ConversationStore& operator=(const ConversationStore&) = delete;

  /// AppDataLocation/conversations.sqlite (the folder is created on open()).
  static QString defaultPath();

  /// Opens (creating when missing) and migrates the database at @p path. A file that is not writable is opened
  /// read-only (isReadOnly(), readOnlyReason()); a corrupt file is moved aside and a fresh one created
  /// (movedAsidePath()). Returns false when no usable database could be opened (lastError() says why: e.g.
  /// TooNew for a database written by a newer Quire).
  bool open(const QString& path = defaultPath(), const OpenOptions& options = {});
  void close();
  bool isOpen() const { return m_db.isOpen(); }
  bool isReadOnly() const { return m_db.isOpen() && m_db.isReadOnly(); }
  /// A sentence for the UI when isReadOnly() ("…is read-only: new messages are not saved").
  QString readOnlyReason() const { return m_readOnlyReason; }
  /// Where a corrupt database was moved by open(); empty when nothing was moved.
  QString movedAsidePath() const { return m_movedAsidePath; }
  /// The user-facing notice for movedAsidePath() ("your old history was moved to …"), empty when none.
  QString movedAsideMessage() const;
  /// The most recent failure (a later success does not clear it: test the return value first).
  StorageError lastError() const { return m_lastError; }
  QString path() const { return m_db.path(); }
  /// The connection itself (tests, diagnostics). Same thread rule.
  Database& database() { return m_db; }

  // Conversations ----------------------------------------------------------------------------------------------
  std::optional<qint64> createConversation(const QString& title, const QString& systemPrompt = {},
                                           const QJsonObject& sampling = {}, const QString& model = {});
  bool renameConversation(qint64 id, const QString& title);
  bool setSystemPrompt(qint64 id, const QString& systemPrompt);
  bool setSampling(qint64 id, const QJsonObject& sampling);
  bool setPinned(qint64 id, bool pinned);
  /// Soft delete: hidden from conversations() and search(); restoreConversation() undoes it.
  bool deleteConversation(qint64 id);
  bool restoreConversation(qint64 id);
  /// Removes conversations deleted at or before @p deletedBefore (default: all), their messages, attachments and
  /// images no longer referenced. Returns the number of conversations removed, or -1 on error.
  int purgeDeleted(const QDateTime& deletedBefore = {});
  /// Not deleted, pinned first, then most recently updated first.
  QList<Conversation> conversations();
  std::optional<Conversation> conversation(qint64 id);

  // Messages ---------------------------------------------------------------------------------------------------
  /// Adds a user message under @p parentId (0: a root) and commits it at once, with its attachments; it becomes
  /// the conversation's active leaf. Editing a message = adding a sibling (same parent).
  std::optional<qint64> addUserMessage(qint64 conversationId, qint64 parentId, const QString& text,
                                       const QList<Attachment>& attachments = {},
                                       std::span<const std::int32_t> tokenIds = {});
  /// Adds any complete message (import, system notes). @p message's id and conversationId are ignored.
  std::optional<qint64> addMessage(qint64 conversationId, qint64 parentId, const Message& message);
  /// Records the exact token ids of a message (e.g. a user turn once the worker built the prompt).
  bool setTokenIds(qint64 messageId, std::span<const std::int32_t> tokenIds);
  /// Starts an answer under @p parentId (state Streaming, committed at once). Regenerate = another answer under
  /// the same parent; the earlier one stays as a sibling.
  std::optional<qint64> beginAssistantMessage(qint64 conversationId, qint64 parentId, const QString& model,
                                              const QJsonObject& sampling = {});
  /// Appends streamed text and its token ids; commits when commitIntervalMs() has passed since the last commit
  /// or commitTokens() tokens are pending. False when a due commit failed (the text stays pending and is
  /// retried with the next piece).
  bool appendToAssistantMessage(qint64 messageId, const QString& piece, std::span<const std::int32_t> tokenIds);
  /// Commits whatever is pending for @p messageId now.
  bool flushAssistantMessage(qint64 messageId);
  /// Commits the final text, tokens, state and timings. On failure the answer stays pending (call again).
  bool finishAssistantMessage(qint64 messageId, MessageState state, const QJsonObject& timings = {});
  void setCommitInterval(int milliseconds, int tokens) {
    m_commitIntervalMs = milliseconds;
    m_commitTokens = tokens;
  }
  int commitIntervalMs() const { return m_commitIntervalMs; }
  int commitTokens() const { return m_commitTokens; }

  /// One message with its attachments (images included).
  std::optional<Message> message(qint64 messageId);
  /// The children of @p parentId (0: the roots) in creation order — the versions a user can browse.
  QList<Message> children(qint64 conversationId, qint64 parentId);
  /// Root → active leaf.
  QList<Message> activePath(qint64 conversationId);
  /// Makes the branch through @p messageId active: the active leaf becomes its newest descendant.
  bool setActiveMessage(qint64 conversationId, qint64 messageId);

  // Search, export, import -------------------------------------------------------------------------------------
  /// Full-text search over every message of every conversation not deleted. @p query is user input: words are
  /// matched as quoted terms (the last one as a prefix), so quotes and FTS operators never cause an error.
  QList<ConversationHit> search(const QString& query, int limit = 50, const QString& openMark = QStringLiteral("["),
                          const QString& closeMark = QStringLiteral("]"));
  /// The FTS5 expression search() runs for @p userInput (empty when it has no searchable word).
  static QString ftsQuery(const QString& userInput);

  /// The active path as Markdown, with attachment references. Empty on error.
  QString exportMarkdown(qint64 conversationId);
  /// The active path in the `pixtral generate --messages` format (OpenAI-style messages; images as data URLs or
  /// file paths) plus Quire's "quire" objects (top level: title, settings; per message: attachments with
  /// their page references, token ids, model, state). Empty on error.
  QByteArray exportJson(qint64 conversationId, const JsonExportOptions& options = {});
  /// Imports such a JSON (or any plain messages file) as a new conversation; relative image paths resolve
  /// against @p baseDir. Returns the new conversation's id.
  std::optional<qint64> importJson(const QByteArray& json, const QString& baseDir = {});

 private:
  struct PendingAnswer {
    qint64 conversationId = 0;
    QString text;
    std::vector<std::int32_t> tokenIds;
    QElapsedTimer sinceCommit;
    int uncommittedTokens = 0;
    bool dirty = false;
  };

  bool openFile(const QString& path, bool readOnly);
  void moveAside(const QString& path);
  bool fail(const StorageError& error);
  bool failReadOnly();
  bool touchConversation(qint64 id);
  bool updateConversationColumn(const char* sql, qint64 id, const QString& value);
  qint64 insertMessage(qint64 conversationId, qint64 parentId, const Message& message);
  QString storeImage(const Attachment& attachment);
  QList<Attachment> attachments(qint64 messageId);
  QList<Message> messagesFrom(Statement& st);
  bool commitPending(qint64 messageId, PendingAnswer& pending, const MessageState* finalState,
                     const QJsonObject* timings);

  Database m_db;
  StorageError m_lastError;
  QString m_readOnlyReason;
  QString m_movedAsidePath;
  std::map<qint64, PendingAnswer> m_pending;
  int m_commitIntervalMs = 1000;
  int m_commitTokens = 64;
};

}  // namespace quire
