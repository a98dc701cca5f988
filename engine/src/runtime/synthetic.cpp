// SPDX-License-Identifier: Apache-2.0
// make_synthetic_model: a Model with random weights of a given config (default Pixtral-12B) for the benchmark.
// How: a temporary folder gets a params.json, a generated tekken.json and a SPARSE consolidated.safetensors whose
// header declares every expected tensor (io::expected_tensors) at full size; Checkpoint::open validates it like a
// real checkpoint (the data pages are never read) and the folder is deleted right away (the mapping stays valid).
// Each tensor view is then pointed at its own offset of one random host pool and the normal upload_weights path
// runs, so the weights reach the backend exactly as a real checkpoint's would (stacked QKV/w13 included, and
// quantized on the device for int8/int4 after the same memory plan as Model::load).
// ref: tests/engine/io/tst_io_fullsize.cpp (sparse full-size checkpoint), spec §1.3/§1.4/§2.1 (tekken.json).
#include "runtime/synthetic.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/checkpoint_names.h"
#include "pixtral/log.h"
#include "runtime/impl.h"
#include "runtime/memory_plan.h"

namespace pixtral {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::uint64_t name_hash(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// bf16 values uniform in [center - half, center + half] from a counter-based hash (thread-count independent).
void fill_uniform(std::vector<std::uint16_t>& out, std::uint64_t seed, float center, float half) {
  const std::size_t n = out.size();
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t nt = std::min<std::size_t>(hw, std::max<std::size_t>(1, n >> 20));
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < nt; ++t)
    threads.emplace_back([&, t] {
      const std::size_t b = n * t / nt, e = n * (t + 1) / nt;
      for (std::size_t i = b; i < e; ++i) {
        const double u = double(splitmix64(seed ^ (i * 0xd1b54a32d192ed03ull)) >> 11) * (1.0 / 9007199254740992.0);
        out[i] = f32_to_bf16(center + half * float(2.0 * u - 1.0));
      }
    });
  for (auto& th : threads) th.join();
}

std::string base64(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (i + 1 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

// tekken.json: 1000 specials (the 20 control names first), vocab = the 256 bytes then multi-byte strings of
// bytes >= 0x80 (2 bytes, then 3), so no ASCII pair ever merges.
std::string tekken_json(const ModelConfig& cfg) {
  static const char* kNames[] = {"<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]",
                                 "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]",
                                 "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]",
                                 "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"};
  const int n_special = 1000;
  const int inner = cfg.vocab_size - n_special;
  json special = json::array();
  for (int i = 0; i < n_special; ++i)
    special.push_back({{"rank", i},
                       {"token_str", i < 20 ? std::string(kNames[i]) : "<SPECIAL_" + std::to_string(i) + ">"},
                       {"is_control", true}});
  std::string vocab = "[";
  for (int r = 0; r < inner; ++r) {
    std::string bytes;
    if (r < 256) {
      bytes.push_back(char(r));
    } else if (int j = r - 256; j < 128 * 128) {
      bytes = {char(0x80 + j / 128), char(0x80 + j % 128)};
    } else {
      j -= 128 * 128;
      bytes = {char(0x80 + (j / 16384) % 128), char(0x80 + (j / 128) % 128), char(0x80 + j % 128)};
    }
    if (r) vocab += ',';
    vocab += "{\"rank\":" + std::to_string(r) + ",\"token_bytes\":\"" + base64(bytes) + "\"}";
  }
  vocab += "]";
  json doc;
  doc["config"] = {{"pattern", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
                                "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
                                "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
                   {"num_vocab_tokens", inner},
                   {"default_vocab_size", cfg.vocab_size},
                   {"default_num_special_tokens", n_special},
                   {"version", "v3"}};
  doc["special_tokens"] = special;
  doc["multimodal"] = {{"image_patch_size", cfg.vision.patch_size}, {"max_image_size", cfg.vision.image_size}};
  std::string s = doc.dump();
  // Splice the (large, simple) vocab array in as text: cheaper than building 130k json objects.
  s.insert(s.size() - 1, ",\"vocab\":" + vocab);
  return s;
}

json params_json(const ModelConfig& c) {
  const VisionConfig& v = c.vision;
  return {{"dim", c.dim},
          {"n_layers", c.n_layers},
          {"head_dim", c.head_dim},
          {"hidden_dim", c.hidden_dim},
          {"n_heads", c.n_heads},
          {"n_kv_heads", c.n_kv_heads},
          {"rope_theta", c.rope_theta},
          {"norm_eps", c.norm_eps},
          {"vocab_size", c.vocab_size},
          {"vision_encoder",
           {{"hidden_size", v.hidden_size},
            {"num_channels", v.num_channels},
            {"image_size", v.image_size},
            {"patch_size", v.patch_size},
            {"rope_theta", v.rope_theta},
            {"intermediate_size", v.intermediate_size},
            {"num_hidden_layers", v.num_hidden_layers},
            {"num_attention_heads", v.num_attention_heads},
            {"image_token_id", v.image_token_id},
            {"adapter_bias", v.adapter_bias}}}};
}

Status write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
  out.close();
  if (!out) return {ErrorCode::io, "cannot write " + p.string()};
  return {};
}

// Header + ftruncate to full length: a sparse file, no data written.
Status write_sparse_safetensors(const fs::path& p, const ModelConfig& cfg) {
  json h = json::object();
  std::uint64_t off = 0;
  for (const io::ExpectedTensor& t : io::expected_tensors(cfg)) {
    std::uint64_t n = 1;
    for (auto d : t.shape) n *= std::uint64_t(d);
    h[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {off, off + 2 * n}}};
    off += 2 * n;
  }
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');
  std::string head(8, '\0');
  for (int i = 0; i < 8; ++i) head[std::size_t(i)] = char((std::uint64_t(header.size()) >> (8 * i)) & 0xff);
  PIXTRAL_RETURN_IF_ERROR(write_file(p, head + header));
  if (::truncate(p.c_str(), off_t(8 + header.size() + off)) != 0)
    return {ErrorCode::io, "cannot extend " + p.string() + " to a sparse full-size file"};
  return {};
}

// Host pools that CPU-backend weights view in place: kept for the process lifetime.
std::mutex g_pools_mu;
std::vector<std::shared_ptr<std::vector<std::uint16_t>>> g_pools;

Result<std::unique_ptr<ops::Backend>> make_backend(const SyntheticOptions& o, std::string& fallback) {
  if (o.device == Device::cpu) return ops::make_cpu_backend(o.threads);
  auto cuda = ops::load_cuda_backend(0);
  if (cuda.ok()) return std::move(cuda.value());
  if (o.device == Device::cuda) return cuda.status().with_context("CUDA backend unavailable");
  fallback = cuda.status().message();
  return ops::make_cpu_backend(o.threads);
}

}  // namespace

ModelConfig pixtral_12b_config() {
  ModelConfig c;
  c.dim = 5120;
  c.n_layers = 40;
  c.head_dim = 128;
  c.hidden_dim = 14336;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.rope_theta = 1e9f;
  c.norm_eps = 1e-5f;
  c.vocab_size = 131072;
  c.vision = VisionConfig{};  // defaults are Pixtral-12B's (io/checkpoint.h)
  return c;
}

namespace {

struct Pools {
  std::shared_ptr<std::vector<std::uint16_t>> values, norms;
};

// Steps 1–2: params.json, tekken.json and a sparse consolidated.safetensors written to `dir` and opened into
// impl (checkpoint + tokenizer); then the random host pools, every tensor view pointed at its own offset.
Status open_synthetic(const fs::path& dir, const SyntheticOptions& o, Model::Impl& impl, Pools& pools,
                      double* fill_ms) {
  const ModelConfig& cfg = o.config;
  PIXTRAL_RETURN_IF_ERROR(write_file(dir / "params.json", params_json(cfg).dump(2)));
  PIXTRAL_RETURN_IF_ERROR(write_file(dir / "tekken.json", tekken_json(cfg)));
  PIXTRAL_RETURN_IF_ERROR(write_sparse_safetensors(dir / "consolidated.safetensors", cfg));
  auto ckpt = Checkpoint::open(dir.string());
  if (!ckpt.ok()) return ckpt.status().with_context("synthetic checkpoint");
  auto tok = Tokenizer::load((dir / "tekken.json").string());
  if (!tok.ok()) return tok.status().with_context("synthetic tokenizer");
  impl.ckpt = std::move(ckpt.value());
  impl.tokenizer = std::make_unique<Tokenizer>(std::move(tok.value()));

  // Random host pools; every tensor views its own offset (norm scales view the ≈1 pool).
  const auto t_fill = Clock::now();
  std::int64_t max_numel = 0, max_norm = 1;
  for (const auto& [name, v] : impl.ckpt.tensors()) {
    max_numel = std::max(max_numel, v.numel());
    if (v.shape.size() == 1) max_norm = std::max(max_norm, v.numel());
  }
  const std::size_t spread = std::size_t(std::max<std::int64_t>(max_numel / 16, 1 << 16));
  pools.values = std::make_shared<std::vector<std::uint16_t>>((std::size_t(max_numel) + spread + 7) & ~std::size_t(7));
  pools.norms = std::make_shared<std::vector<std::uint16_t>>(std::size_t(max_norm));
  std::vector<std::uint16_t>& pool = *pools.values;
  fill_uniform(pool, o.seed, 0.0f, 0.02f * 1.7320508f);  // std 0.02 (a common init range)
  fill_uniform(*pools.norms, o.seed ^ 0x5eed, 1.0f, 0.1f);
  const int eos = impl.tokenizer->special().eos;
  for (const auto& [name, v] : impl.ckpt.tensors()) {
    // The checkpoint's own views are re-pointed (the Impl map is not const; only the accessor is).
    auto& view = const_cast<WeightView&>(v);
    const bool is_norm = v.shape.size() == 1 && name.find("norm.weight") != std::string::npos;
    if (is_norm || name == "vision_encoder.ln_pre.weight") {
      view.data = pools.norms->data();
      continue;
    }
    const std::size_t room = pool.size() - std::size_t(v.numel());
    const std::size_t off = (name_hash(name) % (room + 1)) & ~std::size_t(7);
    view.data = pool.data() + off;
    if (name == "output.weight" && eos >= 0 && eos < v.rows()) {
      // Scale the eos row down (logit ≈ 0 against a spread of ≈ ±6): greedy never stops early.
      std::uint16_t* row = pool.data() + off + std::size_t(eos) * std::size_t(v.cols());
      for (std::int64_t i = 0; i < v.cols(); ++i) row[i] = f32_to_bf16(bf16_to_f32(row[i]) * (1.0f / 1024));
    }
  }
  if (fill_ms) *fill_ms = ms_since(t_fill);
  return {};
}

}  // namespace

Status write_synthetic_checkpoint(const std::string& dir, const SyntheticOptions& o) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return {ErrorCode::io, "cannot create " + dir + ": " + ec.message()};
  Model::Impl impl;
  Pools pools;
  PIXTRAL_RETURN_IF_ERROR(open_synthetic(dir, o, impl, pools, nullptr));
  // The sparse file's header stays; every tensor's bytes are written at its offset (expected_tensors order, as
  // write_sparse_safetensors laid them out).
  const fs::path path = fs::path(dir) / "consolidated.safetensors";
  const int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) return {ErrorCode::io, "cannot open " + path.string() + " for writing"};
  std::uint64_t header_len = 0;
  {
    std::ifstream in(path, std::ios::binary);
    unsigned char b[8] = {};
    in.read(reinterpret_cast<char*>(b), 8);
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | b[i];
  }
  std::uint64_t off = 8 + header_len;
  for (const io::ExpectedTensor& t : io::expected_tensors(o.config)) {
    const WeightView& v = impl.ckpt.tensor(t.name);
    const char* p = static_cast<const char*>(v.data);
    std::uint64_t left = std::uint64_t(v.numel()) * 2;
    while (left > 0) {
      const ssize_t n = ::pwrite(fd, p, std::min<std::uint64_t>(left, 1ull << 30), off_t(off));
      if (n <= 0) {
        ::close(fd);
        return {ErrorCode::io, "writing " + path.string() + " failed (disk full?) at " + t.name};
      }
      p += n, off += std::uint64_t(n), left -= std::uint64_t(n);
    }
  }
  if (::close(fd) != 0) return {ErrorCode::io, "closing " + path.string() + " failed"};
  return {};
}

