// SPDX-License-Identifier: GPL-3.0-or-later
// `quire ask`, run as a separate process with no display (QT_QPA_PLATFORM, DISPLAY and WAYLAND_DISPLAY unset):
// exactly the reference tokens on a fixture image case, an answer about a page of a real PDF, the answer saved to
// the history (and not with --no-save), the model remembered in QSettings, --precision (and the precision saved in
// Settings ▸ Model) reaching the engine on a tiny model whose dims are multiples of 128, and exit codes 2 (bad
// arguments) and 3 (model or document errors, int4 on dims that are not multiples of 128).
#include "fixture_case.h"
#include "storage/conversation_store.h"
#include "test_pdfs.h"
#include "tiny_model.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

using namespace quire;
using quire::test::FixtureCase;

namespace {

struct Run {
  int exitCode = -1;
  QByteArray out, err;
  QJsonObject json;  ///< the last stdout line parsed, with --json
};

std::vector<int> intsOf(const QJsonValue& v) { return test::intsOf(v); }

}  // namespace

class TestQuireAsk : public QObject {
  Q_OBJECT

  QTemporaryDir m_home;  // XDG config and data of the child processes

  Run ask(const QStringList& args, int timeoutMs = 120000) {
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    for (const char* v : {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}) env.remove(QString::fromLatin1(v));
    env.insert(QStringLiteral("XDG_CONFIG_HOME"), m_home.filePath(QStringLiteral("config")));
    env.insert(QStringLiteral("XDG_DATA_HOME"), m_home.filePath(QStringLiteral("data")));
    p.setProcessEnvironment(env);
    p.start(QStringLiteral(QUIRE_EXECUTABLE), QStringList{QStringLiteral("ask")} + args);
    Run r;
    if (!p.waitForFinished(timeoutMs)) {
      p.kill();
      p.waitForFinished();
      r.err = "timed out";
      return r;
    }
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.out = p.readAllStandardOutput();
    r.err = p.readAllStandardError();
    const QList<QByteArray> lines = r.out.trimmed().split('\n');
    if (!lines.isEmpty()) r.json = QJsonDocument::fromJson(lines.last()).object();
    return r;
  }

  static QString model(const QString& name = QStringLiteral("tiny-bf16"), const QString& layout = QStringLiteral("native")) {
    return test::modelsDir() + QLatin1Char('/') + name + QLatin1Char('/') + layout;
  }

  // The question and image of a fixture case whose single user turn is (image, text): what `quire ask` sends.
  static bool imageThenQuestion(const FixtureCase& c, QString* png, QString* question) {
    const QList<InferenceMessage> msgs = test::caseMessages(c);
    if (msgs.size() != 1 || msgs[0].parts.size() != 2) return false;
    if (msgs[0].parts[0].kind != InferencePart::Kind::Image || msgs[0].parts[1].kind != InferencePart::Kind::Text) return false;
    const QJsonArray content = c.json.value(QStringLiteral("messages")).toArray().at(0).toObject().value(QStringLiteral("content")).toArray();
    *png = QDir(c.dir).filePath(content.at(0).toObject().value(QStringLiteral("image_url")).toObject().value(QStringLiteral("url")).toString());
    *question = msgs[0].parts[1].text;
    return true;
  }

 private Q_SLOTS:
  void initTestCase() {
    QVERIFY(m_home.isValid());
    if (test::fixtureCases().isEmpty())
      QSKIP("tests/fixtures/models/tiny-* not found (run tests/fixtures/models/make_fixtures.py)");
  }

