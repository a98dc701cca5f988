// SPDX-License-Identifier: Apache-2.0
// Prefill GEMMs: cublasGemmEx, and cuBLASLt algorithms timed once per shape bucket (see cuda_gemm.h for the rules).
// The choices live in one process-wide registry (a mutex around it), keyed by device, so every backend of the
// process runs the same algorithm for the same shape and reruns are bit-identical.
// Column-major view used throughout: outᵀ[N, T] = W[N, K] (stored as col-major [K, N], transposed) · xᵀ[K, T].
// ref: cuBLAS docs (cuBLASLt API: cublasLtMatmulAlgoGetHeuristic, cublasLtMatmulAlgoConfigGetAttribute,
//      cublasLtMatmulAlgoCheck, cublasLtMatmul); engine/src/cuda/lab/gemm_lab.cu.
#include "cuda/cuda_gemm.h"

#include <cublasLt.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace pixtral::cuda {
namespace {

constexpr int kMaxCandidates = 8;
constexpr float kStableMargin = 1.03f;         // a later candidate must be > 3 % faster to displace an earlier one
constexpr std::size_t kMaxExactPlans = 4096;   // exact-T plans kept before the cache is dropped and rebuilt

cudaDataType_t out_type(DType t) { return t == DType::f32 ? CUDA_R_32F : CUDA_R_16BF; }

/// Host descriptors of one exact problem (T, N, K, output type).
struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  LtDescs() = default;
  LtDescs(const LtDescs&) = delete;
  LtDescs& operator=(const LtDescs&) = delete;
  ~LtDescs() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

Status make_descs(LtDescs& d, DType out_t, std::int64_t T, std::int64_t N, std::int64_t K) {
  PIXTRAL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  PIXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  PIXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  PIXTRAL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, CUDA_R_16BF, std::uint64_t(K), std::uint64_t(N), K));
  PIXTRAL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, CUDA_R_16BF, std::uint64_t(K), std::uint64_t(T), K));
  PIXTRAL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, out_type(out_t), std::uint64_t(N), std::uint64_t(T), N));
  return {};
}

/// Split-K results are only kept when no partial sums meet in the output: splitK 1, or the partial sums stored in
/// fp32 in the workspace and added in a separate step (fixed order). In-place reduction (counters in the workspace,
/// sums in the bf16 output) and output-type reduction are left out, as GemmEx's handle disallows reduced-precision
/// reduction and atomics.
bool deterministic(const cublasLtMatmulAlgo_t& algo) {
  std::int32_t splitk = 1;
  std::uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
  std::size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk,
                                           &written) != CUBLAS_STATUS_SUCCESS)
    return false;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme, sizeof scheme,
                                           &written) != CUBLAS_STATUS_SUCCESS)
    return false;
  return splitk <= 1 || scheme == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
}

/// Largest power of two ≤ 256 dividing every pointer (cuBLASLt's alignment preference; part of the cache key).
std::uint32_t alignment(const void* a, const void* b, const void* c) {
  const std::uintptr_t bits = reinterpret_cast<std::uintptr_t>(a) | reinterpret_cast<std::uintptr_t>(b) |
                              reinterpret_cast<std::uintptr_t>(c) | 256u;
  return std::uint32_t(bits & (~bits + 1));
}

// (device, N, K, output dtype, T bucket, alignment)
using BucketKey = std::tuple<int, std::int64_t, std::int64_t, int, std::int64_t, std::uint32_t>;
using ExactKey = std::tuple<BucketKey, std::int64_t>;

struct Choice {
  bool lt = false;  // false: GemmEx
  cublasLtMatmulAlgo_t algo{};
};
struct Plan {  // one exact T of a bucket whose choice is a cuBLASLt algorithm
  bool lt = false;  // false: the check failed for this T, GemmEx
  std::unique_ptr<LtDescs> descs;
};

struct Registry {
  std::mutex mu;
  std::map<BucketKey, Choice> choices;
  std::map<ExactKey, Plan> plans;
  std::map<int, cublasLtHandle_t> handles;  // one per device, created on first use
};
// Never destroyed: the handles and descriptors live as long as the process (no teardown-order questions at exit).
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

