// SPDX-License-Identifier: Apache-2.0
// Image preprocessing with mistral-common's exact semantics (spec §4): composite alpha on white (Pillow's DIV255
// rule), downscale rule with round-half-to-even, ceil to patch multiples, OpenCV INTER_CUBIC (A = −0.75, no
// antialias, float32, edge replication) and CLIP mean/std normalisation. Output CHW float32.
// ref: mistral_common/tokens/tokenizers/multimodal.py (_convert_to_rgb, transform_image, ImageEncoder);
//      OpenCV modules/imgproc/src/resize.cpp; Pillow src/libImaging/Paste.c (BLEND / DIV255)
#pragma once

#include <cstdint>
#include <vector>

#include "pixtral/image.h"
#include "pixtral/status.h"

namespace pixtral::vision {

/// Images the engine refuses outright (before allocating anything): more than this many pixels per side or in
/// total. Far above anything useful (the model sees at most max_image_size² pixels) yet small enough that every
/// size computation stays in range.
inline constexpr int kMaxImageSide = 1 << 17;                  // 131072
inline constexpr std::int64_t kMaxImagePixels = std::int64_t(1) << 28;  // 268 Mpx

/// CLIP normalisation constants, RGB order (spec §4.4).
inline constexpr double kClipMean[3] = {0.48145466, 0.4578275, 0.40821073};
inline constexpr double kClipStd[3] = {0.26862954, 0.26130258, 0.27577711};

struct PatchGrid {
  int width = 0;   ///< Wp
  int height = 0;  ///< Hp
};

/// The patch grid an image of w×h gets (spec §4.2), exactly as mistral-common's ImageEncoder computes it:
/// ratio = max(w/M, h/M) in double; if > 1 both sides are divided by it and rounded half-to-even; then
/// Wp = (w − 1) // P + 1. Errors (invalid_argument): w or h < 1, P or M outside [1, 65536], and images so thin
/// that a side rounds to 0 pixels (aspect ratio ≥ 2M:1, e.g. 1×100000 — mistral-common would assert).
Result<PatchGrid> patch_grid(int width, int height, int patch_size, int max_image_size);

/// Pillow's blend of one 8-bit channel value `c` with alpha `a` over white: DIV255(c·a + 255·(255 − a)).
inline std::uint8_t composite_on_white(std::uint32_t c, std::uint32_t a) {
  const std::uint32_t t = c * a + 255u * (255u - a) + 128u;  // ref: Pillow Paste.c BLEND, ImagingUtils.h DIV255
  return static_cast<std::uint8_t>(((t >> 8) + t) >> 8);
}

/// Check an image view before touching its pixels: non-null data, sides in [1, kMaxImageSide], at most
/// kMaxImagePixels pixels, stride ≥ the packed row width. Errors are invalid_argument and name the size.
Status check_image_view(const ImageView& view);

/// Any supported pixel format → RGB8, compositing alpha on white exactly as Pillow does (gray is replicated,
/// RGB is copied as is). Honours ImageView::stride.
Result<Image> to_rgb8(const ImageView& view);

/// OpenCV-style bicubic resize (cv2.resize(..., INTER_CUBIC) on float32) of HWC data with interleaved channels
/// (1..4). Equal sizes copy. Returns [dst_h, dst_w, channels]; empty on invalid sizes.
std::vector<float> resize_bicubic(const float* src, int src_w, int src_h, int channels, int dst_w, int dst_h);

/// Normalised pixels ready for the patch convolution.
struct Pixels {
  int width = 0;   ///< Wp * patch
  int height = 0;  ///< Hp * patch
  PatchGrid grid;
  std::vector<float> chw;  ///< [3, height, width], (v/255 − mean)/std
};

/// The whole pipeline: composite to RGB, resize to the patch grid, normalise. Streams the source row by row, so
/// memory is O(output + one source row) whatever the input size. Errors: empty, absurd or too thin images.
Result<Pixels> preprocess(const ImageView& image, int patch_size, int max_image_size);
/// The same into `out`, reusing its buffer: a session keeps one per image slot, so a 1024×1024 page does not
/// fault in 12 MB of fresh pages on every question (≈ 5 ms of the time to first token).
Status preprocess_into(const ImageView& image, int patch_size, int max_image_size, Pixels& out);

}  // namespace pixtral::vision
