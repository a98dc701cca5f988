// SPDX-License-Identifier: GPL-3.0-or-later
// Pixel statistics for tests: "not blank" means the luminance varies (a white page or a flat fill has ~0).
#pragma once

#include <QImage>
#include <cmath>

namespace quire::test {

/// Variance of the grey level (0–255) over @p image, sampled on a grid of at most ~40000 points.
inline double greyVariance(const QImage& image) {
  if (image.isNull()) return 0;
  const QImage img = image.convertToFormat(QImage::Format_RGB32);
  const int step = std::max(1, int(std::sqrt(double(img.width()) * img.height() / 40000.0)));
  double sum = 0, sum2 = 0;
  long n = 0;
  for (int y = 0; y < img.height(); y += step) {
    const QRgb* line = reinterpret_cast<const QRgb*>(img.constScanLine(y));
    for (int x = 0; x < img.width(); x += step) {
      const double g = qGray(line[x]);
      sum += g;
      sum2 += g * g;
      ++n;
    }
  }
  const double mean = sum / n;
  return sum2 / n - mean * mean;
}

}  // namespace quire::test
