// SPDX-License-Identifier: Apache-2.0
// OpenCV INTER_CUBIC on float32, written from the description of resize.cpp: per axis a table of 4 clamped source
// taps and 4 Keys (A = −0.75) weights computed in float exactly as cv::hal::resize tabulates them; a horizontal
// pass per source row (float, taps summed left to right), then a vertical pass over 4 horizontally resampled rows.
// No antialiasing, no clamping of the output. Rows are streamed: each needed source row is fetched once, in
// increasing order, so a huge source never has to exist as one float buffer.
// ref: opencv modules/imgproc/src/resize.cpp interpolateCubic, hal::resize (xofs/alpha tables), HResizeCubic,
//      VResizeCubic, cv::resize (equal sizes → copy)
#pragma once

#include <functional>
#include <vector>

namespace pixtral::vision {

/// Source taps and weights of one axis.
struct CubicAxis {
  std::vector<int> index;     ///< [dst_len, 4] source indices, clamped to [0, src_len − 1] (edge replication)
  std::vector<float> weight;  ///< [dst_len, 4] Keys weights for those taps
};

/// The tap table for resizing an axis of src_len samples to dst_len (both ≥ 1).
CubicAxis cubic_axis(int src_len, int dst_len);

/// Fills `out` with source row `sy` as src_w·channels floats.
using RowFetcher = std::function<void(int sy, float* out)>;

/// Resize src_w×src_h → dst_w×dst_h (channels interleaved) into dst ([dst_h, dst_w, channels] floats). Source
/// rows come from `fetch`, each at most once and in increasing order. When both sizes are equal the rows are
/// copied, as cv::resize does. threads > 1: the destination rows are split into that many bands computed
/// concurrently (same values as one thread); `fetch` is then called from several threads at once, and a source
/// row a band edge shares is fetched once per band (in increasing order within each band).
void resize_cubic_rows(int src_w, int src_h, int channels, int dst_w, int dst_h, const RowFetcher& fetch,
                       float* dst, int threads = 1);

}  // namespace pixtral::vision
