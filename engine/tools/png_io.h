// SPDX-License-Identifier: Apache-2.0
// PNG reading and writing for the `pixtral` CLI and the tests (libpng). Pixels come back 8-bit in the format
// closest to what Pillow would hand mistral-common, so the engine composites transparency itself (spec §4.1):
//   gray (1..16 bit) → gray8; gray + tRNS or gray+alpha → gray_alpha8; palette → rgb8, or rgba8 with tRNS;
//   RGB → rgb8 (a tRNS colour key is ignored: mistral-common keeps RGB images as they are); RGBA → rgba8.
// 16-bit samples keep their high byte (Pillow's RGB;16B / LA;16B unpacking; for 16-bit gray Pillow would clip
// to 255 instead, which whitens the image — we do not copy that). No gamma or EXIF handling, like Pillow.
// Other formats are refused with a clear error; so are images above kPngMaxSide per side or kPngMaxPixels in
// total, before any pixel memory is allocated.
#pragma once

#include <cstdint>
#include <string>

#include "pixtral/image.h"
#include "pixtral/status.h"

namespace pixtral {

inline constexpr int kPngMaxSide = 16384;
inline constexpr std::int64_t kPngMaxPixels = 100'000'000;

/// Decode a PNG file. Errors: not_found (missing file), unsupported (not a PNG, with a hint naming the format
/// when recognised), invalid_argument (too large), format (corrupt or truncated PNG, libpng's message), io.
Result<Image> read_png(const std::string& path);

/// Encode 8-bit pixels (any PixelFormat; honours stride) as a non-interlaced PNG.
Status write_png(const std::string& path, const ImageView& image);

}  // namespace pixtral
