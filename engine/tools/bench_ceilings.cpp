// SPDX-License-Identifier: Apache-2.0
// The two ceilings of `pixtral bench` (bench_ceilings.h), each measured on a backend of its own.
#include "bench_ceilings.h"

#include <cstdint>
#include <memory>

#include "core/tensor.h"
#include "ops/backend.h"

namespace pixtral::bench {
namespace {

/// Fill t with uniform random values in [-1, 1] (never zeros): one host block uploaded, then device copies.
Status fill_random(ops::Backend& be, ops::Tensor t, std::uint64_t seed) {
  const std::int64_t n = t.rows * t.cols;
  const std::int64_t block = std::min<std::int64_t>(n, std::int64_t(1) << 22);
  std::vector<float> host(static_cast<std::size_t>(block));
  std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& x : host) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = float(double(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
  ops::Tensor flat = t.reshaped(n, 1);
  PIXTRAL_RETURN_IF_ERROR(be.upload(flat.slice_rows(0, block), host.data()));
  for (std::int64_t r = block; r < n; r += block) {
    const std::int64_t m = std::min(block, n - r);
    PIXTRAL_RETURN_IF_ERROR(be.copy(flat.slice_rows(r, m), flat.slice_rows(0, m)));
  }
  return be.synchronize();
}

}  // namespace

Result<Ceilings> measure_ceilings(Device device, bool quick) {
  std::unique_ptr<ops::Backend> be;
  if (device == Device::cpu) {
    be = ops::make_cpu_backend(0);
  } else {
    auto r = ops::load_cuda_backend(0);
    if (!r.ok()) return r.status();
    be = std::move(r.value());
  }
  Ceilings c;
  c.card = be->device_name();
  const DType act = be->activation_dtype();  // bf16 on CUDA (the CPU keeps f32)
  const int reps = quick ? 5 : 15;
  // Copy: two 1 GiB bf16 buffers (64 MiB on the CPU smoke path), 4 copies per sample.
  {
    const std::int64_t cols = 8192, rows = device == Device::cpu ? 4096 : 65536;
    auto a = be->alloc(rows, cols, act, "bench copy source");
    if (!a.ok()) return a.status();
    auto b = be->alloc(rows, cols, act, "bench copy destination");
    if (!b.ok()) return b.status();
    PIXTRAL_RETURN_IF_ERROR(fill_random(*be, *a, 1));
    PIXTRAL_RETURN_IF_ERROR(fill_random(*be, *b, 2));
    std::vector<double> ms;
    const int per = 4;
    for (int i = 0; i < reps + 2; ++i) {
      PIXTRAL_RETURN_IF_ERROR(be->synchronize());
      const auto t0 = Clock::now();
      for (int k = 0; k < per; ++k) PIXTRAL_RETURN_IF_ERROR(be->copy(k % 2 ? *a : *b, k % 2 ? *b : *a));
      PIXTRAL_RETURN_IF_ERROR(be->synchronize());
      if (i >= 2) ms.push_back(ms_between(t0, Clock::now()) / per);
    }
    c.copy_mib = double(a->bytes()) / (1 << 20);
    c.copy_bytes_per_s = 2.0 * double(a->bytes()) / (median(ms) * 1e-3);
    be->free(*a);
    be->free(*b);
  }
  // GEMM: out[N,N] = x[N,N] · W[N,N]ᵀ through the backend's matmul (cuBLAS, fp32 accumulation).
  {
    const std::int64_t n = device == Device::cpu ? 512 : 8192;
    c.gemm_n = int(n);
    std::vector<std::uint16_t> wh(std::size_t(n * n));
    std::uint64_t s = 0x1234567;
    for (auto& x : wh) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      x = f32_to_bf16(float(double(s >> 11) * (0.04 / 9007199254740992.0) - 0.02));
    }
    WeightView view;
    view.name = "bench.gemm.weight";
    view.data = wh.data();
    view.dtype = DType::bf16;
    view.shape = {n, n};
    auto w = be->upload_weight(view);
    if (!w.ok()) return w.status();
    auto x = be->alloc(n, n, act, "bench GEMM input");
    if (!x.ok()) return x.status();
    auto y = be->alloc(n, n, act, "bench GEMM output");
    if (!y.ok()) return y.status();
    PIXTRAL_RETURN_IF_ERROR(fill_random(*be, *x, 3));
    std::vector<double> ms;
    // The ceiling is the card's best: the fastest of `reps` products after the warm-up (≥ 3 products and ≥ 30 ms,
    // so an idle GPU's lowest clocks are left behind). Not a median of long back-to-back runs: those sit at the
    // power limit (an H200 gave 615-629 TFLOP/s after 200 ms of them, below what the prefill's own GEMMs reach
    // between its memory-bound kernels), which would make the floor a figure the workload beats.
    const auto warm0 = Clock::now();
    for (int i = 0; i < 3 || ms_between(warm0, Clock::now()) < (device == Device::cpu ? 0.0 : 30.0); ++i) {
      PIXTRAL_RETURN_IF_ERROR(be->matmul(*y, *x, *w));
      PIXTRAL_RETURN_IF_ERROR(be->synchronize());
    }
    for (int i = 0; i < reps; ++i) {
      PIXTRAL_RETURN_IF_ERROR(be->synchronize());
      const auto t0 = Clock::now();
      PIXTRAL_RETURN_IF_ERROR(be->matmul(*y, *x, *w));
      PIXTRAL_RETURN_IF_ERROR(be->synchronize());
      ms.push_back(ms_between(t0, Clock::now()));
    }
    c.gemm_flops_per_s = 2.0 * double(n) * double(n) * double(n) / (*std::min_element(ms.begin(), ms.end()) * 1e-3);
    be->free(*x);
    be->free(*y);
    be->free_weight(*w);
  }
  return c;
}

}  // namespace pixtral::bench