Result<std::shared_ptr<Model>> make_synthetic_model(const SyntheticOptions& o, SyntheticStats* stats) {
  SyntheticStats st_local;
  SyntheticStats& st = stats ? *stats : st_local;
  const ModelConfig& cfg = o.config;
  if (cfg.vocab_size < 1000 + 256)
    return Status(ErrorCode::invalid_argument, "synthetic model: vocab_size must be at least 1256");

  // 1–2. A temporary checkpoint folder (sparse data), opened and validated, then deleted; the random views.
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/pixtral-synthetic-XXXXXX";
  if (!::mkdtemp(templ.data())) return Status(ErrorCode::io, "cannot create a temporary folder " + templ);
  auto impl = std::make_unique<Model::Impl>();
  Pools pools;
  const Status opened = open_synthetic(templ, o, *impl, pools, &st.fill_ms);
  std::error_code ec;
  fs::remove_all(templ, ec);
  if (!opened.ok()) return opened;
  std::shared_ptr<std::vector<std::uint16_t>> pool = pools.values, norm_pool = pools.norms;

  // 3. Backend and the normal upload path.
  std::string fallback;
  auto be = make_backend(o, fallback);
  if (!be.ok()) return be.status();
  impl->backend = std::move(be.value());
  UploadProgress progress;
  if (o.on_progress)
    progress = [&](std::size_t done, std::size_t total, const std::string& name) {
      return o.on_progress(double(done) / double(total), name);
    };
  auto plan = plan_for_load(*impl->backend, impl->ckpt, o.precision);
  if (!plan.ok()) return plan.status();
  const auto t_up = Clock::now();
  auto w = upload_weights(*impl->backend, impl->ckpt, progress, weight_options(plan->precision));
  if (!w.ok()) return w.status();
  impl->weights = std::move(w.value());
  PIXTRAL_RETURN_IF_ERROR(impl->backend->synchronize());
  st.upload_ms = ms_since(t_up);
  st.weight_bytes = impl->ckpt.total_bytes();
  if (impl->backend->name() == "cpu") {
    std::lock_guard<std::mutex> lock(g_pools_mu);
    g_pools.push_back(pool);
    g_pools.push_back(norm_pool);
  }

  read_env_switches(*impl);
  fill_model_info(*impl, "(synthetic)", fallback, precision_name(plan->precision));
  impl->info.plan = *plan;
  return std::make_shared<Model>(std::move(impl));
}

}  // namespace pixtral
