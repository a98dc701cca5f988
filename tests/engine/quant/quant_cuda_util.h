// SPDX-License-Identifier: Apache-2.0
// What the CUDA quantized-weight tests (tst_quant_cuda, tst_quant_tma_cuda) share: a random bf16 weight held on the
// host with its view, an environment switch for one scope, a weight shape, and an attention layer's stacked
// [wq; wk; wv].
#pragma once

#include <array>
#include <cstdlib>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pixtral::quant_test {

struct Host {
  std::vector<std::uint16_t> bits;
  WeightView view;
};

inline Host make_weight(std::int64_t N, std::int64_t K, std::uint64_t seed, const std::string& name) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  Host h;
  h.bits.resize(std::size_t(N * K));
  for (auto& b : h.bits) b = f32_to_bf16(nd(g));
  h.view = WeightView{name, h.bits.data(), DType::bf16, {N, K}};
  return h;
}

/// An environment switch set for one scope (for the backend switches read at every launch), restored after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

struct Shape {
  std::int64_t N, K;
};

/// An attention layer's shape: H query heads and Hkv KV heads of D dims, K inputs.
struct QkvCase {
  int H, Hkv, D;
  std::int64_t K;
  std::int64_t kv_dim() const { return std::int64_t(Hkv) * D; }
  std::int64_t cols() const { return std::int64_t(H) * D + 2 * kv_dim(); }  // [q | k | v]
};

/// Random wq, wk, wv of a QkvCase (seeds sq, sk, sv plus D), stacked in that order by parts() — what the fused
/// QKV + RoPE + KV-append op takes.
struct QkvHost {
  Host wq, wk, wv;
  std::array<const WeightView*, 3> parts() const { return {&wq.view, &wk.view, &wv.view}; }
};
inline QkvHost make_qkv(const QkvCase& c, std::uint64_t sq, std::uint64_t sk, std::uint64_t sv) {
  return QkvHost{make_weight(std::int64_t(c.H) * c.D, c.K, sq + std::uint64_t(c.D), "wq"),
                 make_weight(c.kv_dim(), c.K, sk + std::uint64_t(c.D), "wk"),
                 make_weight(c.kv_dim(), c.K, sv + std::uint64_t(c.D), "wv")};
}

}  // namespace pixtral::quant_test
