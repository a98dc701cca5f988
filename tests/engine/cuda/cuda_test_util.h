// SPDX-License-Identifier: Apache-2.0
// Helpers of the CUDA parity tests: one CUDA backend per process (or the reason there is none), random bf16-exact
// inputs (never zeros) mirrored on the CPU reference backend and the GPU, NaN-poisoned outputs, and the
// normalised-MSE comparison (NaN/Inf always fail).
// ref: llama.cpp tests/test-backend-ops.cpp (nmse, per-op budgets).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "ops/backend.h"

namespace pixtral::cuda_test {

/// The CUDA backend shared by the tests of this process, or null with the reason in `why`.
ops::Backend* gpu(std::string* why);

/// Skip the current test when there is no CUDA backend (the loader's reason in the message).
#define PIXTRAL_REQUIRE_GPU()                                                             \
  std::string _why;                                                                       \
  ops::Backend* G = ::pixtral::cuda_test::gpu(&_why);                                     \
  if (!G) GTEST_SKIP() << "no CUDA backend: " << _why

/// Uniform in ±scale, rounded to bf16, never zero (|v| ≥ scale/64).
std::vector<float> random_values(std::mt19937& rng, std::size_t n, float scale = 1.0f);

/// The same host values on both backends.
struct Pair {
  ops::Backend* cpu = nullptr;
  ops::Backend* gpu = nullptr;
  ops::Tensor c, g;
  ~Pair();
};
/// Allocate [rows, cols] on both (cpu f32, gpu `gdt`) and upload `host` (nullptr: NaN poison).
std::unique_ptr<Pair> make_pair(ops::Backend* cpu, ops::Backend* gpu, std::int64_t rows, std::int64_t cols,
                                const float* host, DType gdt = DType::bf16);
/// Re-upload host values (or NaN poison) to both sides.
void reset(Pair& p, const float* host);
/// The same for the GPU side only: between repeated GPU runs, so the CPU reference result stays intact.
void reset_gpu(Pair& p, const float* host);

/// A bf16 weight uploaded to both backends (host bytes kept alive here).
struct WeightPair {
  ops::Backend* cpu = nullptr;
  ops::Backend* gpu = nullptr;
  std::vector<std::uint16_t> bits;
  ops::Weight c, g;
  ~WeightPair();
};
std::unique_ptr<WeightPair> make_weight(ops::Backend* cpu, ops::Backend* gpu, std::mt19937& rng, std::int64_t rows,
                                        std::int64_t cols, const std::string& name, float scale = 1.0f);

std::vector<float> download(ops::Backend* b, const ops::Tensor& t);

/// NMSE of gpu vs cpu: Σ(g−c)² / Σc². Adds a failure (with `what`) when any value is NaN/Inf or above budget.
double expect_close(const std::vector<float>& cpu, const std::vector<float>& gpu, double budget,
                    const std::string& what);
/// The tensors of one decode step that the device decode state drives (cuda_ext.h), on one backend.
struct DecodeStepTensors {
  ops::Tensor q, k, v;   // this step's rows: q [T, H·D], k and v [T, Hkv·D]
  ops::Tensor k_cache, v_cache;
  ops::Tensor out, emb;  // attention output [T, H·D], embedded tokens [T, *]
  const ops::Weight* table = nullptr;
};
/// embed(emb, ids); rope of q and k at `pos`; the KV append (scatter_rows at `pos`); causal attention of q over the
/// first n_keys cache rows (q_offset = pos[0]; p gives heads, head_dim and scale). In device-state mode the spans'
/// values are ignored (the device state supplies them), their sizes still count rows.
Status decode_step(ops::Backend* b, DecodeStepTensors& t, const ops::AttentionParams& p, float theta,
                   ops::RopePairs pairs, std::span<const int> pos, std::span<const int> ids, std::int64_t n_keys);

/// Bitwise equality of two downloads (determinism).
void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what);

}  // namespace pixtral::cuda_test
