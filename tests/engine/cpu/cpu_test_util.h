// SPDX-License-Identifier: Apache-2.0
// Helpers for the CPU backend tests: random data, weights stored in a dtype (deliberately misaligned, as inside an
// mmap), device round trips and the NMSE check (NaN/Inf always fail). ref: llama.cpp tests/test-backend-ops.cpp.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ops/backend.h"

namespace pixtral::test {

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(std::uint64_t seed) : gen(seed) {}
  /// n values uniform in [-scale, scale].
  std::vector<float> uniform(std::size_t n, float scale = 1.0f) {
    std::uniform_real_distribution<float> d(-scale, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(gen);
    return v;
  }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
};

/// A weight stored as `dtype` two bytes past an aligned address (like a tensor inside a safetensors mmap).
/// `values` holds what the stored numbers decode to (the reference uses these).
struct StoredWeight {
  std::vector<unsigned char> bytes;
  std::vector<double> values;
  DType dtype = DType::f32;
  std::int64_t rows = 0, cols = 0;

  StoredWeight(const std::vector<float>& v, DType t, std::int64_t r, std::int64_t c)
      : bytes(v.size() * dtype_size(t) + 16), values(v.size()), dtype(t), rows(r), cols(c) {
    unsigned char* p = bytes.data() + 2;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (t == DType::f32) {
        std::memcpy(p + 4 * i, &v[i], 4);
        values[i] = v[i];
      } else {
        const std::uint16_t h = t == DType::bf16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
        std::memcpy(p + 2 * i, &h, 2);
        values[i] = t == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
    }
  }
  WeightView view(const std::string& name = "w") const {
    return WeightView{name, bytes.data() + 2, dtype, {rows, cols}};
  }
  ops::Weight upload(ops::Backend& be, const std::string& name = "w") const {
    auto w = be.upload_weight(view(name));
    EXPECT_TRUE(w.ok()) << w.status().to_string();
    return w.value();
  }
};

/// A device tensor holding `host` ([rows, cols]); freed by the destructor.
struct DeviceTensor {
  ops::Backend* be;
  ops::Tensor t;
  DeviceTensor(ops::Backend& b, std::int64_t rows, std::int64_t cols, const std::vector<float>* host = nullptr)
      : be(&b) {
    auto r = b.alloc(rows, cols, DType::f32, "test tensor");
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    t = r.value();
    if (host) {
      EXPECT_TRUE(b.upload(t, host->data()).ok());
    }
  }
  ~DeviceTensor() { be->free(t); }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  std::vector<float> get() const {
    std::vector<float> h(std::size_t(t.rows * t.cols));
    EXPECT_TRUE(be->download(t, h.data()).ok());
    return h;
  }
};

/// ‖a − ref‖² / ‖ref‖²; NaN/Inf in `a` give +inf (so every budget fails).
inline double nmse(const std::vector<float>& a, const std::vector<double>& ref) {
  EXPECT_EQ(a.size(), ref.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? num / den : num;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace pixtral::test
