// SPDX-License-Identifier: Apache-2.0
// The tuned prefill GEMM (engine/src/cuda/cuda_gemm.h): matmuls of ≥ kGemmTuneMinRows (512) rows — odd N, bf16 and
// f32 outputs, bf16 and f32 inputs — against the CPU reference within the matmul budget of tst_cuda_ops.cpp, the
// first call (which tunes) and the second (cached algorithm) bit-identical. PIXTRAL_CUDA_GEMM_TUNE is read once per
// process, so the other settings run as child processes of this binary (the same test, PIXTRAL_CUDA_GEMM_LOG=1 so
// their choices can be read): =0 (GemmEx, must still be correct and tune nothing), =lt (cuBLASLt only: rows of a T
// must also be bit-identical to the same rows of another T of the same bucket, as the bucket's algorithm is reused),
// and the default (GemmEx among the timed candidates).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/wait.h>

#include "cuda_test_util.h"

namespace pixtral {
namespace {

using cuda_test::download;
using cuda_test::expect_close;
using cuda_test::expect_same_bits;
using cuda_test::make_pair;
using cuda_test::make_weight;
using cuda_test::random_values;
using cuda_test::reset_gpu;

constexpr double kDot = 3e-5;  // tst_cuda_ops.cpp Matmul: rounded operands inside long dot products

class CudaGemm : public ::testing::Test {
 protected:
  void SetUp() override { cpu_ = ops::make_cpu_backend(2); }
  std::unique_ptr<ops::Backend> cpu_;
  std::mt19937 rng_{4242};
};

bool lt_only() {
  const char* e = std::getenv("PIXTRAL_CUDA_GEMM_TUNE");
  return e && !std::strcmp(e, "lt");
}

TEST_F(CudaGemm, MatchesCpuAndRepeats) {
  PIXTRAL_REQUIRE_GPU();
  // T and T2 in the same bucket (513..1024 → 1024; 1025..2048 → 2048). The bucket is tuned at T.
  struct Case { std::int64_t T, T2, K, N; DType x_t, out_t; bool bias; };
  const Case cases[] = {
      {520, 1000, 256, 333, DType::bf16, DType::bf16, false},   // odd N, bf16 out
      {700, 1024, 320, 1024, DType::bf16, DType::f32, false},   // f32 out
      {1000, 600, 512, 257, DType::bf16, DType::bf16, true},    // odd N, bias
      {600, 900, 768, 1024, DType::f32, DType::bf16, false},    // f32 input (converted to bf16 first)
      {1100, 2048, 128, 96, DType::bf16, DType::f32, false},    // bucket 2048
      {512, 512, 384, 200, DType::bf16, DType::bf16, false},    // exactly the threshold
  };
  for (const Case& c : cases) {
    const std::string what = "matmul T=" + std::to_string(c.T) + " (and " + std::to_string(c.T2) + ") K=" +
                             std::to_string(c.K) + " N=" + std::to_string(c.N) + " x " + dtype_name(c.x_t) +
                             " out " + dtype_name(c.out_t) + (c.bias ? " +bias" : "");
    SCOPED_TRACE(what);
    const std::int64_t rows = std::max(c.T, c.T2);
    auto xh = random_values(rng_, std::size_t(rows * c.K));
    auto x = make_pair(cpu_.get(), G, rows, c.K, xh.data(), c.x_t);
    auto w = make_weight(cpu_.get(), G, rng_, c.N, c.K, "w", 1.0f / std::sqrt(float(c.K)));
    auto b = make_weight(cpu_.get(), G, rng_, c.N, 1, "bias");
    auto out = make_pair(cpu_.get(), G, c.T, c.N, nullptr, c.out_t);
    const ops::Tensor xc = x->c.slice_rows(0, c.T), xg = x->g.slice_rows(0, c.T);
    ASSERT_TRUE(cpu_->matmul(out->c, xc, w->c, c.bias ? &b->c : nullptr).ok());
    const auto ref = download(cpu_.get(), out->c);

    std::vector<float> got[2];
    for (auto& g : got) {  // first call: tuning + the chosen algorithm; second: the cached one
      reset_gpu(*out, nullptr);
      const Status st = G->matmul(out->g, xg, w->g, c.bias ? &b->g : nullptr);
      ASSERT_TRUE(st.ok()) << st.to_string();
      g = download(G, out->g);
    }
    expect_close(ref, got[0], kDot, what);
    expect_same_bits(got[0], got[1], what + " (second call)");

    // Another T of the same bucket: its first T rows are the same products, so the same algorithm gives the same
    // bits (cuBLASLt only: GemmEx may pick another kernel for another T).
    auto out2 = make_pair(cpu_.get(), G, c.T2, c.N, nullptr, c.out_t);
    const Status st = G->matmul(out2->g, x->g.slice_rows(0, c.T2), w->g, c.bias ? &b->g : nullptr);
    ASSERT_TRUE(st.ok()) << st.to_string();
    auto got2 = download(G, out2->g);
    const std::int64_t common = std::min(c.T, c.T2) * c.N;
    if (lt_only()) {
      expect_same_bits(std::vector<float>(got[0].begin(), got[0].begin() + common),
                       std::vector<float>(got2.begin(), got2.begin() + common), what + " (other T, same bucket)");
    }
    // Correct in any mode.
    auto out2c = make_pair(cpu_.get(), G, c.T2, c.N, nullptr, c.out_t);
    ASSERT_TRUE(cpu_->matmul(out2c->c, x->c.slice_rows(0, c.T2), w->c, c.bias ? &b->c : nullptr).ok());
    expect_close(download(cpu_.get(), out2c->c), got2, kDot, what + " (other T)");
  }
}

/// Runs MatchesCpuAndRepeats in a child process with PIXTRAL_CUDA_GEMM_TUNE=`tune` and the choice log on; returns
/// the child's output (stdout + stderr) and its exit status.
std::string run_child(const char* tune, int* exit_code) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    *exit_code = -1;
    return "readlink /proc/self/exe failed";
  }
  exe[n] = 0;
  const std::string cmd = std::string("env -u GTEST_OUTPUT PIXTRAL_CUDA_GEMM_LOG=1 ") +
                          (tune ? std::string("PIXTRAL_CUDA_GEMM_TUNE=") + tune : std::string("-u PIXTRAL_CUDA_GEMM_TUNE")) +
                          " '" + exe + "' --gtest_filter=CudaGemm.MatchesCpuAndRepeats 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *exit_code = -1;
    return "popen failed: " + cmd;
  }
  std::string out;
  char buf[4096];
  while (std::size_t k = std::fread(buf, 1, sizeof buf, p)) out.append(buf, k);
  const int st = pclose(p);
  *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (std::size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) ++n;
  return n;
}

