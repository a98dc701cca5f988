// SPDX-License-Identifier: Apache-2.0
// The CUDA backend's loading and fault behaviour: the loader reports a specific reason instead of crashing (no
// library, no driver, no device); out-of-memory errors name the allocation; injected allocation failures leave the
// backend usable; invalid shapes are refused; a captured CUDA graph replays the same work.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "cuda/cuda_ext.h"
#include "cuda_test_util.h"

namespace pixtral {
namespace {

TEST(CudaLoader, MissingLibraryIsNamedNotFound) {
  ASSERT_EQ(setenv("PIXTRAL_CUDA_LIBRARY", "/nonexistent/dir/libpixtral_cuda.so", 1), 0);
  auto r = ops::load_cuda_backend(0);
  unsetenv("PIXTRAL_CUDA_LIBRARY");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::not_found);
  EXPECT_NE(r.status().message().find("/nonexistent/dir/libpixtral_cuda.so"), std::string::npos)
      << r.status().message();
}

TEST(CudaLoader, LoadsOrExplainsWhyNot) {
  auto r = ops::load_cuda_backend(0);
  if (r.ok()) {
    EXPECT_EQ((*r)->name(), "cuda");
    EXPECT_EQ((*r)->activation_dtype(), DType::bf16);
    EXPECT_FALSE((*r)->device_name().empty());
    EXPECT_NE(ops::cuda_extension(**r), nullptr);
    return;
  }
  // Without a GPU the reason must be specific: library missing, or driver/device problems.
  const auto code = r.status().code();
  EXPECT_TRUE(code == ErrorCode::not_found || code == ErrorCode::device) << r.status().to_string();
  const std::string& m = r.status().message();
  EXPECT_TRUE(m.find("libpixtral_cuda.so") != std::string::npos || m.find("driver") != std::string::npos ||
              m.find("device") != std::string::npos)
      << m;
  std::cout << "[ info ] CUDA backend unavailable here: " << r.status().to_string() << "\n";
}

TEST(CudaLoader, InvalidDeviceIndexIsRefused) {
  std::string why;
  if (!cuda_test::gpu(&why)) GTEST_SKIP() << "no CUDA backend: " << why;
  auto r = ops::load_cuda_backend(1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::invalid_argument) << r.status().to_string();
}

TEST(CudaBackend, CpuBackendHasNoCudaExtension) {
  auto cpu = ops::make_cpu_backend(1);
  EXPECT_EQ(ops::cuda_extension(*cpu), nullptr);
}

TEST(CudaBackend, OutOfMemoryNamesTheAllocationAndBackendStaysUsable) {
  PIXTRAL_REQUIRE_GPU();
  auto r = G->alloc(std::int64_t(1) << 26, std::int64_t(1) << 20, DType::f32, "kv cache (test)");  // 256 TiB
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::out_of_memory);
  EXPECT_NE(r.status().message().find("kv cache (test)"), std::string::npos) << r.status().message();
  auto ok = G->alloc(4, 4, DType::bf16, "small");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  G->free(*ok);
  EXPECT_TRUE(G->synchronize().ok());
}

// Host indices (positions, key ranges) go through the pinned staging ring; an op that stages the same bytes as a
// recent one reuses that device copy. Positions that change, repeat, and come back after the ring has wrapped
// (each 16 KB, 64 to a 1 MiB half: 300 ops wrap it twice) must always give the CPU's rotation.
TEST(CudaBackend, StagedIndicesAreReusedOnlyWhileEqualAndValid) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(11);
  const std::int64_t T = 4000;
  const int heads = 1, D = 64;
  const auto xh = cuda_test::random_values(rng, std::size_t(T * heads * D));
  auto x = cuda_test::make_pair(cpu.get(), G, T, heads * D, xh.data());
  auto random_positions = [&] {
    std::vector<int> p(static_cast<std::size_t>(T));
    for (auto& v : p) v = int(rng() % 100000);
    return p;
  };
  const std::vector<int> a = random_positions(), b = random_positions();
  for (int i = 0; i < 300; ++i) {
    const std::vector<int> pos = i % 4 == 0 || i % 4 == 3 ? a : i % 4 == 1 ? b : random_positions();
    cuda_test::reset(*x, xh.data());
    ASSERT_TRUE(cpu->rope(x->c, heads, D, pos, 1e6f, ops::RopePairs::halves).ok());
    ASSERT_TRUE(G->rope(x->g, heads, D, pos, 1e6f, ops::RopePairs::halves).ok());
    const double e = cuda_test::expect_close(cuda_test::download(cpu.get(), x->c), cuda_test::download(G, x->g),
                                             1e-5, "rope after " + std::to_string(i) + " staged copies");
    if (e > 1e-5) break;  // one bf16 rounding; stale positions would rotate by other angles (error ~1)
  }
}

