// SPDX-License-Identifier: Apache-2.0
// OpenCV-compatible bicubic resize (see resize.h for the contract).
// ref: opencv modules/imgproc/src/resize.cpp
#include "vision/resize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "core/bands.h"

namespace pixtral::vision {
namespace {

// Keys cubic with A = −0.75, evaluated in float with OpenCV's operation order (interpolateCubic), so the weights
// are bit-identical to the ones cv2 uses for float images.
void cubic_weights(float x, float* w) {
  const float A = -0.75f;
  w[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
  w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
  w[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
  w[3] = 1.f - w[0] - w[1] - w[2];
}

// One horizontally resampled row: D[dx·cn + c] = Σ_k S[idx[dx,k]·cn + c] · w[dx,k], summed k = 0..3 in order
// (HResizeCubic's expression; its border branch starts from 0 and adds in the same order: same result).
void resample_row(const float* S, int cn, const CubicAxis& ax, int dst_w, float* D) {
  const int* idx = ax.index.data();
  const float* w = ax.weight.data();
  if (cn == 3) {  // the hot case: RGB
    for (int dx = 0; dx < dst_w; ++dx, idx += 4, w += 4, D += 3) {
      const float* s0 = S + idx[0] * 3;
      const float* s1 = S + idx[1] * 3;
      const float* s2 = S + idx[2] * 3;
      const float* s3 = S + idx[3] * 3;
      D[0] = s0[0] * w[0] + s1[0] * w[1] + s2[0] * w[2] + s3[0] * w[3];
      D[1] = s0[1] * w[0] + s1[1] * w[1] + s2[1] * w[2] + s3[1] * w[3];
      D[2] = s0[2] * w[0] + s1[2] * w[1] + s2[2] * w[2] + s3[2] * w[3];
    }
    return;
  }
  for (int dx = 0; dx < dst_w; ++dx, idx += 4, w += 4, D += cn)
    for (int c = 0; c < cn; ++c)
      D[c] = S[idx[0] * cn + c] * w[0] + S[idx[1] * cn + c] * w[1] + S[idx[2] * cn + c] * w[2] +
             S[idx[3] * cn + c] * w[3];
}

// Destination rows [dy0, dy1) with their own cache of 4 horizontally resampled rows and their own source row.
void resize_band(int src_w, int cn, int dst_w, const CubicAxis& xs, const CubicAxis& ys, const RowFetcher& fetch,
                 float* dst, int dy0, int dy1) {
  const std::size_t dst_row = std::size_t(dst_w) * cn;
  // A cache of 4 horizontally resampled rows, tagged by source row. The rows a destination row needs are
  // non-decreasing in dy, so evicting the lowest tag not needed now never drops a row needed later.
  std::vector<float> src_row(std::size_t(src_w) * cn);      // (src_w, cn)
  std::vector<float> slots(4 * dst_row);                      // (4, dst_w, cn)
  std::array<int, 4> tag = {-1, -1, -1, -1};
  for (int dy = dy0; dy < dy1; ++dy) {
    const int* need = &ys.index[std::size_t(dy) * 4];
    const float* b = &ys.weight[std::size_t(dy) * 4];
    std::array<const float*, 4> rows{};
    for (int k = 0; k < 4; ++k) {
      int slot = -1;
      for (int j = 0; j < 4; ++j)
        if (tag[j] == need[k]) slot = j;
      if (slot < 0) {
        for (int j = 0; j < 4; ++j) {
          if (std::find(need, need + 4, tag[j]) != need + 4) continue;  // still needed by this dy
          if (slot < 0 || tag[j] < tag[slot]) slot = j;
        }
        fetch(need[k], src_row.data());
        resample_row(src_row.data(), cn, xs, dst_w, &slots[std::size_t(slot) * dst_row]);
        tag[slot] = need[k];
      }
      rows[k] = &slots[std::size_t(slot) * dst_row];
    }
    // VResizeCubic: S0·b0 + S1·b1 + S2·b2 + S3·b3 in float.
    float* D = dst + dy * dst_row;
    for (std::size_t x = 0; x < dst_row; ++x)
      D[x] = rows[0][x] * b[0] + rows[1][x] * b[1] + rows[2][x] * b[2] + rows[3][x] * b[3];
  }
}

}  // namespace

CubicAxis cubic_axis(int src_len, int dst_len) {
  CubicAxis ax;
  ax.index.resize(std::size_t(dst_len) * 4);
  ax.weight.resize(std::size_t(dst_len) * 4);
  // cv::resize: inv_scale = dst/src (double), scale = 1/inv_scale — not src/dst, which can differ in the last bit.
  const double inv_scale = double(dst_len) / src_len;
  const double scale = 1. / inv_scale;
  for (int d = 0; d < dst_len; ++d) {
    float f = float((d + 0.5) * scale - 0.5);
    const int s = int(std::floor(f));
    f -= float(s);
    cubic_weights(f, &ax.weight[std::size_t(d) * 4]);
    for (int k = 0; k < 4; ++k)  // taps s−1 .. s+2, clamped (HResizeCubic's border loop; resizeGeneric_'s clip)
      ax.index[std::size_t(d) * 4 + k] = std::clamp(s - 1 + k, 0, src_len - 1);
  }
  return ax;
}

void resize_cubic_rows(int src_w, int src_h, int cn, int dst_w, int dst_h, const RowFetcher& fetch, float* dst,
                       int threads) {
  const std::size_t dst_row = std::size_t(dst_w) * cn;
  if (src_w == dst_w && src_h == dst_h) {  // cv::resize: "Source and destination are of same size. Use simple copy."
    for_bands(dst_h, threads, [&](int y0, int y1) {
      for (int y = y0; y < y1; ++y) fetch(y, dst + y * dst_row);
    });
    return;
  }
  const CubicAxis xs = cubic_axis(src_w, dst_w);
  const CubicAxis ys = cubic_axis(src_h, dst_h);
  for_bands(dst_h, threads, [&](int dy0, int dy1) { resize_band(src_w, cn, dst_w, xs, ys, fetch, dst, dy0, dy1); });
}

}  // namespace pixtral::vision