TEST_F(CudaGemm, TuningOffStillCorrect) {
  PIXTRAL_REQUIRE_GPU();
  int code = 0;
  const std::string out = run_child("0", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(count(out, "[  PASSED  ] 1 test"), 1) << out;
  EXPECT_EQ(count(out, "pixtral cuda gemm:"), 0) << "PIXTRAL_CUDA_GEMM_TUNE=0 still tuned:\n" << out;
}

TEST_F(CudaGemm, LtOnlySameBitsAcrossBucket) {
  PIXTRAL_REQUIRE_GPU();
  int code = 0;
  const std::string out = run_child("lt", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(count(out, "[  PASSED  ] 1 test"), 1) << out;
  // Six buckets tuned (one per case; shapes differ), none may keep GemmEx or time it.
  EXPECT_EQ(count(out, "pixtral cuda gemm: N="), 6) << out;
  EXPECT_EQ(count(out, "-> GemmEx"), 0) << out;
  EXPECT_EQ(count(out, " ex0:"), 0) << out;
}

TEST_F(CudaGemm, DefaultTimesGemmExToo) {
  PIXTRAL_REQUIRE_GPU();
  int code = 0;
  const std::string out = run_child(nullptr, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(count(out, "[  PASSED  ] 1 test"), 1) << out;
  EXPECT_EQ(count(out, "pixtral cuda gemm: N="), 6) << out;
  EXPECT_EQ(count(out, " ex0:"), 6) << out;  // GemmEx timed in every bucket
  std::printf("%s", out.c_str());            // the choices, for the record
}

}  // namespace
}  // namespace pixtral
