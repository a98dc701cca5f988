// SPDX-License-Identifier: GPL-3.0-or-later
// ConversationStore behaviour: the conversation list (rename, pin, delete with undo, purge), the message tree
// (regenerate and edit keep earlier versions), token ids round-tripping exactly, the streaming commit policy,
// FTS5 search with hostile input, Markdown/JSON export in the `pixtral generate --messages` format, and import
// giving back the same messages.
#include "store_test_util.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QRandomGenerator>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

using namespace quire;

namespace {

using Tokens = std::vector<std::int32_t>;

Attachment pageAttachment(int page) {
  Attachment a;
  a.kind = AttachmentKind::Page;
  a.documentPath = QStringLiteral("/docs/report.pdf");
  a.contentHash = QStringLiteral("sha256:0123abcd");
  a.page = page;
  a.resolution = QSize(1024, 1325);
  return a;
}

Attachment regionAttachment() {
  Attachment a = pageAttachment(4);
  a.kind = AttachmentKind::Region;
  a.region = QRectF(0.125, 0.25, 0.5, 0.375);
  a.resolution = QSize(640, 480);
  a.imageData = QByteArray("\x89PNG\r\n\x1a\nregion pixels", 21);  // the exact model image, kept by hash
  a.imageMime = QStringLiteral("image/png");
  return a;
}

Attachment imageAttachment(const QByteArray& bytes) {
  Attachment a;
  a.kind = AttachmentKind::Image;
  a.documentPath = QStringLiteral("/pics/screenshot.png");
  a.resolution = QSize(32, 16);
  a.imageData = bytes;
  a.imageMime = QStringLiteral("image/png");
  return a;
}

// The fields an export/import must carry (ids, hashes and times are the database's own).
void compareMessages(const QList<Message>& actual, const QList<Message>& expected) {
  QCOMPARE(actual.size(), expected.size());
  for (qsizetype i = 0; i < actual.size(); ++i) {
    const Message& a = actual[i];
    const Message& e = expected[i];
    QCOMPARE(a.role, e.role);
    QCOMPARE(a.text, e.text);
    QCOMPARE(a.tokenIds, e.tokenIds);
    QCOMPARE(a.state, e.state);
    QCOMPARE(a.model, e.model);
    QCOMPARE(a.sampling, e.sampling);
    QCOMPARE(a.timings, e.timings);
    QCOMPARE(a.created, e.created);
    QCOMPARE(a.attachments.size(), e.attachments.size());
    for (qsizetype k = 0; k < a.attachments.size(); ++k) {
      Attachment x = a.attachments[k];
      Attachment y = e.attachments[k];
      x.id = y.id = 0;
      QCOMPARE(x.kind, y.kind);
      QCOMPARE(x.documentPath, y.documentPath);
      QCOMPARE(x.region, y.region);
      QVERIFY(x == y);
    }
  }
}

}  // namespace

