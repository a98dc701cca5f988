// SPDX-License-Identifier: Apache-2.0
// Image preprocessing with mistral-common's exact semantics (spec §4): composite alpha on white (Pillow's DIV255
// rule), downscale rule with round-half-to-even, ceil to patch multiples, OpenCV INTER_CUBIC (A = −0.75, no
// antialias, float32, edge replication) and CLIP mean/std normalisation. Output CHW float32.
// ref: mistral_common/tokens/tokenizers/image.py (ImageEncoder); OpenCV modules/imgproc/src/resize.cpp
#pragma once

#include <vector>

#include "pixtral/image.h"
#include "pixtral/status.h"

namespace pixtral::vision {

struct PatchGrid {
  int width = 0;   ///< Wp
  int height = 0;  ///< Hp
};

/// The patch grid an image of w×h gets (spec §4.2). Errors on w or h < 1.
Result<PatchGrid> patch_grid(int width, int height, int patch_size, int max_image_size);

/// Any supported pixel format → RGB8, compositing alpha on white exactly as Pillow does.
Result<Image> to_rgb8(const ImageView& view);

/// OpenCV-style bicubic resize of float HWC data (channels interleaved).
std::vector<float> resize_bicubic(const float* src, int src_w, int src_h, int channels, int dst_w, int dst_h);

/// Normalised pixels ready for the patch convolution.
struct Pixels {
  int width = 0;   ///< Wp * patch
  int height = 0;  ///< Hp * patch
  PatchGrid grid;
  std::vector<float> chw;  ///< [3, height, width], (v/255 − mean)/std
};

/// The whole pipeline: to RGB, resize to the patch grid, normalise. Errors: empty or absurd images.
Result<Pixels> preprocess(const ImageView& image, int patch_size, int max_image_size);

}  // namespace pixtral::vision