  void imageCaseGivesTheReferenceTokens_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("caseName");
    QTest::addColumn<bool>("asImageOption");
    int rows = 0;
    for (const FixtureCase& c : test::fixtureCases()) {
      QString png, q;
      if (!imageThenQuestion(c, &png, &q)) continue;
      QTest::addRow("%s/%s FILE", qPrintable(c.model), qPrintable(c.name)) << c.model << c.name << false;
      QTest::addRow("%s/%s --image", qPrintable(c.model), qPrintable(c.name)) << c.model << c.name << true;
      ++rows;
    }
    if (rows == 0) QTest::addRow("no (image, question) case") << QString() << QString() << false;
  }
  void imageCaseGivesTheReferenceTokens() {
    QFETCH(QString, model);
    QFETCH(QString, caseName);
    QFETCH(bool, asImageOption);
    QVERIFY2(!model.isEmpty(), "the fixtures have no case of one image followed by a question");
    const FixtureCase c = test::fixtureCase(model, caseName);
    QString png, question;
    QVERIFY(imageThenQuestion(c, &png, &question));
    QStringList args{QStringLiteral("--model"), c.modelDir + QStringLiteral("/native"), QStringLiteral("--no-save"),
                     QStringLiteral("--json"), QStringLiteral("--temperature"), QStringLiteral("0"),
                     QStringLiteral("--max-tokens"), QString::number(c.maxTokens)};
    if (asImageOption) args << QStringLiteral("--image");
    args << png << question;
    const Run r = ask(args);
    QVERIFY2(r.exitCode == 0, r.err.constData());
    // One ASCII-only JSON line on stdout, as `pixtral generate --json`.
    for (char ch : r.out) QVERIFY2(uchar(ch) < 0x80, "stdout is not ASCII");
    QCOMPARE(r.out.count('\n'), 1);
    QCOMPARE(intsOf(r.json.value(QStringLiteral("prompt_tokens"))), c.promptTokens);
    QCOMPARE(intsOf(r.json.value(QStringLiteral("tokens"))), c.greedyTokens);
    QCOMPARE(r.json.value(QStringLiteral("finish_reason")).toString(), c.finishReason);
    for (const char* k : {"load_ms", "preprocess_ms", "vision_ms", "prefill_ms", "ttft_ms", "decode_ms_per_token"})
      QVERIFY2(r.json.value(QStringLiteral("timings")).toObject().contains(QLatin1String(k)), k);
    QVERIFY(r.json.contains(QStringLiteral("device")));
    // The streamed text went to stderr and is the answer's text.
    QVERIFY(QString::fromUtf8(r.err).contains(r.json.value(QStringLiteral("text")).toString()));
  }

  void textOnlyQuestionGivesTheReferenceTokens() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("a_text"));
    const QList<InferenceMessage> msgs = test::caseMessages(c);
    QVERIFY(msgs.size() == 1 && msgs[0].parts.size() == 1);
    const Run r = ask({QStringLiteral("--model"), c.modelDir + QStringLiteral("/hf"), QStringLiteral("--no-save"),
                       QStringLiteral("--json"), QStringLiteral("--temperature"), QStringLiteral("0"),
                       QStringLiteral("--max-tokens"), QString::number(c.maxTokens), msgs[0].parts[0].text});
    QVERIFY2(r.exitCode == 0, r.err.constData());
    QCOMPARE(intsOf(r.json.value(QStringLiteral("prompt_tokens"))), c.promptTokens);
    QCOMPARE(intsOf(r.json.value(QStringLiteral("tokens"))), c.greedyTokens);
  }

  void answersAboutAPageOfARealPdf_data() {
    QTest::addColumn<QStringList>("extra");
    QTest::newRow("page 1") << QStringList{};
    QTest::newRow("page 2") << QStringList{QStringLiteral("--page"), QStringLiteral("2")};
    QTest::newRow("region") << QStringList{QStringLiteral("--region"), QStringLiteral("0.1,0.1,0.5,0.3")};
  }
  void answersAboutAPageOfARealPdf() {
    QFETCH(QStringList, extra);
    QTemporaryDir work;
    QString why;
    const QString pdf = test::packagedPdf(work.path(), &why);
    if (pdf.isEmpty()) QSKIP(qPrintable(why));
    const Run r = ask(QStringList{QStringLiteral("--model"), model(), QStringLiteral("--no-save"), QStringLiteral("--json"),
                                  QStringLiteral("--max-tokens"), QStringLiteral("6"), pdf} + extra +
                      QStringList{QStringLiteral("What is on this page?")});
    QVERIFY2(r.exitCode == 0, r.err.constData());
    QVERIFY(!intsOf(r.json.value(QStringLiteral("tokens"))).empty());
    const std::vector<int> prompt = intsOf(r.json.value(QStringLiteral("prompt_tokens")));
    QVERIFY2(std::count(prompt.begin(), prompt.end(), 10) > 4, "the page went in as an image");  // [IMG] = 10
  }

  void plainOutputStreamsTheAnswerToStdout() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("b_image"));
    QString png, question;
    QVERIFY(imageThenQuestion(c, &png, &question));
    const Run plain = ask({QStringLiteral("--model"), model(), QStringLiteral("--no-save"), QStringLiteral("--temperature"),
                           QStringLiteral("0"), QStringLiteral("--max-tokens"), QStringLiteral("8"), png, question});
    const Run json = ask({QStringLiteral("--model"), model(), QStringLiteral("--no-save"), QStringLiteral("--json"),
                          QStringLiteral("--temperature"), QStringLiteral("0"), QStringLiteral("--max-tokens"),
                          QStringLiteral("8"), png, question});
    QCOMPARE(plain.exitCode, 0);
    QCOMPARE(json.exitCode, 0);
    QCOMPARE(QString::fromUtf8(plain.out).chopped(1), json.json.value(QStringLiteral("text")).toString());
    QVERIFY2(plain.err.contains("this question takes about"), plain.err.constData());  // the CPU estimate
  }

  void savesTheQuestionAndAnswer() {
    const FixtureCase c = test::fixtureCase(QStringLiteral("tiny-bf16"), QStringLiteral("b_image"));
    QString png, question;
    QVERIFY(imageThenQuestion(c, &png, &question));
    QTemporaryDir home;
    qputenv("XDG_DATA_HOME", m_home.filePath(QStringLiteral("data")).toLocal8Bit());
    QCoreApplication::setOrganizationName(QStringLiteral("Quire"));
    QCoreApplication::setApplicationName(QStringLiteral("Quire"));
    const QString db = ConversationStore::defaultPath();
    QFile::remove(db);
    const Run r = ask({QStringLiteral("--model"), model(), QStringLiteral("--json"), QStringLiteral("--temperature"),
                       QStringLiteral("0"), QStringLiteral("--max-tokens"), QStringLiteral("8"), png, question});
    QVERIFY2(r.exitCode == 0, r.err.constData());
    QVERIFY2(QFileInfo::exists(db), qPrintable(db));
    ConversationStore store;
    QVERIFY(store.open(db));
    const QList<Conversation> convs = store.conversations();
    QCOMPARE(convs.size(), 1);
    QCOMPARE(convs[0].title, question);
    const QList<Message> path = store.activePath(convs[0].id);
    QCOMPARE(path.size(), 2);
    QCOMPARE(path[0].text, question);
    QCOMPARE(path[0].attachments.size(), 1);
    QCOMPARE(path[0].attachments[0].kind, AttachmentKind::Image);
    QCOMPARE(path[0].attachments[0].resolution, QImage(png).size());
    QCOMPARE(std::vector<int>(path[0].tokenIds.begin(), path[0].tokenIds.end()), intsOf(r.json.value(QStringLiteral("prompt_tokens"))));
    QCOMPARE(path[1].role, MessageRole::Assistant);
    QCOMPARE(path[1].state, MessageState::Complete);
    QCOMPARE(std::vector<int>(path[1].tokenIds.begin(), path[1].tokenIds.end()), intsOf(r.json.value(QStringLiteral("tokens"))));
    QCOMPARE(path[1].text, r.json.value(QStringLiteral("text")).toString());
    store.close();

    // --no-save adds nothing.
    QCOMPARE(ask({QStringLiteral("--model"), model(), QStringLiteral("--no-save"), QStringLiteral("--max-tokens"),
                  QStringLiteral("2"), png, question}).exitCode, 0);
    QVERIFY(store.open(db));
    QCOMPARE(store.conversations().size(), 1);
  }

  void modelFolderComesFromSettings() {
    QTemporaryDir home;
    QDir().mkpath(m_home.filePath(QStringLiteral("config/Quire")));
    QSettings s(m_home.filePath(QStringLiteral("config/Quire/Quire.conf")), QSettings::IniFormat);
    s.setValue(QStringLiteral("model/folder"), model());
    s.sync();
    const Run r = ask({QStringLiteral("--no-save"), QStringLiteral("--max-tokens"), QStringLiteral("2"), QStringLiteral("Hello?")});
    s.remove(QStringLiteral("model/folder"));
    s.sync();
    QVERIFY2(r.exitCode == 0, r.err.constData());
  }

  // A tiny model whose dims are multiples of 128 (int4 groups), written once for the run.
  static QString model128() {
    static const std::string dir = [] {
      pixtral::tiny::TinyModelSpec s;
      s.dim = 128, s.n_layers = 2, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 32, s.hidden_dim = 256;
      s.bf16 = true;
      return pixtral::tiny::write_tiny_model(s);
    }();
    return QString::fromStdString(dir);
  }

  void precisionReachesTheEngine_data() {
    QTest::addColumn<QStringList>("option");
    QTest::addColumn<QString>("saved");
    QTest::addColumn<QString>("expected");
    QTest::newRow("--precision int8") << QStringList{QStringLiteral("--precision"), QStringLiteral("int8")} << QString() << QStringLiteral("int8");
    QTest::newRow("--precision int4") << QStringList{QStringLiteral("--precision"), QStringLiteral("int4")} << QString() << QStringLiteral("int4");
    QTest::newRow("--precision auto (CPU: bf16)") << QStringList{QStringLiteral("--precision"), QStringLiteral("auto")} << QString() << QStringLiteral("bf16");
    QTest::newRow("saved int4") << QStringList{} << QStringLiteral("int4") << QStringLiteral("int4");
    QTest::newRow("option over saved") << QStringList{QStringLiteral("--precision"), QStringLiteral("bf16")} << QStringLiteral("int8") << QStringLiteral("bf16");
  }
  void precisionReachesTheEngine() {
    QFETCH(QStringList, option);
    QFETCH(QString, saved);
    QFETCH(QString, expected);
    QVERIFY(!model128().isEmpty());
    QDir().mkpath(m_home.filePath(QStringLiteral("config/Quire")));
    QSettings s(m_home.filePath(QStringLiteral("config/Quire/Quire.conf")), QSettings::IniFormat);
    if (saved.isEmpty()) s.remove(QStringLiteral("model/precision"));
    else s.setValue(QStringLiteral("model/precision"), saved);
    s.sync();
    const Run r = ask(QStringList{QStringLiteral("--model"), model128(), QStringLiteral("--device"), QStringLiteral("cpu"),
                                  QStringLiteral("--no-save"), QStringLiteral("--json"), QStringLiteral("--max-tokens"),
                                  QStringLiteral("2")} + option + QStringList{QStringLiteral("Hello?")});
    s.remove(QStringLiteral("model/precision"));
    s.sync();
    QVERIFY2(r.exitCode == 0, r.err.constData());
    QCOMPARE(r.json.value(QStringLiteral("precision")).toString(), expected);
    QCOMPARE(r.json.value(QStringLiteral("tokens")).toArray().size(), 2);
  }

  void badArgumentsExitWith2_data() {
    const QString png = QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/cases/b_image/rgb_37x21.png");
    QTest::addColumn<QStringList>("args");
    QTest::newRow("nothing") << QStringList{};
    QTest::newRow("no question") << QStringList{QStringLiteral("--json")};
    QTest::newRow("empty question") << QStringList{QString()};
    QTest::newRow("unknown option") << QStringList{QStringLiteral("--frobnicate"), QStringLiteral("1"), QStringLiteral("q")};
    QTest::newRow("value missing") << QStringList{QStringLiteral("--max-tokens"), QStringLiteral("q")};
    QTest::newRow("page 0") << QStringList{png, QStringLiteral("--page"), QStringLiteral("0"), QStringLiteral("q")};
    QTest::newRow("page beyond") << QStringList{QStringLiteral("--model"), model(), png, QStringLiteral("--page"), QStringLiteral("2"), QStringLiteral("q")};
    QTest::newRow("region outside") << QStringList{png, QStringLiteral("--region"), QStringLiteral("0.5,0.5,0.6,0.2"), QStringLiteral("q")};
    QTest::newRow("region not 4") << QStringList{png, QStringLiteral("--region"), QStringLiteral("0,0,1"), QStringLiteral("q")};
    QTest::newRow("page without file") << QStringList{QStringLiteral("--page"), QStringLiteral("2"), QStringLiteral("q")};
    QTest::newRow("two files") << QStringList{png, png, QStringLiteral("q")};
    QTest::newRow("temperature") << QStringList{QStringLiteral("--temperature"), QStringLiteral("-1"), QStringLiteral("q")};
    QTest::newRow("top-p") << QStringList{QStringLiteral("--top-p"), QStringLiteral("0"), QStringLiteral("q")};
    QTest::newRow("device") << QStringList{QStringLiteral("--device"), QStringLiteral("tpu"), QStringLiteral("q")};
    QTest::newRow("context") << QStringList{QStringLiteral("--context"), QStringLiteral("8"), QStringLiteral("q")};
    QTest::newRow("precision") << QStringList{QStringLiteral("--precision"), QStringLiteral("fp8"), QStringLiteral("q")};
  }
  void badArgumentsExitWith2() {
    QFETCH(QStringList, args);
    const Run r = ask(args, 30000);
    QVERIFY2(r.exitCode == 2, qPrintable(QStringLiteral("exit %1: %2").arg(r.exitCode).arg(QString::fromUtf8(r.err))));
    QVERIFY(r.err.contains("quire ask"));
    QVERIFY(r.out.isEmpty());
  }

  void modelAndDocumentErrorsExitWith3_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("expected");
    QTest::newRow("missing model folder") << QStringList{QStringLiteral("--model"), QStringLiteral("/nonexistent/pixtral"), QStringLiteral("q")}
                                          << QStringLiteral("does not exist");
    QTest::newRow("no model anywhere") << QStringList{QStringLiteral("q")} << QStringLiteral("Pixtral-12B-2409");
    QTest::newRow("not a model") << QStringList{QStringLiteral("--model"), QStringLiteral(QUIRE_FIXTURES_DIR), QStringLiteral("q")}
                                 << QStringLiteral("tekken.json");
    QTest::newRow("missing document") << QStringList{QStringLiteral("--model"), model(), QStringLiteral("/nonexistent/doc.pdf"), QStringLiteral("q")}
                                      << QString();
    QTest::newRow("undecodable image") << QStringList{QStringLiteral("--model"), model(), QStringLiteral("--image"),
                                                      QStringLiteral(QUIRE_FIXTURES_DIR "/models/tiny-bf16/cases/b_image/logits.f32"), QStringLiteral("q")}
                                       << QString();
    // int4 needs input dimensions that are multiples of 128; the fixture's are 64: refused naming a tensor.
    QTest::newRow("int4 on 64-wide weights") << QStringList{QStringLiteral("--model"), model(), QStringLiteral("--device"), QStringLiteral("cpu"),
                                                            QStringLiteral("--precision"), QStringLiteral("int4"), QStringLiteral("q")}
                                             << QStringLiteral("cannot quantize 'layers.0.");
  }
  void modelAndDocumentErrorsExitWith3() {
    QFETCH(QStringList, args);
    QFETCH(QString, expected);
    const Run r = ask(args, 60000);
    QVERIFY2(r.exitCode == 3, qPrintable(QStringLiteral("exit %1: %2").arg(r.exitCode).arg(QString::fromUtf8(r.err))));
    QVERIFY(!r.err.isEmpty());
    if (!expected.isEmpty()) QVERIFY2(QString::fromUtf8(r.err).contains(expected), r.err.constData());
  }
};

QTEST_GUILESS_MAIN(TestQuireAsk)
#include "tst_quire_ask.moc"
