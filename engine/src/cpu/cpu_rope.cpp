// SPDX-License-Identifier: Apache-2.0
// RoPE rotation kernel shared by the 1-D (decoder, spec §7.3) and 2-D (vision, spec §6.3) variants; the backend
// computes the fp32 angle table, this file rotates. ref: mistral_inference/rope.py precompute_freqs_cis(_2d),
// apply_rotary_emb; transformers modeling_pixtral.py / modeling_mistral.py rotate_half.
#include <algorithm>
#include <cmath>

#include "cpu/cpu_kernels.h"

namespace pixtral::cpu {

void rope_inv_freq(float theta, int head_dim, float* f) {
  for (int m = 0; m < head_dim / 2; ++m)
    f[m] = 1.0f / std::pow(theta, float(2 * m) / float(head_dim));  // powf: fp32 in, fp32 out
}

void rope_apply(ThreadPool& pool, float* x, std::int64_t T, int n_heads, int head_dim, bool halves,
                const float* angles) {
  const int half = head_dim / 2;
  const std::int64_t row = std::int64_t(n_heads) * head_dim;
  const std::int64_t grain = std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(1, row));
  pool.parallel_for(T, grain, [&](std::int64_t t0, std::int64_t t1, int) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const float* ang = angles + t * half;
      for (int m = 0; m < half; ++m) {
        const double th = double(ang[m]);
        const float c = float(std::cos(th)), s = float(std::sin(th));
        const int ia = halves ? m : 2 * m, ib = halves ? m + half : 2 * m + 1;
        for (int h = 0; h < n_heads; ++h) {
          float* xh = x + t * row + std::int64_t(h) * head_dim;
          const float a = xh[ia], b = xh[ib];
          const float ac = a * c, bs = b * s, as = a * s, bc = b * c;  // as torch: x·cos + rotate(x)·sin
          xh[ia] = ac - bs;
          xh[ib] = as + bc;
        }
      }
    }
  });
}

}  // namespace pixtral::cpu
