// SPDX-License-Identifier: Apache-2.0
// Element types, bf16/f16 conversion and host weight views.
// Layout conventions, written once: tensors are row-major; a matrix [rows, cols] has row stride cols;
// a linear layer's weight W is [out, in] and `matmul(x, W)` means x · Wᵀ (PyTorch nn.Linear);
// activations are [n_tokens, features] with heads contiguous inside a row: (n_tok, n_heads * head_dim).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pixtral {

enum class DType : std::uint8_t { f32, bf16, f16 };

inline std::size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::f32 ? "f32" : t == DType::bf16 ? "bf16" : "f16"; }

inline float bf16_to_f32(std::uint16_t h) {
  std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
/// Round to nearest even (NaN stays NaN), as torch's .to(torch.bfloat16).
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}
float f16_to_f32(std::uint16_t h);
/// Round to nearest even, as torch's .to(torch.float16) (overflow → inf).
std::uint16_t f32_to_f16(float f);

/// Round a float to the nearest value representable in `t` (identity for f32).
inline float round_to_dtype(float f, DType t) {
  if (t == DType::bf16) return bf16_to_f32(f32_to_bf16(f));
  if (t == DType::f16) return f16_to_f32(f32_to_f16(f));
  return f;
}

/// Convert n elements of type `t` at `src` (possibly unaligned, e.g. inside an mmap) to fp32.
void convert_to_f32(const void* src, DType t, std::size_t n, float* dst);

/// A read-only view of a tensor stored in a checkpoint (pointer into an mmap). Shape as stored.
struct WeightView {
  std::string name;  ///< canonical (Mistral-native) name
  const void* data = nullptr;
  DType dtype = DType::bf16;
  std::vector<std::int64_t> shape;

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::size_t bytes() const { return std::size_t(numel()) * dtype_size(dtype); }
  std::int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  std::int64_t cols() const { return shape.empty() ? 1 : numel() / shape[0]; }
};

}  // namespace pixtral
