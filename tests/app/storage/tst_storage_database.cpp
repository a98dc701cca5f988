// SPDX-License-Identifier: GPL-3.0-or-later
// The sqlite3 wrapper and the migrations: pragmas, binding every type by index and name, transactions,
// errors carrying sqlite's code and message, migrations from every earlier schema version and from committed
// v1 and v2 fixtures (data kept), a failed step leaving the file as it was, and a newer-than-app database refused.
#include "storage/database.h"
#include "storage/migrations.h"
#include "storage/transaction.h"
#include "store_test_util.h"

#include <QTemporaryDir>
#include <QtTest>
#include <sqlite3.h>

#include <thread>

using namespace quire;

namespace {

// The schema as sqlite stores it: every object's SQL, sorted by name (FTS5 shadow tables included).
QStringList schemaOf(Database& db) {
  QStringList out;
  Statement st = db.prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY name");
  while (st.step()) out << st.columnText(0) + QLatin1Char(' ') + st.columnText(1) + QLatin1Char(' ') + st.columnText(2);
  return out;
}

void runScript(Database& db, const QString& path) {
  const QByteArray sql = test::readFile(path);
  QVERIFY2(!sql.isEmpty(), qPrintable(path));
  db.exec(sql.constData());
}

}  // namespace

class TestStorageDatabase : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_dir;
  int m_n = 0;
  QString freshPath() { return m_dir.filePath(QStringLiteral("db%1.sqlite").arg(++m_n)); }

 private Q_SLOTS:
  void initTestCase() { QVERIFY(m_dir.isValid()); }

  void pragmasAreSetOnOpen() {
    Database db = Database::open(freshPath());
    QCOMPARE(db.queryText("PRAGMA journal_mode"), QStringLiteral("wal"));
    QCOMPARE(db.queryInt("PRAGMA foreign_keys"), 1);
    QCOMPARE(db.queryInt("PRAGMA synchronous"), 1);  // NORMAL
    QCOMPARE(db.queryInt("PRAGMA busy_timeout"), 5000);
    QVERIFY(!db.isReadOnly());
  }

  void bindAndReadEveryType_data() {
    QTest::addColumn<bool>("byName");
    QTest::newRow("by index") << false;
    QTest::newRow("by name") << true;
  }
  void bindAndReadEveryType() {
    QFETCH(bool, byName);
    Database db = Database::open(QStringLiteral(":memory:"));
    db.exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, b BLOB, n)");
    Statement ins = db.prepare("INSERT INTO t VALUES (:i, :d, :s, :b, :n)");
    const QByteArray blob("\x00\x01\xff\x00z", 5);
    const QString text = QStringLiteral("Grüße, 世界 \"quoted\" 'single'");
    for (int row = 0; row < 2; ++row) {  // the second row reuses the statement after reset()
      const qint64 big = std::numeric_limits<qint64>::min() + row;
      if (byName)
        ins.bind(":i", big).bind(":d", 0.1 * (row + 1)).bind(":s", text).bind(":b", blob).bind(":n", nullptr);
      else
        ins.bind(1, big).bind(2, 0.1 * (row + 1)).bind(3, text).bind(4, blob).bind(5, nullptr);
      ins.run();
      ins.reset();
    }
    Statement sel = db.prepare("SELECT i, d, s, b, n FROM t ORDER BY rowid");
    for (int row = 0; row < 2; ++row) {
      QVERIFY(sel.step());
      QCOMPARE(sel.columnInt64(0), std::numeric_limits<qint64>::min() + row);
      QCOMPARE(sel.columnDouble(1), 0.1 * (row + 1));
      QCOMPARE(sel.columnText(2), text);
      QCOMPARE(sel.columnBlob(3), blob);
      QVERIFY(sel.isNull(4));
      QVERIFY(!sel.isNull(0));
    }
    QVERIFY(!sel.step());
  }

  void unknownParameterNameThrows() {
    Database db = Database::open(QStringLiteral(":memory:"));
    Statement st = db.prepare("SELECT :a");
    QVERIFY_THROWS_EXCEPTION(StorageError, st.bind(":b", qint64(1)));
  }

  void transactionRollsBackUnlessCommitted() {
    Database db = Database::open(freshPath());
    db.exec("CREATE TABLE t (x)");
    {
      Transaction tx(db);
      db.exec("INSERT INTO t VALUES (1)");
    }  // destroyed without commit
    QCOMPARE(db.queryInt("SELECT count(*) FROM t"), 0);
    {
      Transaction tx(db);
      db.exec("INSERT INTO t VALUES (2)");
      tx.commit();
    }
    QCOMPARE(db.queryInt("SELECT count(*) FROM t"), 1);
    try {
      Transaction tx(db);
      db.exec("INSERT INTO t VALUES (3)");
      throw StorageError(StorageError::Kind::Other, QStringLiteral("injected"));
    } catch (const StorageError&) {
    }
    QCOMPARE(db.queryInt("SELECT count(*) FROM t"), 1);
  }

  void errorsCarrySqliteCodeAndMessage_data() {
    QTest::addColumn<QByteArray>("sql");
    QTest::addColumn<int>("code");
    QTest::addColumn<QString>("messagePart");
    QTest::newRow("unique constraint") << QByteArray("INSERT INTO t VALUES (1)") << SQLITE_CONSTRAINT
                                       << QStringLiteral("UNIQUE constraint failed");
    QTest::newRow("foreign key") << QByteArray("INSERT INTO c VALUES (42)") << SQLITE_CONSTRAINT
                                 << QStringLiteral("FOREIGN KEY constraint failed");
    QTest::newRow("syntax") << QByteArray("SELEC 1") << SQLITE_ERROR << QStringLiteral("syntax error");
    QTest::newRow("no table") << QByteArray("SELECT * FROM nope") << SQLITE_ERROR
                              << QStringLiteral("no such table: nope");
  }
  void errorsCarrySqliteCodeAndMessage() {
    QFETCH(QByteArray, sql);
    QFETCH(int, code);
    QFETCH(QString, messagePart);
    Database db = Database::open(QStringLiteral(":memory:"));
    db.exec("CREATE TABLE t (x PRIMARY KEY); INSERT INTO t VALUES (1);"
            "CREATE TABLE c (x REFERENCES t(x))");
    for (bool prepared : {false, true}) {
      try {
        if (prepared) db.prepare(sql.constData()).run();
        else db.exec(sql.constData());
        QFAIL("no error");
      } catch (const StorageError& e) {
        QCOMPARE(e.code(), code);
        QVERIFY2(e.sqliteMessage().contains(messagePart), qPrintable(e.sqliteMessage()));
        QVERIFY(e.message().contains(messagePart));
      }
    }
  }

  void notADatabaseIsReportedAsCorrupt() {
    const QString path = freshPath();
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QByteArray(8192, 'x'));
    f.close();
    try {
      Database db = Database::open(path);
      QFAIL("opened a file of x's");
    } catch (const StorageError& e) {
      QCOMPARE(e.kind(), StorageError::Kind::Corrupt);
      QCOMPARE(e.code(), SQLITE_NOTADB);
    }
  }

  void readOnlyConnectionRefusesWrites() {
    const QString path = freshPath();
    { Database::open(path).exec("CREATE TABLE t (x)"); }
    Database db = Database::open(path, Database::OpenMode::ReadOnly);
    QVERIFY(db.isReadOnly());
    try {
      db.exec("INSERT INTO t VALUES (1)");
      QFAIL("wrote through a read-only connection");
    } catch (const StorageError& e) {
      QCOMPARE(e.kind(), StorageError::Kind::ReadOnly);
    }
  }

  void anotherThreadUsesItsOwnConnection() {
    const QString path = freshPath();
    Database db = Database::open(path);
    db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (7)");
    qint64 seen = -1;
    std::thread worker([&] {
      Database own = Database::open(path);  // one connection per thread
      seen = own.queryInt("SELECT x FROM t");
    });
    worker.join();
    QCOMPARE(seen, 7);
  }

  void tokenIdsAreInt32LittleEndian() {
    const std::vector<std::int32_t> ids{0x01020304, -2, std::numeric_limits<std::int32_t>::max()};
    const QByteArray blob = encodeTokenIds(ids);
    QCOMPARE(blob, QByteArray::fromHex("04030201" "feffffff" "ffffff7f"));
    QCOMPARE(decodeTokenIds(blob), ids);
  }

  // Migrations ------------------------------------------------------------------------------------------------

  void migratesFromEveryEarlierVersion_data() {
    QTest::addColumn<int>("from");
    for (int v = 0; v < schemaVersion(); ++v) QTest::newRow(qPrintable(QStringLiteral("v%1").arg(v))) << v;
  }
  void migratesFromEveryEarlierVersion() {
    QFETCH(int, from);
    Database reference = Database::open(QStringLiteral(":memory:"));
    QCOMPARE(migrate(reference), 0);
    Database db = Database::open(freshPath());
    migrate(db, from);
    QCOMPARE(db.userVersion(), from);
    QCOMPARE(migrate(db), from);
    QCOMPARE(db.userVersion(), schemaVersion());
    QCOMPARE(schemaOf(db), schemaOf(reference));
    QCOMPARE(migrate(db), schemaVersion());  // idempotent
    QCOMPARE(db.queryText("PRAGMA integrity_check"), QStringLiteral("ok"));
    QCOMPARE(db.queryInt("SELECT count(*) FROM pragma_foreign_key_check"), 0);
  }

  void migratesV1FixtureKeepingData() {
    const QString path = freshPath();
    {
      Database db = Database::open(path);
      runScript(db, QStringLiteral(QUIRE_STORE_FIXTURES "/store_v1.sql"));
      QCOMPARE(db.userVersion(), 1);
    }
    ConversationStore store;
    QVERIFY2(store.open(path), qPrintable(store.lastError().message()));
    QCOMPARE(store.database().userVersion(), schemaVersion());
    const QList<Conversation> list = store.conversations();
    QCOMPARE(list.size(), 2);
    QCOMPARE(list[0].title, QStringLiteral("Quarterly report"));  // most recently updated first
    QCOMPARE(list[0].systemPrompt, QStringLiteral("Answer briefly."));
    QCOMPARE(list[0].sampling.value("temperature").toDouble(), 0.7);
    QVERIFY(!list[0].pinned);  // v2's column, defaulted
    QCOMPARE(store.children(1, 1).size(), 2);
    const QList<Message> path1 = store.activePath(1);
    QCOMPARE(path1.size(), 2);
    QCOMPARE(path1[0].tokenIds, (std::vector<std::int32_t>{1, 22, std::numeric_limits<std::int32_t>::max()}));
    QCOMPARE(path1[0].attachments.size(), 1);
    QCOMPARE(path1[0].attachments[0].page, 2);
    QCOMPARE(path1[0].attachments[0].resolution, QSize(1024, 1325));
    QVERIFY(path1[0].attachments[0].pageText.isEmpty());  // v3's column, defaulted
    QCOMPARE(path1[1].state, MessageState::Stopped);
    QCOMPARE(store.activePath(2).at(0).attachments.at(0).imageData, QByteArray::fromHex("89504E470D0A1A0A"));
    const QList<ConversationHit> hits = store.search(QStringLiteral("revenue"));
    QCOMPARE(hits.size(), 3);
    QVERIFY(store.setPinned(2, true));
    QCOMPARE(store.conversations().at(0).id, 2);
  }

  void migratesV2FixtureKeepingData() {
    const QString path = freshPath();
    {
      Database db = Database::open(path);
      runScript(db, QStringLiteral(QUIRE_STORE_FIXTURES "/store_v2.sql"));
      QCOMPARE(db.userVersion(), 2);
    }
    ConversationStore store;
    QVERIFY2(store.open(path), qPrintable(store.lastError().message()));
    QCOMPARE(store.database().userVersion(), schemaVersion());
    QCOMPARE(store.database().queryText("PRAGMA integrity_check"), QStringLiteral("ok"));
    const QList<Conversation> list = store.conversations();
    QCOMPARE(list.size(), 2);  // the deleted one is not listed
    QCOMPARE(list[0].id, 1);   // pinned (v2) before the more recently updated one
    QVERIFY(list[0].pinned);
    QCOMPARE(list[1].title, QStringLiteral("Invoice figures"));
    QCOMPARE(list[1].systemPrompt, QStringLiteral("Be exact."));
    QCOMPARE(list[1].sampling.value("top_k").toInt(), 40);
    const QList<Message> path2 = store.activePath(2);
    QCOMPARE(path2.size(), 2);
    QCOMPARE(path2[0].text, QStringLiteral("What is the total including tax in this box?"));  // the edited version
    QCOMPARE(path2[1].tokenIds, (std::vector<std::int32_t>{7, 8, 9, std::numeric_limits<std::int32_t>::min()}));
    QCOMPARE(path2[0].attachments.size(), 1);
    const Attachment& a = path2[0].attachments[0];
    QCOMPARE(a.kind, AttachmentKind::Region);
    QCOMPARE(a.documentPath, QStringLiteral("/home/user/invoice.pdf"));
    QCOMPARE(a.region, QRectF(0.5, 0.75, 0.25, 0.125));
    QCOMPARE(a.resolution, QSize(512, 256));
    QVERIFY(a.pageText.isEmpty());  // v3's column, defaulted
    QCOMPARE(store.search(QStringLiteral("termination")).size(), 1);  // FTS kept in step
    QCOMPARE(store.search(QStringLiteral("total")).size(), 2);
  }

  void failedStepLeavesFileUnchanged() {
    Database db = Database::open(freshPath());
    migrate(db, 1);
    db.exec("CREATE INDEX conversations_by_updated ON conversations(updated)");  // v2 creates this name
    const QStringList before = schemaOf(db);
    QVERIFY_THROWS_EXCEPTION(StorageError, migrate(db));
    QCOMPARE(db.userVersion(), 1);
    QCOMPARE(schemaOf(db), before);  // v2's ALTER TABLE was rolled back with it
  }

  void newerDatabaseIsRefused() {
    const QString path = freshPath();
    {
      Database db = Database::open(path);
      migrate(db);
      db.setUserVersion(schemaVersion() + 1);
    }
    ConversationStore store;
    QVERIFY(!store.open(path));
    QCOMPARE(store.lastError().kind(), StorageError::Kind::TooNew);
    QVERIFY2(store.lastError().message().contains(QStringLiteral("newer version of Quire")),
             qPrintable(store.lastError().message()));
    QVERIFY(store.lastError().message().contains(QString::number(schemaVersion() + 1)));
    QVERIFY(!store.isOpen());
    QCOMPARE(Database::open(path).userVersion(), schemaVersion() + 1);  // untouched
    QVERIFY(store.movedAsidePath().isEmpty());
  }
};

QTEST_GUILESS_MAIN(TestStorageDatabase)
#include "tst_storage_database.moc"