bool gemm_log() {
  static const bool on = [] {
    const char* e = std::getenv("PIXTRAL_CUDA_GEMM_LOG");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return on;
}

Result<cublasLtHandle_t> lt_handle(Registry& r, int device) {
  auto it = r.handles.find(device);
  if (it != r.handles.end()) return it->second;
  cublasLtHandle_t h = nullptr;
  PIXTRAL_CUBLAS_CHECK(cublasLtCreate(&h));
  r.handles.emplace(device, h);
  return h;
}

Status lt_matmul(cublasLtHandle_t h, const GemmContext& ctx, const LtDescs& d, const cublasLtMatmulAlgo_t& algo,
                 void* out, const bf16* x, const bf16* w) {
  const float alpha = 1.f, beta = 0.f;
  PIXTRAL_CUBLAS_CHECK(cublasLtMatmul(h, d.op, &alpha, w, d.a, x, d.b, &beta, out, d.c, out, d.c, &algo,
                                      ctx.workspace, ctx.workspace_bytes, ctx.stream));
  return {};
}

/// Events bracketing the timed runs (created for one tuning, destroyed after).
struct EventPair {
  cudaEvent_t a = nullptr, b = nullptr;
  ~EventPair() {
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
  }
};

/// 1 warm run, then the min of 2 timed runs, in ms. `run` returns false when the candidate cannot run (skipped).
template <class Run>
Status time_candidate(cudaStream_t s, EventPair& ev, Run&& run, float* ms, bool* ran) {
  *ran = false;
  if (!run()) return {};
  float best = 1e30f;
  for (int i = 0; i < 2; ++i) {
    PIXTRAL_CUDA_CHECK(cudaEventRecord(ev.a, s));
    if (!run()) return {};
    PIXTRAL_CUDA_CHECK(cudaEventRecord(ev.b, s));
    PIXTRAL_CUDA_CHECK(cudaEventSynchronize(ev.b));
    float t = 0;
    PIXTRAL_CUDA_CHECK(cudaEventElapsedTime(&t, ev.a, ev.b));
    best = std::min(best, t);
  }
  *ms = best;
  *ran = true;
  return {};
}

/// The first call of a bucket: time GemmEx (unless lt_only) and the deterministic heuristic candidates on the
/// caller's buffers; fill `choice`. The output holds some candidate's result afterwards (the caller runs the real
/// product next).
Status tune(cublasLtHandle_t h, const GemmContext& ctx, const LtDescs& d, std::uint32_t align, void* out, DType out_t,
            const bf16* x, const bf16* w, std::int64_t T, std::int64_t N, std::int64_t K, std::int64_t bucket,
            bool with_gemm_ex, Choice* choice) {
  cublasLtMatmulPreference_t pref = nullptr;
  PIXTRAL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>, decltype(&cublasLtMatmulPreferenceDestroy)> pref_guard(
      pref, &cublasLtMatmulPreferenceDestroy);
  const std::size_t ws = ctx.workspace_bytes;
  const std::uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  PIXTRAL_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  PIXTRAL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                            &schemes, sizeof schemes));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    PIXTRAL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align));
  cublasLtMatmulHeuristicResult_t res[kMaxCandidates] = {};
  int found = 0;
  const cublasStatus_t hs =
      cublasLtMatmulAlgoGetHeuristic(h, d.op, d.a, d.b, d.c, d.c, pref, kMaxCandidates, res, &found);
  if (hs == CUBLAS_STATUS_NOT_SUPPORTED) found = 0;  // no algorithm for this layout: GemmEx
  else PIXTRAL_CUBLAS_CHECK(hs);

  EventPair ev;
  PIXTRAL_CUDA_CHECK(cudaEventCreate(&ev.a));
  PIXTRAL_CUDA_CHECK(cudaEventCreate(&ev.b));
  struct Timed {
    int index;  // -1: GemmEx, else the heuristic's rank
    float ms;
  };
  std::vector<Timed> timed;  // in preference order
  Status run_error;
  if (with_gemm_ex) {
    float ms = 0;
    bool ran = false;
    PIXTRAL_RETURN_IF_ERROR(time_candidate(ctx.stream, ev, [&] {
      static_cast<void>(run_error = gemm_ex(ctx, out, out_t, x, w, T, N, K));
      return run_error.ok();
    }, &ms, &ran));
    PIXTRAL_RETURN_IF_ERROR(run_error);
    timed.push_back({-1, ms});
  }
  int n_deterministic = 0;
  for (int i = 0; i < found; ++i) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > ws || !deterministic(res[i].algo)) continue;
    ++n_deterministic;
    float ms = 0;
    bool ran = false;
    // A candidate that fails to launch is skipped (its status is not an error of the product).
    PIXTRAL_RETURN_IF_ERROR(time_candidate(ctx.stream, ev, [&] {
      return lt_matmul(h, ctx, d, res[i].algo, out, x, w).ok();
    }, &ms, &ran));
    if (ran) timed.push_back({i, ms});
  }
  if (timed.empty()) {  // lt_only with no usable candidate
    *choice = Choice{};
  } else {
    float fastest = 1e30f;
    for (const Timed& t : timed) fastest = std::min(fastest, t.ms);
    const Timed* pick = &timed.front();
    for (const Timed& t : timed)
      if (t.ms <= fastest * kStableMargin) {
        pick = &t;
        break;
      }
    *choice = pick->index < 0 ? Choice{} : Choice{true, res[pick->index].algo};
    if (gemm_log()) {
      std::string line;
      char buf[64];
      for (const Timed& t : timed) {
        std::snprintf(buf, sizeof buf, " %s%d:%.1f", t.index < 0 ? "ex" : "lt", t.index < 0 ? 0 : t.index,
                      t.ms * 1e3f);
        line += buf;
      }
      std::fprintf(stderr,
                   "pixtral cuda gemm: N=%lld K=%lld out=%s T=%lld (bucket %lld, align %u): %d candidates, %d "
                   "deterministic; us%s -> %s%d\n",
                   (long long)N, (long long)K, dtype_name(out_t), (long long)T, (long long)bucket, align, found,
                   n_deterministic, line.c_str(), pick->index < 0 ? "GemmEx" : "lt", std::max(pick->index, 0));
    }
  }
  return {};
}

}  // namespace

