// SPDX-License-Identifier: Apache-2.0
// The two ceilings `pixtral bench` divides by (../shared/docs/performance.md): the card's device-to-device copy
// bandwidth (read + write counted) and its bf16 GEMM rate through the backend's matmul, measured on a backend of
// their own; and the timing helpers the benchmark shares.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "pixtral/model.h"
#include "pixtral/status.h"

namespace pixtral::bench {

using Clock = std::chrono::steady_clock;

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

inline double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Ceilings {
  double copy_bytes_per_s = 0;  ///< read + write
  double gemm_flops_per_s = 0;
  std::string card;
  int gemm_n = 0;
  double copy_mib = 0;
};

/// Copy bandwidth (median) and GEMM rate (the fastest product after the warm-up) on a backend of its own, released
/// before the model loads. `device` cpu: the small smoke-test sizes. `quick`: fewer samples.
Result<Ceilings> measure_ceilings(Device device, bool quick);

}  // namespace pixtral::bench
