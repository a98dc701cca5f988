// SPDX-License-Identifier: GPL-3.0-or-later
// Test documents nobody here wrote: PDFs shipped by Debian packages (manuals under /usr/share/doc, gzipped or
// not), and PDFs made at test time by real tools (ImageMagick draws a chart, Ghostscript makes it a PDF,
// poppler-utils' pdfunite joins it to a manual; Ghostscript encrypts). Every function returns an empty string
// and sets *why when the tools or packages are missing, so callers can QSKIP with the reason.
#pragma once

#include <QString>
#include <QStringList>

namespace quire::test {

/// Every packaged PDF found (decompressed into @p workDir when gzipped), smallest first.
QStringList packagedPdfs(const QString& workDir, QString* why);
/// One packaged PDF with a text layer (the smallest found).
QString packagedPdf(const QString& workDir, QString* why);
/// A PNG bar chart drawn by ImageMagick (600×400).
QString chartPng(const QString& workDir, QString* why);
/// A one-page PDF holding the chart as an image, made by Ghostscript.
QString chartPdf(const QString& workDir, QString* why);
/// A multi-page document with a figure: a packaged manual followed by the chart page (pdfunite).
QString multiPagePdfWithFigure(const QString& workDir, QString* why);
/// A packaged PDF re-written by Ghostscript with user password @p password.
QString encryptedPdf(const QString& workDir, const QString& password, QString* why);
/// Runs @p program with @p args; true on exit status 0 (sets *why otherwise).
bool runTool(const QString& program, const QStringList& args, QString* why, QByteArray* out = nullptr);
/// The words of @p page (1-based) of @p pdf according to poppler-utils' pdftotext.
QStringList pdfWords(const QString& pdf, int page, QString* why);

}  // namespace quire::test