TEST(CudaBackend, InjectedAllocationFailures) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  const std::size_t before = ext->allocated_bytes();
  // Every allocation site of a weight upload + activation: fail the n-th, then succeed.
  for (int n = 1; n <= 2; ++n) {
    ext->fail_allocation_after(n);
    std::vector<std::uint16_t> bits(64 * 8, f32_to_bf16(0.5f));
    auto w = G->upload_weight(WeightView{"layers.0.attention.wq.weight", bits.data(), DType::bf16, {64, 8}});
    auto t = G->alloc(3, 64, DType::bf16, "activation x");
    const bool failed_w = !w.ok(), failed_t = !t.ok();
    EXPECT_EQ(failed_w, n == 1);
    EXPECT_EQ(failed_t, n == 2);
    if (failed_w) {
      EXPECT_NE(w.status().message().find("layers.0.attention.wq.weight"), std::string::npos);
    }
    if (failed_t) {
      EXPECT_NE(t.status().message().find("activation x"), std::string::npos);
    }
    if (w.ok()) G->free_weight(*w);
    if (t.ok()) G->free(*t);
  }
  ext->fail_allocation_after(0);
  EXPECT_EQ(ext->allocated_bytes(), before);
}

TEST(CudaBackend, InvalidShapesAreRefused) {
  PIXTRAL_REQUIRE_GPU();
  auto a = G->alloc(2, 8, DType::bf16, "a");
  auto b = G->alloc(2, 9, DType::bf16, "b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(G->add(*a, *b).code(), ErrorCode::invalid_argument);
  std::vector<std::uint16_t> bits(9 * 8, f32_to_bf16(0.25f));
  auto w = G->upload_weight(WeightView{"w", bits.data(), DType::bf16, {9, 8}});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(G->matmul(*a, *a, *w).code(), ErrorCode::invalid_argument);  // out must be [2, 9]
  const int bad_ids[] = {0, 9};
  EXPECT_EQ(G->embed(*a, *w, bad_ids).code(), ErrorCode::invalid_argument);  // vocab = 9 rows
  G->free_weight(*w);
  G->free(*a);
  G->free(*b);
}

TEST(CudaBackend, GraphReplayRepeatsTheCapturedWork) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  std::mt19937 rng(7);
  auto hv = cuda_test::random_values(rng, 4096);
  auto dv = cuda_test::random_values(rng, 4096);
  auto h = G->alloc(1, 4096, DType::f32, "h");
  auto d = G->alloc(1, 4096, DType::f32, "delta");
  ASSERT_TRUE(h.ok() && d.ok());
  ASSERT_TRUE(G->upload(*h, hv.data()).ok());
  ASSERT_TRUE(G->upload(*d, dv.data()).ok());
  ASSERT_TRUE(ext->begin_capture().ok());
  ASSERT_TRUE(G->add(*h, *d).ok());
  ASSERT_TRUE(ext->end_capture().ok());
  auto before = cuda_test::download(G, *h);
  cuda_test::expect_same_bits(hv, before, "capture must not execute");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ext->replay().ok());
  ASSERT_TRUE(G->synchronize().ok());
  auto after = cuda_test::download(G, *h);
  for (std::size_t i = 0; i < hv.size(); ++i) EXPECT_FLOAT_EQ(after[i], ((hv[i] + dv[i]) + dv[i]) + dv[i]);
  G->free(*h);
  G->free(*d);
}

TEST(CudaBackend, DecodeStateRefusesBadValuesAndCapture) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  ASSERT_NE(ext->decode_state(), nullptr);
  EXPECT_EQ(ext->set_decode_state(-1, 1).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(ext->set_decode_state(10, ops::kDecodeStateMaxRows + 1).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(ext->set_decode_tokens(std::vector<int>(ops::kDecodeStateMaxRows + 1, 1)).code(),
            ErrorCode::invalid_argument);
  EXPECT_TRUE(ext->set_decode_state(10, 2).ok());
  ASSERT_TRUE(ext->begin_capture().ok());
  const Status in_capture = ext->set_decode_state(11, 1);
  ASSERT_TRUE(ext->end_capture().ok());
  EXPECT_EQ(in_capture.code(), ErrorCode::invalid_argument) << in_capture.to_string();
  // Outside device-state mode the host spans still rule (the parity test covers the mode itself).
  EXPECT_FALSE(ext->device_state_mode());
  EXPECT_TRUE(G->synchronize().ok());
}

}  // namespace
}  // namespace pixtral
