// SPDX-License-Identifier: GPL-3.0-or-later
// Test documents (see test_pdfs.h).
#include "test_pdfs.h"

#include <QDir>
#include <QFileInfo>
#include <QProcess>
#include <QRegularExpression>
#include <QStandardPaths>
#include <algorithm>

namespace quire::test {

namespace {
// Manuals shipped by Debian packages that this project's setup installs or that are commonly present.
const char* const kKnownPdfs[] = {
    "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf",
    "/usr/share/doc/libtasn1-doc/libtasn1.pdf",
    "/usr/share/doc/fontconfig/fontconfig-user.pdf.gz",
    "/usr/share/doc/bzip2/manual.pdf.gz",
    "/usr/share/doc/zlib1g-dev/crc-doc.1.0.pdf.gz",
    "/usr/share/doc/gnucobol3/gnucobol.pdf.gz",
    "/usr/share/doc/nettle-dev/nettle.pdf.gz",
    "/usr/share/doc/valgrind/valgrind_manual.pdf.gz",
};
}  // namespace

bool runTool(const QString& program, const QStringList& args, QString* why, QByteArray* out) {
  if (QStandardPaths::findExecutable(program).isEmpty()) {
    if (why) *why = QStringLiteral("%1 is not installed").arg(program);
    return false;
  }
  QProcess p;
  p.start(program, args);
  if (!p.waitForFinished(120000) || p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0) {
    if (why) *why = QStringLiteral("%1 failed: %2").arg(program, QString::fromLocal8Bit(p.readAllStandardError()).left(300));
    return false;
  }
  if (out) *out = p.readAllStandardOutput();
  return true;
}

QStringList packagedPdfs(const QString& workDir, QString* why) {
  QStringList found;
  QStringList candidates;
  for (const char* c : kKnownPdfs) candidates << QString::fromLatin1(c);
  // Anything else under /usr/share/doc, too (one level of package folders).
  for (const QFileInfo& dir : QDir(QStringLiteral("/usr/share/doc")).entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot))
    for (const QFileInfo& f : QDir(dir.filePath()).entryInfoList({QStringLiteral("*.pdf"), QStringLiteral("*.pdf.gz")}, QDir::Files))
      if (!candidates.contains(f.filePath())) candidates << f.filePath();
  for (const QString& c : std::as_const(candidates)) {
    if (!QFileInfo(c).isReadable()) continue;
    if (c.endsWith(QLatin1String(".gz"))) {
      const QString target = QDir(workDir).filePath(QFileInfo(c).completeBaseName());
      if (!QFileInfo::exists(target)) {
        QByteArray data;
        if (!runTool(QStringLiteral("gzip"), {QStringLiteral("-dc"), c}, nullptr, &data) || !data.startsWith("%PDF")) continue;
        QFile out(target);
        if (!out.open(QIODevice::WriteOnly) || out.write(data) != data.size()) continue;
      }
      found << target;
    } else {
      found << c;
    }
  }
  std::sort(found.begin(), found.end(), [](const QString& a, const QString& b) { return QFileInfo(a).size() < QFileInfo(b).size(); });
  if (found.isEmpty() && why)
    *why = QStringLiteral("no PDF shipped by a Debian package was found under /usr/share/doc (install e.g. shared-mime-info)");
  return found;
}

QString packagedPdf(const QString& workDir, QString* why) {
  // Prefer the known manuals (they have text layers); fall back to whatever was found.
  const QStringList all = packagedPdfs(workDir, why);
  for (const QString& p : all)
    if (p.contains(QLatin1String("shared-mime-info")) || p.contains(QLatin1String("libtasn1")) || p.contains(QLatin1String("fontconfig")))
      return p;
  return all.value(0);
}

