// SPDX-License-Identifier: GPL-3.0-or-later
// Model images: what the chat hands to the engine for a page or a region of a page.
// PDF pages/regions are rendered by Poppler directly at the engine's size (longest side = maxSide, 1024 for
// Pixtral-12B) — never rendered large and resampled. Image files and crops of them keep their own resolution:
// the engine applies the model's resize itself, so nothing is resampled twice.
// Handing a model image to the engine is inference/engine_image.h toEngineImage(): alpha is kept and the engine
// composites it on white (Pillow's rule, spec §4.1) — the one conversion path, shared with `pixtral generate`.
#pragma once

#include "documents/document.h"

#include <QImage>
#include <QRectF>

namespace quire {

/// The model image of a whole page. Thread-safe; may be slow (call off the GUI thread).
QImage modelImageForPage(const Document& doc, int page, int maxSide = 1024);

/// The model image of @p normalisedRect (0–1, origin top-left) on @p page. Thread-safe.
QImage modelImageForRegion(const Document& doc, int page, const QRectF& normalisedRect, int maxSide = 1024);

}  // namespace quire
