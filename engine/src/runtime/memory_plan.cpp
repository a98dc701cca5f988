// SPDX-License-Identifier: Apache-2.0
// The memory planner (see runtime/memory_plan.h and pixtral::MemoryPlan).
// ref: model/forward.cpp decoder_state_allocs / vision_allocs (activations, KV cache); model/weights.cpp
//      weight_options (what is quantized); core/quant.h (quantized sizes); cuda/cuda_backend.cu,
//      cuda/kernels_quant.cu (the CUDA backend's workspaces mirrored in reserve_bytes).
#include "runtime/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cuda/cuda_ext.h"
#include "io/checkpoint_names.h"
#include "model/forward.h"
#include "model/weights.h"
#include "vision/preprocess.h"

namespace pixtral {
namespace {

constexpr std::uint64_t MiB = 1ull << 20;

enum class Kind { linear, output, embedding, vision, norm };

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& e) {
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

Kind kind_of(const PlanTensor& t) {
  if (starts_with(t.name, "vision_encoder.") || starts_with(t.name, "vision_language_adapter.")) return Kind::vision;
  if (t.name == "output.weight") return Kind::output;
  if (t.name == "tok_embeddings.weight") return Kind::embedding;
  if (starts_with(t.name, "layers.")) {
    for (const char* m : {".attention.wq.weight", ".attention.wk.weight", ".attention.wv.weight",
                          ".attention.wo.weight", ".feed_forward.w1.weight", ".feed_forward.w2.weight",
                          ".feed_forward.w3.weight"})
      if (ends_with(t.name, m)) return Kind::linear;
  }
  return Kind::norm;
}

ops::WeightFormat format_of(Kind k, const WeightOptions& w) {
  return k == Kind::linear ? w.linear : k == Kind::output ? w.output : ops::WeightFormat::dense;
}

Precision resolved(Precision p) { return p == Precision::automatic ? Precision::bf16 : p; }

int image_patches(const ModelConfig& cfg) {
  if (!cfg.has_vision) return 0;
  const int side = cfg.vision.image_size / cfg.vision.patch_size;
  return side * side;
}

/// Largest c in [16, cap] with f(c) ≤ budget (f non-decreasing); 0 when even 16 does not fit.
template <class F>
int longest(int cap, std::uint64_t budget, F f) {
  if (cap < 16 || f(16) > budget) return 0;
  int lo = 16, hi = cap;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (f(mid) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

std::string plan_line(const MemoryPlan& p) {
  std::ostringstream s;
  s << precision_name(p.precision) << " on " << p.backend << ": weights " << format_gib(p.weight_bytes) << " + KV "
    << format_gib(p.kv_bytes) << " (" << p.context << " tokens) + working "
    << format_gib(p.scratch_bytes + p.vision_activation_bytes + p.reserve_bytes) << " = "
    << format_gib(p.total_bytes);
  if (p.host_bytes) s << " (+ " << format_gib(p.host_bytes) << " of embeddings in host memory)";
  return s.str();
}

}  // namespace

std::string format_gib(std::uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f GiB", double(bytes) / double(1ull << 30));
  return b;
}

std::string MemoryPlan::summary() const {
  std::string s = plan_line(*this);
  if (free_bytes) {
    s += " of " + format_gib(free_bytes) + (backend == "cuda" ? " free" : " available");
    s += fits ? "; fits" : "; does not fit";
    s += ", longest context " + std::to_string(max_context) + " tokens";
  }
  return s;
}

std::vector<PlanTensor> plan_tensors(const ModelConfig& cfg, DType dtype) {
  std::vector<PlanTensor> out;
  for (const io::ExpectedTensor& e : io::expected_tensors(cfg)) {
    std::int64_t n = 1;
    for (auto d : e.shape) n *= d;
    const std::int64_t rows = e.shape.empty() ? 1 : e.shape[0];
    out.push_back({e.name, rows, n / rows, dtype});
  }
  return out;
}

std::vector<PlanTensor> plan_tensors(const Checkpoint& ckpt) {
  std::vector<PlanTensor> out;
  for (const auto& [name, v] : ckpt.tensors()) out.push_back({name, v.rows(), v.cols(), v.dtype});
  return out;
}

std::uint64_t weight_alloc_bytes(const PlanTensor& t, ops::WeightFormat f, bool cuda) {
  const auto rows = std::uint64_t(t.rows), cols = std::uint64_t(t.cols);
  if (f == ops::WeightFormat::dense) return rows * cols * (cuda ? 2 : dtype_size(t.dtype));
  std::uint64_t values = rows * std::uint64_t(quant::row_bytes(f, t.cols));
  if (cuda) values = (values + 255) / 256 * 256;  // ref: cuda/kernels_quant.cu quantized_values_bytes
  return values + rows * std::uint64_t(quant::scales_per_row(f, t.cols)) * sizeof(float);
}

std::uint64_t reserve_bytes(const ModelConfig& cfg, std::span<const PlanTensor> tensors, Precision p,
                            const PlanTarget& t) {
  if (!t.cuda) return 64 * MiB;  // the CPU backend's matmul/attention scratch and the allocator's slack
  // ref: cuda/cuda_backend.cu init (cuBLAS workspace 32 MiB, staging 2 MiB) and its grown scratch buffers.
  std::uint64_t r = 32 * MiB + 2 * MiB;
  bool converts = false;
  for (const PlanTensor& x : tensors) converts = converts || x.dtype != DType::bf16;
  if (converts) r += 64 * MiB;  // weight conversion buffer (kUploadChunk) for f16/f32 checkpoints
  if (resolved(p) != Precision::bf16) r += 64 * MiB + 64 * MiB;  // quantization buffer + dequantization tile
  r += 64 * MiB;  // attention split-KV workspace
  if (const int n = image_patches(cfg)) {  // patch matrix (im2col, bf16) + the image's fp32 pixels
    const VisionConfig& v = cfg.vision;
    r += std::uint64_t(n) * v.num_channels * v.patch_size * v.patch_size * 2;
    r += std::uint64_t(v.num_channels) * v.image_size * v.image_size * 4;
  }
  r += 128 * MiB;  // allocation granularity, RoPE tables, CUDA graph memory
  if (t.context_reserve) r += kCudaContextReserve;
  return r;
}

std::uint64_t session_bytes(const ModelConfig& cfg, DType act, int context, int prefill_rows) {
  std::uint64_t b = total_bytes(decoder_state_allocs(cfg, act, context, std::min(prefill_rows, context)));
  if (const int n = image_patches(cfg)) b += total_bytes(vision_allocs(cfg, act, n));
  return b;
}

namespace {

MemoryPlan plan_at(const ModelConfig& cfg, std::span<const PlanTensor> tensors, Precision p, int context,
                   const PlanTarget& t) {
  MemoryPlan plan;
  plan.precision = resolved(p);
  plan.backend = t.cuda ? "cuda" : "cpu";
  plan.context = std::clamp(context, 16, std::max(16, cfg.max_context));
  plan.prefill_rows = std::min(t.prefill_rows, plan.context);
  const WeightOptions wo = weight_options(plan.precision);
  for (const PlanTensor& x : tensors) {
    const Kind k = kind_of(x);
    const std::uint64_t b = weight_alloc_bytes(x, format_of(k, wo), t.cuda);
    switch (k) {
      case Kind::linear: plan.linear_bytes += b; break;
      case Kind::output: plan.output_bytes += b; break;
      case Kind::embedding: (wo.embedding_on_host && t.cuda ? plan.host_bytes : plan.embedding_bytes) += b; break;
      case Kind::vision: plan.vision_bytes += b; break;
      case Kind::norm: plan.norm_bytes += b; break;
    }
  }
  plan.weight_bytes = plan.linear_bytes + plan.output_bytes + plan.embedding_bytes + plan.vision_bytes +
                      plan.norm_bytes;
  const DType act = t.cuda ? DType::bf16 : DType::f32;
  std::uint64_t kv = 0, scratch = 0;
  for (const PlannedAlloc& a : decoder_state_allocs(cfg, act, plan.context, plan.prefill_rows))
    (std::string(a.what) == kKvCacheWhat ? kv : scratch) += a.bytes();
  plan.kv_bytes = kv;
  plan.kv_bytes_per_token = kv / std::uint64_t(plan.context);
  plan.scratch_bytes = scratch;
  if (const int n = image_patches(cfg)) plan.vision_activation_bytes = total_bytes(vision_allocs(cfg, act, n));
  plan.reserve_bytes = reserve_bytes(cfg, tensors, plan.precision, t);
  plan.total_bytes = plan.weight_bytes + plan.kv_bytes + plan.scratch_bytes + plan.vision_activation_bytes +
                     plan.reserve_bytes;
  plan.free_bytes = t.free_bytes;
  const std::uint64_t fixed = plan.weight_bytes + plan.reserve_bytes;
  if (t.free_bytes == 0) {
    plan.fits = true;
    plan.max_context = cfg.max_context;
  } else {
    plan.fits = plan.total_bytes <= t.free_bytes;
    plan.max_context = fixed > t.free_bytes ? 0 : longest(cfg.max_context, t.free_bytes - fixed, [&](int c) {
      return session_bytes(cfg, act, c, t.prefill_rows);
    });
  }
  return plan;
}

}  // namespace

MemoryPlan plan_for(const ModelConfig& cfg, std::span<const PlanTensor> tensors, Precision p, int context,
                    const PlanTarget& t) {
  MemoryPlan first = plan_at(cfg, tensors, p, context, t);
  if (first.fits || !t.cuda) return first;
  // A smaller prefill chunk (CUDA: 2048, then 1024 rows) trades a little time to first token for memory.
  for (int rows = t.prefill_rows / 2; rows >= 1024; rows /= 2) {
    PlanTarget smaller = t;
    smaller.prefill_rows = rows;
    MemoryPlan p2 = plan_at(cfg, tensors, p, context, smaller);
    if (p2.fits) return p2;
  }
  return first;
}

Result<MemoryPlan> choose_plan(const ModelConfig& cfg, std::span<const PlanTensor> tensors, Precision p, int context,
                               const PlanTarget& t) {
  if (p != Precision::automatic || !t.cuda) return plan_for(cfg, tensors, p, context, t);
  bool int4_ok = true;
  for (const PlanTensor& x : tensors)
    if (kind_of(x) == Kind::linear && !quant::check_shape(ops::WeightFormat::int4_g128, x.rows, x.cols, x.name).ok())
      int4_ok = false;
  const struct {
    Precision p;
    int context;
  } ladder[] = {{Precision::bf16, kAutoContextBf16}, {Precision::int8, kAutoContextInt8},
                {Precision::int4, kAutoContextInt4}};
  MemoryPlan smallest;
  for (const auto& step : ladder) {
    if (step.p == Precision::int4 && !int4_ok) continue;
    MemoryPlan at = plan_for(cfg, tensors, step.p, std::min(step.context, cfg.max_context), t);
    if (at.fits) return plan_for(cfg, tensors, step.p, context, t);
    smallest = at;
  }
  return Status(ErrorCode::out_of_memory,
                "the model does not fit on this GPU at any precision: " + plan_line(smallest) + " needed, " +
                    format_gib(t.free_bytes) + " free. Close other programs using the GPU, or run on the CPU "
                    "(--device cpu / Settings ▸ Model ▸ Device).");
}

std::uint64_t available_ram_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  std::uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb) {
    std::getline(f, unit);
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

Result<MemoryPlan> plan_for_load(ops::Backend& be, const Checkpoint& ckpt, Precision requested) {
  const ModelConfig& cfg = ckpt.config();
  const std::vector<PlanTensor> tensors = plan_tensors(ckpt);
  PlanTarget t;
  t.cuda = be.name() == "cuda";
  t.prefill_rows = t.cuda ? kCudaPrefillRows : kCpuPrefillRows;  // the SessionOptions::prefill_chunk defaults (Model::create_session)
  t.context_reserve = false;             // the backend (context, cuBLAS) exists already
  const int context = std::min(SessionOptions{}.context_length, cfg.max_context);
  if (!t.cuda) {
    t.free_bytes = available_ram_bytes();
    return plan_for(cfg, tensors, resolved(requested), context, t);  // automatic on the CPU: bf16
  }
  if (ops::CudaExtension* ext = ops::cuda_extension(be)) {
    std::size_t free = 0, total = 0;
    if (ext->memory_info(&free, &total).ok()) t.free_bytes = free;
  }
  auto plan = choose_plan(cfg, tensors, requested, context, t);
  if (!plan.ok() || requested == Precision::automatic || plan->max_context > 0) return plan;
  return Status(ErrorCode::out_of_memory,
                std::string("--precision ") + precision_name(requested) + " does not fit on this GPU: " +
                    plan_line(*plan) + " needed, " + format_gib(t.free_bytes) + " free, and the weights alone leave "
                    "no room for a context. Try a lower precision (int4 needs the least), --precision auto, or "
                    "close other programs using the GPU.");
}

Status check_session_fits(ops::Backend& be, const ModelConfig& cfg, int context, int prefill_rows) {
  std::uint64_t free = 0;
  const bool cuda = be.name() == "cuda";
  if (ops::CudaExtension* ext = ops::cuda_extension(be)) {
    std::size_t f = 0, total = 0;
    if (ext->memory_info(&f, &total).ok()) free = f;
  } else if (!cuda) {
    free = available_ram_bytes();
  }
  if (free == 0) return {};
  const DType act = be.activation_dtype();
  const std::uint64_t margin = cuda ? 64 * MiB : 0;  // scratch the backend may still grow (attention, tiles)
  const std::uint64_t need = session_bytes(cfg, act, context, prefill_rows) + margin;
  if (need <= free) return {};
  const int fit = longest(cfg.max_context, free > margin ? free - margin : 0,
                          [&](int c) { return session_bytes(cfg, act, c, prefill_rows); });
  std::uint64_t kv_bytes = 0;
  for (const PlannedAlloc& a : decoder_state_allocs(cfg, act, context, std::min(prefill_rows, context)))
    if (std::string(a.what) == kKvCacheWhat) kv_bytes += a.bytes();
  return Status(ErrorCode::out_of_memory,
                "a context of " + std::to_string(context) + " tokens needs " + format_gib(need) + " (KV cache " +
                    format_gib(kv_bytes) + " + activations " + format_gib(need - kv_bytes) + ") but " +
                    format_gib(free) + (cuda ? " of GPU memory is free" : " of memory is available") +
                    (fit > 0 ? "; the longest context that fits now is " + std::to_string(fit) + " tokens"
                             : "; not even a short context fits now") +
                    ". Try a shorter context" + (cuda ? ", a lower precision (int8, int4)" : "") +
                    ", or close other conversations.");
}

Result<MemoryPlan> plan_memory(const std::string& dir, const PlanOptions& o) {
  auto ckpt = Checkpoint::open(dir);
  if (!ckpt.ok()) return ckpt.status();
  const ModelConfig& cfg = ckpt->config();
  const std::vector<PlanTensor> tensors = plan_tensors(*ckpt);
  PlanTarget t;
  t.cuda = o.device != Device::cpu;
  if (t.cuda && o.free_bytes == 0) {
    auto be = ops::load_cuda_backend(0);
    if (be.ok()) {
      if (ops::CudaExtension* ext = ops::cuda_extension(**be)) {
        std::size_t free = 0, total = 0;
        if (ext->memory_info(&free, &total).ok()) t.free_bytes = free;
      }
      t.context_reserve = false;
    } else if (o.device == Device::cuda) {
      return be.status().with_context("CUDA backend unavailable");
    } else {
      t.cuda = false;  // automatic without a usable GPU: the CPU, as Model::load would choose
    }
  } else {
    t.free_bytes = o.free_bytes;
  }
  if (!t.cuda) {
    t.prefill_rows = kCpuPrefillRows;
    t.context_reserve = false;
    if (t.free_bytes == 0) t.free_bytes = available_ram_bytes();
  }
  return choose_plan(cfg, tensors, o.precision, o.context_length, t);
}

}  // namespace pixtral
