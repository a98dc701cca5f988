// SPDX-License-Identifier: GPL-3.0-or-later
// The tiny-model reference cases (tests/fixtures/models/<model>/cases/<case>/case.json, written by
// tests/fixtures/models/make_fixtures.py) read with Qt: prompt_tokens, greedy_tokens, max_tokens and the
// OpenAI-style messages, whose image_url parts name PNGs in the case folder (decoded here by Qt, as the app does).
// ref: tests/engine/model/fixture_cases.h (the same files read by the engine tests)
#pragma once

#include "inference/inference_types.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QStringList>

#include <vector>

namespace quire::test {

struct FixtureCase {
  QString model, name;
  QString dir;       ///< the case folder
  QString modelDir;  ///< .../<model>
  QJsonObject json;
  std::vector<int> promptTokens, greedyTokens;
  int maxTokens = 32;
  QString finishReason;
};

inline QString modelsDir() { return QStringLiteral(QUIRE_FIXTURES_DIR "/models"); }

inline std::vector<int> intsOf(const QJsonValue& v) {
  std::vector<int> out;
  for (const QJsonValue& x : v.toArray()) out.push_back(x.toInt());
  return out;
}

/// Every case of every tiny model, sorted; empty when the fixtures are absent.
inline QList<FixtureCase> fixtureCases() {
  QList<FixtureCase> out;
  const QDir models(modelsDir());
  for (const QString& m : models.entryList({QStringLiteral("tiny-*")}, QDir::Dirs, QDir::Name)) {
    const QDir cases(models.filePath(m + QStringLiteral("/cases")));
    for (const QString& c : cases.entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
      QFile f(cases.filePath(c + QStringLiteral("/case.json")));
      if (!f.open(QIODevice::ReadOnly)) continue;
      FixtureCase fc;
      fc.model = m;
      fc.name = c;
      fc.dir = cases.filePath(c);
      fc.modelDir = models.filePath(m);
      fc.json = QJsonDocument::fromJson(f.readAll()).object();
      fc.promptTokens = intsOf(fc.json.value(QStringLiteral("prompt_tokens")));
      fc.greedyTokens = intsOf(fc.json.value(QStringLiteral("greedy_tokens")));
      fc.maxTokens = fc.json.value(QStringLiteral("max_tokens")).toInt(32);
      fc.finishReason = fc.json.value(QStringLiteral("finish_reason")).toString();
      out << fc;
    }
  }
  return out;
}

inline FixtureCase fixtureCase(const QString& model, const QString& name) {
  for (const FixtureCase& c : fixtureCases())
    if (c.model == model && c.name == name) return c;
  return {};
}

/// The case's messages as the app builds them (images decoded by QImage from the case folder).
inline QList<InferenceMessage> caseMessages(const FixtureCase& c) {
  QList<InferenceMessage> out;
  for (const QJsonValue& mv : c.json.value(QStringLiteral("messages")).toArray()) {
    const QJsonObject m = mv.toObject();
    InferenceMessage im;
    const QString role = m.value(QStringLiteral("role")).toString();
    im.role = role == QLatin1String("system")      ? pixtral::Role::system
              : role == QLatin1String("assistant") ? pixtral::Role::assistant
                                                   : pixtral::Role::user;
    const QJsonValue content = m.value(QStringLiteral("content"));
    if (content.isString()) {
      im.parts << InferencePart::fromText(content.toString());
    } else {
      for (const QJsonValue& pv : content.toArray()) {
        const QJsonObject p = pv.toObject();
        if (p.value(QStringLiteral("type")).toString() == QLatin1String("text")) {
          im.parts << InferencePart::fromText(p.value(QStringLiteral("text")).toString());
        } else {
          const QString url = p.value(QStringLiteral("image_url")).toObject().value(QStringLiteral("url")).toString();
          im.parts << InferencePart::fromImage(QImage(QDir(c.dir).filePath(url)));
        }
      }
    }
    out << im;
  }
  return out;
}

}  // namespace quire::test