GemmTuneMode gemm_tune_mode() {
  static const GemmTuneMode mode = [] {
    const char* e = std::getenv("PIXTRAL_CUDA_GEMM_TUNE");
    if (e && !std::strcmp(e, "0")) return GemmTuneMode::off;
    if (e && !std::strcmp(e, "lt")) return GemmTuneMode::lt_only;
    return GemmTuneMode::on;
  }();
  return mode;
}

Status gemm_ex(const GemmContext& ctx, void* out, DType out_t, const bf16* x, const bf16* w, std::int64_t T,
               std::int64_t N, std::int64_t K) {
  const float alpha = 1.f, beta = 0.f;
  PIXTRAL_CUBLAS_CHECK(cublasGemmEx(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(T), int(K), &alpha, w,
                                    CUDA_R_16BF, int(K), x, CUDA_R_16BF, int(K), &beta, out, out_type(out_t), int(N),
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return {};
}

Status gemm_tuned(const GemmContext& ctx, void* out, DType out_t, const bf16* x, const bf16* w, std::int64_t T,
                  std::int64_t N, std::int64_t K) {
  const GemmTuneMode mode = gemm_tune_mode();
  if (mode == GemmTuneMode::off || T < kGemmTuneMinRows) return gemm_ex(ctx, out, out_t, x, w, T, N, K);
  std::int64_t bucket = 1;
  while (bucket < T) bucket *= 2;
  const std::uint32_t align = alignment(out, x, w);
  const BucketKey key{ctx.device, N, K, int(out_t), bucket, align};

  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto h = lt_handle(r, ctx.device);
  if (!h.ok()) return h.status();

  auto ch = r.choices.find(key);
  if (ch == r.choices.end()) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    PIXTRAL_CUDA_CHECK(cudaStreamIsCapturing(ctx.stream, &cs));
    if (cs != cudaStreamCaptureStatusNone) return gemm_ex(ctx, out, out_t, x, w, T, N, K);  // no timing in a graph
    LtDescs d;
    PIXTRAL_RETURN_IF_ERROR(make_descs(d, out_t, T, N, K));
    Choice c;
    PIXTRAL_RETURN_IF_ERROR(
        tune(*h, ctx, d, align, out, out_t, x, w, T, N, K, bucket, mode == GemmTuneMode::on, &c));
    ch = r.choices.emplace(key, c).first;
  }
  if (!ch->second.lt) return gemm_ex(ctx, out, out_t, x, w, T, N, K);

  const ExactKey ekey{key, T};
  auto pl = r.plans.find(ekey);
  if (pl == r.plans.end()) {
    if (r.plans.size() >= kMaxExactPlans) r.plans.clear();  // many distinct T: rebuild (host descriptors only)
    Plan p;
    p.descs = std::make_unique<LtDescs>();
    PIXTRAL_RETURN_IF_ERROR(make_descs(*p.descs, out_t, T, N, K));
    cublasLtMatmulHeuristicResult_t check{};
    const cublasStatus_t s = cublasLtMatmulAlgoCheck(*h, p.descs->op, p.descs->a, p.descs->b, p.descs->c,
                                                     p.descs->c, &ch->second.algo, &check);
    p.lt = s == CUBLAS_STATUS_SUCCESS && check.state == CUBLAS_STATUS_SUCCESS &&
           check.workspaceSize <= ctx.workspace_bytes;
    if (gemm_log() && !p.lt)
      std::fprintf(stderr, "pixtral cuda gemm (check): N=%lld K=%lld T=%lld: the bucket's algorithm does not fit, GemmEx\n",
                   (long long)N, (long long)K, (long long)T);
    pl = r.plans.emplace(ekey, std::move(p)).first;
  }
  if (!pl->second.lt) return gemm_ex(ctx, out, out_t, x, w, T, N, K);
  return lt_matmul(*h, ctx, *pl->second.descs, ch->second.algo, out, x, w);
}

}  // namespace pixtral::cuda
