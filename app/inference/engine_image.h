// SPDX-License-Identifier: GPL-3.0-or-later
// QImage → pixtral::Image for the engine, without changing a pixel value: grayscale stays gray8, images with an
// alpha channel become non-premultiplied RGBA8 (the engine composites them on white itself, Pillow's rule,
// spec §4.1), everything else RGB8. This is the app's only QImage → engine conversion: the compositing is the
// engine's, so the app and `pixtral generate` agree bit for bit.
#pragma once

#include <pixtral/image.h>

#include <QImage>
#include <QString>

namespace quire {

/// Copies @p image into a tightly packed engine image. Returns false (and sets *error) for a null or empty
/// image. Thread-safe (QImage is only read).
bool toEngineImage(const QImage& image, pixtral::Image* out, QString* error = nullptr);

}  // namespace quire