QString chartPng(const QString& workDir, QString* why) {
  const QString png = QDir(workDir).filePath(QStringLiteral("chart.png"));
  if (QFileInfo::exists(png)) return png;
  // A bar chart with axes and a caption, drawn by ImageMagick.
  const QStringList args = {QStringLiteral("-size"), QStringLiteral("600x400"), QStringLiteral("xc:white"),
                            QStringLiteral("-stroke"), QStringLiteral("black"), QStringLiteral("-draw"), QStringLiteral("line 40,360 580,360"),
                            QStringLiteral("-draw"), QStringLiteral("line 40,20 40,360"), QStringLiteral("-stroke"), QStringLiteral("none"),
                            QStringLiteral("-fill"), QStringLiteral("steelblue"), QStringLiteral("-draw"), QStringLiteral("rectangle 70,200 150,359"),
                            QStringLiteral("-fill"), QStringLiteral("darkorange"), QStringLiteral("-draw"), QStringLiteral("rectangle 190,120 270,359"),
                            QStringLiteral("-fill"), QStringLiteral("seagreen"), QStringLiteral("-draw"), QStringLiteral("rectangle 310,60 390,359"),
                            QStringLiteral("-fill"), QStringLiteral("firebrick"), QStringLiteral("-draw"), QStringLiteral("rectangle 430,250 510,359"),
                            QStringLiteral("-fill"), QStringLiteral("black"), QStringLiteral("-pointsize"), QStringLiteral("22"),
                            QStringLiteral("-draw"), QStringLiteral("text 200,395 'Quarterly sales'"), png};
  if (!runTool(QStringLiteral("convert"), args, why)) return {};
  return png;
}

QString chartPdf(const QString& workDir, QString* why) {
  const QString pdf = QDir(workDir).filePath(QStringLiteral("chart.pdf"));
  if (QFileInfo::exists(pdf)) return pdf;
  const QString png = chartPng(workDir, why);
  if (png.isEmpty()) return {};
  const QString jpg = QDir(workDir).filePath(QStringLiteral("chart.jpg"));
  if (!runTool(QStringLiteral("convert"), {png, QStringLiteral("-quality"), QStringLiteral("95"), jpg}, why)) return {};
  // Ghostscript's own viewjpeg.ps places a JPEG on a page; pdfwrite writes the PDF.
  const QString absJpg = QFileInfo(jpg).absoluteFilePath();
  if (!runTool(QStringLiteral("gs"), {QStringLiteral("-q"), QStringLiteral("-dNOPAUSE"), QStringLiteral("-dBATCH"),
                                      QStringLiteral("-sDEVICE=pdfwrite"), QStringLiteral("--permit-file-read=") + absJpg,
                                      QStringLiteral("-dDEVICEWIDTHPOINTS=600"), QStringLiteral("-dDEVICEHEIGHTPOINTS=400"),
                                      QStringLiteral("-dFIXEDMEDIA"),
                                      QStringLiteral("-o"), pdf, QStringLiteral("viewjpeg.ps"), QStringLiteral("-c"),
                                      QStringLiteral("(%1) viewJPEG").arg(absJpg)},
               why))
    return {};
  return pdf;
}

QString multiPagePdfWithFigure(const QString& workDir, QString* why) {
  const QString out = QDir(workDir).filePath(QStringLiteral("manual-with-chart.pdf"));
  if (QFileInfo::exists(out)) return out;
  const QString manual = packagedPdf(workDir, why);
  if (manual.isEmpty()) return {};
  const QString chart = chartPdf(workDir, why);
  if (chart.isEmpty()) return {};
  if (!runTool(QStringLiteral("pdfunite"), {manual, chart, out}, why)) return {};
  return out;
}

QString encryptedPdf(const QString& workDir, const QString& password, QString* why) {
  const QString out = QDir(workDir).filePath(QStringLiteral("encrypted.pdf"));
  if (QFileInfo::exists(out)) return out;
  const QString manual = packagedPdf(workDir, why);
  if (manual.isEmpty()) return {};
  if (!runTool(QStringLiteral("gs"), {QStringLiteral("-q"), QStringLiteral("-dNOPAUSE"), QStringLiteral("-dBATCH"),
                                      QStringLiteral("-sDEVICE=pdfwrite"), QStringLiteral("-sOwnerPassword=owner-") + password,
                                      QStringLiteral("-sUserPassword=") + password, QStringLiteral("-dEncryptionR=3"),
                                      QStringLiteral("-dKeyLength=128"), QStringLiteral("-dFirstPage=1"), QStringLiteral("-dLastPage=2"),
                                      QStringLiteral("-o"), out, manual},
               why))
    return {};
  return out;
}

QStringList pdfWords(const QString& pdf, int page, QString* why) {
  QByteArray text;
  const QString n = QString::number(page);
  if (!runTool(QStringLiteral("pdftotext"), {QStringLiteral("-f"), n, QStringLiteral("-l"), n, pdf, QStringLiteral("-")}, why, &text))
    return {};
  return QString::fromUtf8(text).split(QRegularExpression(QStringLiteral("[^\\p{L}]+")), Qt::SkipEmptyParts);
}

}  // namespace quire::test