class TestConversationStore : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_dir;
  int m_n = 0;
  QString freshPath() { return m_dir.filePath(QStringLiteral("store%1.sqlite").arg(++m_n)); }

  // A conversation: system prompt; user (page + region) → answer, regenerated; then a follow-up with an image.
  struct Sample {
    qint64 conversation, user1, answer1, answer2, user2, answer3;
  };
  Sample makeSample(ConversationStore& store) {
    Sample s{};
    s.conversation = *store.createConversation(QStringLiteral("Report questions"), QStringLiteral("Be brief."),
                                               QJsonObject{{"temperature", 0.3}}, QStringLiteral("pixtral-12b"));
    s.user1 = *store.addUserMessage(s.conversation, 0, QStringLiteral("What is the revenue on page 3?"),
                                    {pageAttachment(2), regionAttachment()}, Tokens{1, 3, 900, 4});
    s.answer1 = *store.beginAssistantMessage(s.conversation, s.user1, QStringLiteral("pixtral-12b"));
    store.appendToAssistantMessage(s.answer1, QStringLiteral("Twelve million"), Tokens{500, 501});
    store.finishAssistantMessage(s.answer1, MessageState::Stopped);
    s.answer2 = *store.beginAssistantMessage(s.conversation, s.user1, QStringLiteral("pixtral-12b"),
                                             QJsonObject{{"temperature", 0.3}, {"seed", 7}});
    store.appendToAssistantMessage(s.answer2, QStringLiteral("The revenue was "), Tokens{600, 601, 602});
    store.appendToAssistantMessage(s.answer2, QStringLiteral("12 million euros."), Tokens{603, -1, 2});
    store.finishAssistantMessage(s.answer2, MessageState::Complete, QJsonObject{{"ttft_ms", 812}});
    s.user2 = *store.addUserMessage(s.conversation, s.answer2, QStringLiteral("And this chart?"),
                                    {imageAttachment(QByteArray("\x89PNG chart", 10))});
    s.answer3 = *store.beginAssistantMessage(s.conversation, s.user2, QStringLiteral("pixtral-12b"));
    store.appendToAssistantMessage(s.answer3, QStringLiteral("It shows growth."), Tokens{700, 701, 2});
    store.finishAssistantMessage(s.answer3, MessageState::Complete);
    return s;
  }

 private Q_SLOTS:
  void initTestCase() { QVERIFY(m_dir.isValid()); }

  void defaultLocationIsAppData() {
    QStandardPaths::setTestModeEnabled(true);  // ~/.qttest/…, never the user's real history
    const QString path = ConversationStore::defaultPath();
    QCOMPARE(QFileInfo(path).absolutePath(), QStandardPaths::writableLocation(QStandardPaths::AppDataLocation));
    QFile::remove(path);
    ConversationStore store;
    QVERIFY2(store.open(), qPrintable(store.lastError().message()));
    QCOMPARE(store.path(), path);
    QVERIFY(QFile::exists(path));
    store.close();
    QFile::remove(path);
  }

  void listRenamePinDeleteUndoPurge() {
    ConversationStore store;
    QVERIFY(store.open(freshPath()));
    const qint64 a = *store.createConversation(QStringLiteral("A"));
    QTest::qWait(2);
    const qint64 b = *store.createConversation(QStringLiteral("B"));
    QTest::qWait(2);
    const qint64 c = *store.createConversation(QStringLiteral("C"));
    auto ids = [&] {
      QList<qint64> out;
      for (const Conversation& conv : store.conversations()) out << conv.id;
      return out;
    };
    QCOMPARE(ids(), (QList<qint64>{c, b, a}));
    QTest::qWait(2);
    QVERIFY(store.addUserMessage(a, 0, QStringLiteral("bump")));  // a message moves A to the top
    QCOMPARE(ids(), (QList<qint64>{a, c, b}));
    QVERIFY(store.renameConversation(b, QStringLiteral("Budget 2024")));
    QCOMPARE(store.conversation(b)->title, QStringLiteral("Budget 2024"));
    QCOMPARE(ids(), (QList<qint64>{b, a, c}));
    QVERIFY(store.setPinned(c, true));
    QCOMPARE(ids(), (QList<qint64>{c, b, a}));
    QVERIFY(!store.renameConversation(9999, QStringLiteral("x")));
    QCOMPARE(store.lastError().kind(), StorageError::Kind::Misuse);

    // Delete with undo: a soft delete hides it from the list and from search; restore brings it back.
    QCOMPARE(store.search(QStringLiteral("bump")).size(), 1);
    QVERIFY(store.deleteConversation(a));
    QCOMPARE(ids(), (QList<qint64>{c, b}));
    QVERIFY(store.conversation(a)->deleted);
    QCOMPARE(store.search(QStringLiteral("bump")).size(), 0);
    QVERIFY(store.restoreConversation(a));
    QCOMPARE(ids(), (QList<qint64>{c, b, a}));
    QCOMPARE(store.search(QStringLiteral("bump")).size(), 1);

    // Purge removes rows for good, including FTS entries, attachments and images nobody references.
    const Sample s = makeSample(store);
    QVERIFY(store.deleteConversation(s.conversation));
    QVERIFY(store.deleteConversation(a));
    QCOMPARE(store.purgeDeleted(QDateTime::currentDateTimeUtc().addDays(-1)), 0);  // too recent
    QCOMPARE(store.purgeDeleted(), 2);
    Database& db = store.database();
    QCOMPARE(db.queryInt("SELECT count(*) FROM messages"), 0);
    QCOMPARE(db.queryInt("SELECT count(*) FROM attachments"), 0);
    QCOMPARE(db.queryInt("SELECT count(*) FROM images"), 0);
    QCOMPARE(db.queryInt("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'bump'"), 0);
    QCOMPARE(db.queryText("PRAGMA integrity_check"), QStringLiteral("ok"));
    QVERIFY(!store.restoreConversation(a));
  }

  void regenerateAndEditKeepEarlierVersions() {
    ConversationStore store;
    QVERIFY(store.open(freshPath()));
    const Sample s = makeSample(store);
    auto idsOf = [](const QList<Message>& list) {
      QList<qint64> out;
      for (const Message& m : list) out << m.id;
      return out;
    };
    QCOMPARE(idsOf(store.children(s.conversation, s.user1)), (QList<qint64>{s.answer1, s.answer2}));
    QCOMPARE(idsOf(store.activePath(s.conversation)),
             (QList<qint64>{s.user1, s.answer2, s.user2, s.answer3}));
    // Browse back to the first version of the answer: the path now ends there.
    QVERIFY(store.setActiveMessage(s.conversation, s.answer1));
    QCOMPARE(idsOf(store.activePath(s.conversation)), (QList<qint64>{s.user1, s.answer1}));
    QCOMPARE(store.message(s.answer1)->state, MessageState::Stopped);
    // Edit the first question: a new root sibling with its own answer.
    const qint64 edited = *store.addUserMessage(s.conversation, 0, QStringLiteral("What is the profit on page 3?"));
    const qint64 answer = *store.beginAssistantMessage(s.conversation, edited, QStringLiteral("pixtral-12b"));
    QVERIFY(store.finishAssistantMessage(answer, MessageState::Complete));
    QCOMPARE(idsOf(store.children(s.conversation, 0)), (QList<qint64>{s.user1, edited}));
    QCOMPARE(idsOf(store.activePath(s.conversation)), (QList<qint64>{edited, answer}));
    // Selecting the old question follows its newest descendants to a leaf.
    QVERIFY(store.setActiveMessage(s.conversation, s.user1));
    QCOMPARE(idsOf(store.activePath(s.conversation)),
             (QList<qint64>{s.user1, s.answer2, s.user2, s.answer3}));
    // A parent from another conversation is refused.
    const qint64 other = *store.createConversation(QStringLiteral("other"));
    QVERIFY(!store.addUserMessage(other, s.user1, QStringLiteral("x")));
    QCOMPARE(store.lastError().kind(), StorageError::Kind::Misuse);
    QVERIFY(!store.setActiveMessage(other, s.user1));
  }

  void tokenIdsRoundTripExactly_data() {
    QTest::addColumn<QList<qint32>>("ids");
    QTest::addColumn<int>("chunk");
    QTest::newRow("empty") << QList<qint32>{} << 1;
    QTest::newRow("one") << QList<qint32>{42} << 1;
    QTest::newRow("extremes") << QList<qint32>{0, -1, std::numeric_limits<qint32>::min(),
                                               std::numeric_limits<qint32>::max(), 131071, 0x01020304} << 2;
    QList<qint32> many;
    QRandomGenerator rng(12345);
    for (int i = 0; i < 20000; ++i) many << qint32(rng.generate());
    QTest::newRow("20000 random, streamed in 7s") << many << 7;
  }
  void tokenIdsRoundTripExactly() {
    QFETCH(QList<qint32>, ids);
    QFETCH(int, chunk);
    const Tokens expected(ids.begin(), ids.end());
    const QString path = freshPath();
    qint64 conv = 0, user = 0, answer = 0;
    {
      ConversationStore store;
      QVERIFY(store.open(path));
      conv = *store.createConversation(QStringLiteral("tokens"));
      user = *store.addUserMessage(conv, 0, QStringLiteral("q"), {}, expected);
      answer = *store.beginAssistantMessage(conv, user, QStringLiteral("m"));
      for (std::size_t i = 0; i < expected.size(); i += std::size_t(chunk)) {
        const auto n = std::min(std::size_t(chunk), expected.size() - i);
        QVERIFY(store.appendToAssistantMessage(answer, QStringLiteral("x"),
                                               std::span<const std::int32_t>(expected).subspan(i, n)));
      }
      QVERIFY(store.finishAssistantMessage(answer, MessageState::Complete));
    }
    ConversationStore reopened;
    QVERIFY(reopened.open(path));
    QCOMPARE(reopened.message(user)->tokenIds, expected);
    QCOMPARE(reopened.message(answer)->tokenIds, expected);
    QVERIFY(reopened.setTokenIds(user, Tokens{9, 8, 7}));
    QCOMPARE(reopened.message(user)->tokenIds, (Tokens{9, 8, 7}));
  }

  // A reader on its own connection sees an answer only as the commit policy writes it.
  void streamedAnswerIsCommittedByTokenCountAndByTime() {
    const QString path = freshPath();
    ConversationStore writer, reader;
    QVERIFY(writer.open(path));
    writer.setCommitInterval(3600 * 1000, 5);
    const qint64 conv = *writer.createConversation(QStringLiteral("stream"));
    const qint64 user = *writer.addUserMessage(conv, 0, QStringLiteral("question"));
    QVERIFY(reader.open(path));
    QCOMPARE(reader.message(user)->text, QStringLiteral("question"));  // committed when sent
    const qint64 answer = *writer.beginAssistantMessage(conv, user, QStringLiteral("m"));
    QCOMPARE(reader.message(answer)->state, MessageState::Streaming);
    for (int i = 0; i < 4; ++i) QVERIFY(writer.appendToAssistantMessage(answer, QStringLiteral("a"), Tokens{i}));
    QCOMPARE(reader.message(answer)->tokenIds.size(), std::size_t(0));
    QVERIFY(writer.appendToAssistantMessage(answer, QStringLiteral("b"), Tokens{4}));
    QCOMPARE(reader.message(answer)->text, QStringLiteral("aaaab"));
    QCOMPARE(reader.message(answer)->tokenIds, (Tokens{0, 1, 2, 3, 4}));

    // By time: 1 s, so that a loaded machine's pause between the last commit and "c" does not commit "c" early.
    writer.setCommitInterval(1000, 1000000);
    QVERIFY(writer.appendToAssistantMessage(answer, QStringLiteral("c"), Tokens{5}));
    QCOMPARE(reader.message(answer)->text, QStringLiteral("aaaab"));
    QTest::qWait(1100);
    QVERIFY(writer.appendToAssistantMessage(answer, QStringLiteral("d"), Tokens{6}));
    QCOMPARE(reader.message(answer)->text, QStringLiteral("aaaabcd"));
    QVERIFY(writer.finishAssistantMessage(answer, MessageState::Complete, QJsonObject{{"tokens_per_s", 9.5}}));
    QCOMPARE(reader.message(answer)->state, MessageState::Complete);
    QCOMPARE(reader.message(answer)->timings.value("tokens_per_s").toDouble(), 9.5);
    QVERIFY(!writer.appendToAssistantMessage(answer, QStringLiteral("late"), Tokens{7}));  // finished
  }

  void search_data() {
    QTest::addColumn<QString>("query");
    QTest::addColumn<QStringList>("expected");  // texts of the hits, any order
    const QString revenue = QStringLiteral("The revenue was 12 million euros.");
    const QString quoted = QStringLiteral("He said \"foo\" AND left (quickly) * NEAR the café.");
    const QString other = QStringLiteral("Completely unrelated: zebras OR horses?");
    QTest::newRow("word") << QStringLiteral("revenue") << QStringList{revenue, QStringLiteral("What is the revenue?")};
    QTest::newRow("two words (AND)") << QStringLiteral("revenue million") << QStringList{revenue};
    QTest::newRow("prefix while typing") << QStringLiteral("milli") << QStringList{revenue};
    QTest::newRow("case and diacritics") << QStringLiteral("CAFE") << QStringList{quoted};
    QTest::newRow("unbalanced quote") << QStringLiteral("\"foo") << QStringList{quoted};
    QTest::newRow("operators as words (both needed)") << QStringLiteral("AND OR") << QStringList{};
    QTest::newRow("a lone operator") << QStringLiteral("OR") << QStringList{other};
    QTest::newRow("NOT") << QStringLiteral("NOT zebras") << QStringList{};
    QTest::newRow("star") << QStringLiteral("*") << QStringList{};
    QTest::newRow("NEAR(") << QStringLiteral("NEAR(") << QStringList{quoted};
    QTest::newRow("column filter") << QStringLiteral("text:zebras") << QStringList{};
    QTest::newRow("caret and minus") << QStringLiteral("^zebras -horses") << QStringList{other};
    QTest::newRow("parentheses") << QStringLiteral("(((") << QStringList{};
    QTest::newRow("apostrophe") << QStringLiteral("it's") << QStringList{};
    QTest::newRow("empty") << QString() << QStringList{};
    QTest::newRow("no match") << QStringLiteral("giraffe") << QStringList{};
  }
  void search() {
    QFETCH(QString, query);
    QFETCH(QStringList, expected);
    ConversationStore store;
    QVERIFY(store.open(freshPath()));
    const qint64 c1 = *store.createConversation(QStringLiteral("Report"));
    const qint64 u = *store.addUserMessage(c1, 0, QStringLiteral("What is the revenue?"));
    const qint64 a = *store.beginAssistantMessage(c1, u, QStringLiteral("m"));
    store.appendToAssistantMessage(a, QStringLiteral("The revenue was "), Tokens{1});
    store.appendToAssistantMessage(a, QStringLiteral("12 million euros."), Tokens{2});
    QVERIFY(store.finishAssistantMessage(a, MessageState::Complete));
    const qint64 c2 = *store.createConversation(QStringLiteral("Misc"));
    store.addUserMessage(c2, 0, QStringLiteral("He said \"foo\" AND left (quickly) * NEAR the café."));
    store.addUserMessage(c2, 0, QStringLiteral("Completely unrelated: zebras OR horses?"));

    const QList<ConversationHit> hits = store.search(query);
    QVERIFY2(!store.lastError().isError(), qPrintable(store.lastError().message()));
    QStringList texts;
    for (const ConversationHit& hit : hits) {
      const auto m = store.message(hit.messageId);
      QVERIFY(m);
      QCOMPARE(hit.conversationId, m->conversationId);
      QCOMPARE(hit.conversationTitle, store.conversation(m->conversationId)->title);
      QVERIFY2(hit.snippet.contains(QLatin1Char('[')) && hit.snippet.contains(QLatin1Char(']')),
               qPrintable(hit.snippet));
      texts << m->text;
    }
    texts.sort();
    expected.sort();
    QCOMPARE(texts, expected);
  }

  void exportMarkdownFollowsTheActivePath() {
    ConversationStore store;
    QVERIFY(store.open(freshPath()));
    const Sample s = makeSample(store);
    const QString md = store.exportMarkdown(s.conversation);
    QVERIFY(md.startsWith(QStringLiteral("# Report questions\n")));
    QVERIFY(md.contains(QStringLiteral("Be brief.")));
    QVERIFY(md.contains(QStringLiteral("What is the revenue on page 3?")));
    QVERIFY(md.contains(QStringLiteral("page 3 of report.pdf (1024 × 1325)")));
    QVERIFY(md.contains(QStringLiteral("region (0.125, 0.250, 0.500 × 0.375) on page 5 of report.pdf")));
    QVERIFY(md.contains(QStringLiteral("screenshot.png (32 × 16)")));
    QVERIFY(md.contains(QStringLiteral("The revenue was 12 million euros.")));
    QVERIFY(!md.contains(QStringLiteral("Twelve million")));  // the other version is not on the active path
    QVERIFY(md.indexOf(QStringLiteral("12 million euros")) < md.indexOf(QStringLiteral("And this chart?")));
    QVERIFY(store.exportMarkdown(424242).isEmpty());
  }

  void exportJsonIsAPixtralMessagesFile() {
    ConversationStore store;
    QVERIFY(store.open(freshPath()));
    const Sample s = makeSample(store);
    for (bool forReplay : {false, true}) {
      const QJsonDocument doc = QJsonDocument::fromJson(store.exportJson(s.conversation, {forReplay}));
      const QJsonArray messages = doc.object().value("messages").toArray();
      QCOMPARE(messages.size(), forReplay ? 4 : 5);  // system + the active path (minus the last answer)
      QCOMPARE(messages[0].toObject().value("role").toString(), QStringLiteral("system"));
      QCOMPARE(messages[0].toObject().value("content").toString(), QStringLiteral("Be brief."));
      const QJsonObject user = messages[1].toObject();
      QCOMPARE(user.value("role").toString(), QStringLiteral("user"));
      const QJsonArray parts = user.value("content").toArray();
      QCOMPARE(parts.size(), 2);  // the region's model image, then the text; the page has no stored pixels
      QCOMPARE(parts[0].toObject().value("type").toString(), QStringLiteral("image_url"));
      const QString url = parts[0].toObject().value("image_url").toObject().value("url").toString();
      QVERIFY(url.startsWith(QStringLiteral("data:image/png;base64,")));
      QCOMPARE(QByteArray::fromBase64(url.mid(url.indexOf(QLatin1Char(',')) + 1).toLatin1()),
               regionAttachment().imageData);
      QCOMPARE(parts[1].toObject().value("text").toString(), QStringLiteral("What is the revenue on page 3?"));
      const QJsonArray refs = user.value("quire").toObject().value("attachments").toArray();
      QCOMPARE(refs.size(), 2);
      QCOMPARE(refs[0].toObject().value("kind").toString(), QStringLiteral("page"));
      QCOMPARE(refs[0].toObject().value("page").toInt(), 2);
      QCOMPARE(refs[0].toObject().value("document_path").toString(), QStringLiteral("/docs/report.pdf"));
      QCOMPARE(refs[0].toObject().value("image_part").toInt(), -1);
      QCOMPARE(refs[1].toObject().value("region").toArray(), (QJsonArray{0.125, 0.25, 0.5, 0.375}));
      QCOMPARE(refs[1].toObject().value("image_part").toInt(), 0);
      const QJsonObject answer = messages[2].toObject();
      QCOMPARE(answer.value("role").toString(), QStringLiteral("assistant"));
      QCOMPARE(answer.value("content").toString(), QStringLiteral("The revenue was 12 million euros."));
      QCOMPARE(answer.value("quire").toObject().value("token_ids").toArray(),
               (QJsonArray{600, 601, 602, 603, -1, 2}));
      QCOMPARE(messages.last().toObject().value("role").toString(),
               forReplay ? QStringLiteral("user") : QStringLiteral("assistant"));
      QCOMPARE(doc.object().value("quire").toObject().value("title").toString(), QStringLiteral("Report questions"));
    }
  }

  void importReplaysTheExport() {
    ConversationStore store;
    QVERIFY(store.open(freshPath()));
    const Sample s = makeSample(store);
    const QByteArray json = store.exportJson(s.conversation);
    const auto imported = store.importJson(json);
    QVERIFY2(imported, qPrintable(store.lastError().message()));
    QVERIFY(*imported != s.conversation);
    compareMessages(store.activePath(*imported), store.activePath(s.conversation));
    const Conversation a = *store.conversation(s.conversation);
    const Conversation b = *store.conversation(*imported);
    QCOMPARE(b.title, a.title);
    QCOMPARE(b.systemPrompt, a.systemPrompt);
    QCOMPARE(b.sampling, a.sampling);
    QCOMPARE(b.model, a.model);
    // The image is stored once, by content hash.
    QCOMPARE(store.database().queryInt("SELECT count(*) FROM images"), 2);
    // Exporting the import gives the same document, but for the created times of the conversation.
    QJsonObject again = QJsonDocument::fromJson(store.exportJson(*imported)).object();
    QJsonObject first = QJsonDocument::fromJson(json).object();
    QCOMPARE(again.value("messages"), first.value("messages"));
  }

  void importsAPlainMessagesFile() {
    QTemporaryDir dir;
    const QByteArray png("\x89PNG\r\n\x1a\nplain", 13);
    QFile f(dir.filePath(QStringLiteral("pic.png")));
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(png);
    f.close();
    const QByteArray json = R"([
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "pic.png"}},
                                   {"type": "image_url", "image_url": "data:image/png;base64,aGVsbG8="},
                                   {"type": "text", "text": "Compare these."}]}
    ])";
    ConversationStore store;
    QVERIFY(store.open(freshPath()));
    const auto id = store.importJson(json, dir.path());
    QVERIFY2(id, qPrintable(store.lastError().message()));
    QCOMPARE(store.conversation(*id)->systemPrompt, QStringLiteral("You are terse."));
    QCOMPARE(store.conversation(*id)->title, QStringLiteral("Compare these."));
    const QList<Message> path = store.activePath(*id);
    QCOMPARE(path.size(), 1);
    QCOMPARE(path[0].text, QStringLiteral("Compare these."));
    QCOMPARE(path[0].attachments.size(), 2);
    QCOMPARE(path[0].attachments[0].imageData, png);
    QCOMPARE(path[0].attachments[0].imageMime, QStringLiteral("image/png"));
    QCOMPARE(path[0].attachments[1].imageData, QByteArray("hello"));

    QVERIFY(!store.importJson("{not json"));
    QVERIFY(!store.importJson(R"([{"role": "wizard", "content": "x"}])"));
    QVERIFY(!store.importJson(R"([{"role": "user", "content": [{"type": "image_url", "image_url": "missing.png"}]}])",
                              dir.path()));
    QCOMPARE(store.conversations().size(), 1);  // nothing half-imported
  }
};

QTEST_GUILESS_MAIN(TestConversationStore)
#include "tst_conversation_store.moc"
