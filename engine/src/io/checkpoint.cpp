// SPDX-License-Identifier: Apache-2.0
// Checkpoint::open: layout detection, config parsing, safetensors mapping, name mapping and validation.
// ref: spec §1 (pixtral-model.md); mistral_inference/transformer.py from_folder (native files);
//      transformers modeling_utils (model.safetensors / model.safetensors.index.json sharding)
#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/checkpoint_config.h"
#include "io/checkpoint_names.h"
#include "io/safetensors.h"
#include "pixtral/log.h"

namespace pixtral {

namespace fs = std::filesystem;
using nlohmann::json;

struct Checkpoint::Impl {
  ModelConfig config;
  CheckpointLayout layout = CheckpointLayout::mistral;
  std::string dir;
  std::string tokenizer_path;
  DType weight_dtype = DType::bf16;
  std::vector<io::SafetensorsFile> files;  // the mappings every WeightView points into
  std::map<std::string, WeightView> tensors;
  std::uint64_t total_bytes = 0;
};

namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

std::string base_name(const std::string& path) { return fs::path(path).filename().string(); }

Result<std::string> read_text_file(const fs::path& p, std::uintmax_t max_bytes = 64u << 20) {
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  if (ec) return Status(ec == std::errc::no_such_file_or_directory ? ErrorCode::not_found : ErrorCode::io,
                        "cannot read " + p.string() + ": " + ec.message());
  if (size > max_bytes) return Status(ErrorCode::format, p.string() + ": file is too large for a config file");
  std::ifstream in(p, std::ios::binary);
  if (!in) return Status(ErrorCode::io, "cannot open " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status(ErrorCode::io, "cannot read " + p.string());
  return ss.str();
}

// Native shards: consolidated.safetensors alone, else consolidated-*.safetensors / consolidated.*.safetensors.
std::vector<std::string> native_weight_files(const fs::path& dir) {
  if (is_file(dir / "consolidated.safetensors")) return {(dir / "consolidated.safetensors").string()};
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const std::string ext = ".safetensors";
    if (n.size() <= ext.size() || n.compare(n.size() - ext.size(), ext.size(), ext) != 0) continue;
    if (n.rfind("consolidated-", 0) != 0 && n.rfind("consolidated.", 0) != 0) continue;
    if (is_file(e.path())) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// HF shards named by model.safetensors.index.json; checks that each listed tensor is in its shard.
Status open_hf_index(const fs::path& dir, std::vector<io::SafetensorsFile>& files) {
  const fs::path index_path = dir / "model.safetensors.index.json";
  const std::string label = index_path.string();
  auto text = read_text_file(index_path);
  if (!text) return text.status();
  json j;
  try {
    j = json::parse(*text);
  } catch (const json::exception& e) {
    return Status(ErrorCode::format, label + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object())
    return Status(ErrorCode::format, label + ": missing the 'weight_map' object");
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [tensor, shard] : j.at("weight_map").items()) {
    if (!shard.is_string()) return Status(ErrorCode::format, label + ": weight_map entry " + tensor + " is not a string");
    const std::string s = shard.get<std::string>();
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos || s.find('\\') != std::string::npos)
      return Status(ErrorCode::format, label + ": weight_map entry " + tensor + " names '" + s +
                                           "', which is not a file name in the model folder");
    by_shard[s].push_back(tensor);
  }
  if (by_shard.empty()) return Status(ErrorCode::format, label + ": weight_map is empty");
  for (const auto& [shard, names] : by_shard) {
    const fs::path p = dir / shard;
    if (!is_file(p))
      return Status(ErrorCode::not_found, "missing shard " + shard + " (listed in model.safetensors.index.json) in " +
                                              dir.string());
    auto f = io::SafetensorsFile::open(p.string());
    if (!f) return f.status();
    for (const auto& n : names)
      if (f->find(n) == nullptr)
        return Status(ErrorCode::format, label + ": tensor " + n + " is mapped to " + shard +
                                             ", which does not contain it");
    files.push_back(std::move(f).value());
  }
  return Status::success();
}

struct Found {
  const io::SafetensorsTensor* tensor = nullptr;
  const io::SafetensorsFile* file = nullptr;
};

std::string files_list(const std::vector<io::SafetensorsFile>& files) {
  std::string s;
  for (std::size_t i = 0; i < files.size() && i < 3; ++i) s += (i ? ", " : "") + base_name(files[i].path());
  if (files.size() > 3) s += " and " + std::to_string(files.size() - 3) + " more files";
  return s;
}

}  // namespace

Status check_tokenizer_agreement(const ModelConfig& config, int tekken_patch_size, int tekken_max_image_size) {
  if (!config.has_vision) return Status::success();
  if (tekken_patch_size != config.vision.patch_size)
    return Status(ErrorCode::format, "tekken.json image patch_size is " + std::to_string(tekken_patch_size) +
                                         " but the model's vision patch_size is " +
                                         std::to_string(config.vision.patch_size));
  if (tekken_max_image_size != config.vision.image_size)
    return Status(ErrorCode::format, "tekken.json image max_image_size is " + std::to_string(tekken_max_image_size) +
                                         " but the model's vision image_size is " +
                                         std::to_string(config.vision.image_size));
  return Status::success();
}

Checkpoint::Checkpoint() : impl_(std::make_unique<Impl>()) {}
Checkpoint::~Checkpoint() = default;
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;

const ModelConfig& Checkpoint::config() const { return impl_->config; }
CheckpointLayout Checkpoint::layout() const { return impl_->layout; }
ops::RopePairs Checkpoint::rope_pairs() const {
  // HF rows of wq/wk were permuted by the converter (spec §1.6): rotate (m, m + D/2) instead of (2m, 2m + 1).
  return impl_->layout == CheckpointLayout::hf ? ops::RopePairs::halves : ops::RopePairs::interleaved;
}
const std::string& Checkpoint::tokenizer_path() const { return impl_->tokenizer_path; }
DType Checkpoint::weight_dtype() const { return impl_->weight_dtype; }
bool Checkpoint::has_tensor(const std::string& name) const { return impl_->tensors.count(name) != 0; }
const std::map<std::string, WeightView>& Checkpoint::tensors() const { return impl_->tensors; }
std::uint64_t Checkpoint::total_bytes() const { return impl_->total_bytes; }

const WeightView& Checkpoint::tensor(const std::string& name) const {
  static const WeightView kNone{};
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end()) {
    log(LogLevel::error, "Checkpoint::tensor: no tensor named " + name + " (a bug: callers use validated names)");
    return kNone;
  }
  return it->second;
}

namespace {

// Layout detection + config parsing. Fills layout, config, tokenizer path and the weight files.
Status detect_and_parse(const fs::path& dir, Checkpoint::Impl& impl) {
  const std::string d = dir.string();
  const bool has_params = is_file(dir / "params.json");
  const std::vector<std::string> native = has_params ? native_weight_files(dir) : std::vector<std::string>{};
  const bool has_config = is_file(dir / "config.json");
  const bool has_index = is_file(dir / "model.safetensors.index.json");
  const bool has_single = is_file(dir / "model.safetensors");

  if (has_params && !native.empty()) {
    impl.layout = CheckpointLayout::mistral;
  } else if (has_config && (has_index || has_single)) {
    impl.layout = CheckpointLayout::hf;
  } else if (has_params) {
    return Status(ErrorCode::not_found, "model folder " + d + " has params.json but no consolidated.safetensors");
  } else if (has_config) {
    return Status(ErrorCode::not_found, "model folder " + d +
                                            " has config.json but neither model.safetensors nor "
                                            "model.safetensors.index.json");
  } else {
    return Status(ErrorCode::not_found,
                  "no model found in " + d +
                      ": expected params.json + consolidated.safetensors (Mistral layout, as in "
                      "mistralai/Pixtral-12B-2409) or config.json + model.safetensors[.index.json] (Hugging Face)");
  }

  if (!is_file(dir / "tekken.json"))
    return Status(ErrorCode::not_found,
                  "tekken.json not found in " + d +
                      ": download tekken.json from the Hugging Face repository mistralai/Pixtral-12B-2409 and put "
                      "it in this folder (Hugging Face tokenizer.json is not supported yet)");
  impl.tokenizer_path = (dir / "tekken.json").string();

  if (impl.layout == CheckpointLayout::mistral) {
    const fs::path p = dir / "params.json";
    auto text = read_text_file(p);
    if (!text) return text.status();
    auto cfg = io::parse_params_json(*text, p.string());
    if (!cfg) return cfg.status();
    impl.config = *cfg;
    for (const auto& f : native) {
      auto st = io::SafetensorsFile::open(f);
      if (!st) return st.status();
      impl.files.push_back(std::move(st).value());
    }
    return Status::success();
  }

  const fs::path p = dir / "config.json";
  auto text = read_text_file(p);
  if (!text) return text.status();
  auto cfg = io::parse_hf_config_json(*text, p.string());
  if (!cfg) return cfg.status();
  impl.config = *cfg;
  const fs::path pre = dir / "preprocessor_config.json";
  if (is_file(pre)) {
    auto pt = read_text_file(pre);
    if (!pt) return pt.status();
    PIXTRAL_RETURN_IF_ERROR(io::check_preprocessor_config(*pt, pre.string(), impl.config));
  }
  if (has_index) return open_hf_index(dir, impl.files);
  auto st = io::SafetensorsFile::open((dir / "model.safetensors").string());
  if (!st) return st.status();
  impl.files.push_back(std::move(st).value());
  return Status::success();
}

// Canonical name → stored tensor over every file; duplicates are an error, unknown names a warning.
Status index_tensors(const Checkpoint::Impl& impl, std::map<std::string, Found>& out) {
  const bool hf = impl.layout == CheckpointLayout::hf;
  std::vector<std::string> unexpected;
  std::map<std::string, std::string> source;  // canonical → stored name, for duplicate messages
  for (const auto& file : impl.files) {
    for (const auto& [stored, t] : file.tensors()) {
      std::string canon = stored;
      if (hf) {
        auto c = io::hf_to_canonical(stored);
        if (!c) {
          unexpected.push_back(stored + " (in " + base_name(file.path()) + ")");
          continue;
        }
        canon = *c;
      }
      auto [it, inserted] = out.emplace(canon, Found{&t, &file});
      if (!inserted)
        return Status(ErrorCode::format, "tensor " + canon + " is stored twice: as " + source[canon] + " (in " +
                                             base_name(it->second.file->path()) + ") and as " + stored + " (in " +
                                             base_name(file.path()) + ")");
      source[canon] = stored;
    }
  }
  if (!unexpected.empty()) {
    std::string msg = "checkpoint " + impl.dir + ": ignoring " + std::to_string(unexpected.size()) +
                      " unexpected tensor(s): ";
    for (std::size_t i = 0; i < unexpected.size() && i < 5; ++i) msg += (i ? ", " : "") + unexpected[i];
    if (unexpected.size() > 5) msg += ", ...";
    log(LogLevel::warning, msg);
  }
  return Status::success();
}

// Every expected tensor: present, a compute dtype, the exact shape. Reports the first problem and how many more.
Status validate(Checkpoint::Impl& impl, std::map<std::string, Found>& found) {
  const auto expected = io::expected_tensors(impl.config);
  const bool hf = impl.layout == CheckpointLayout::hf;

  // The checkpoint's weight dtype is patch_conv's (it decides pixel rounding), else the embeddings'.
  const std::string anchor = impl.config.has_vision ? "vision_encoder.patch_conv.weight" : "tok_embeddings.weight";
  std::optional<DType> anchor_dtype;
  if (auto it = found.find(anchor); it != found.end()) anchor_dtype = it->second.tensor->model_dtype;
  impl.weight_dtype = anchor_dtype.value_or(DType::bf16);

  std::vector<Status> problems;
  for (const auto& e : expected) {
    auto it = found.find(e.name);
    if (it == found.end()) {
      std::string where = hf ? "HF name " + io::canonical_to_hf(e.name) + ", in " + files_list(impl.files)
                             : "in " + files_list(impl.files);
      problems.emplace_back(ErrorCode::not_found, "missing tensor " + e.name + " (" + where + ")");
      continue;
    }
    const io::SafetensorsTensor& t = *it->second.tensor;
    std::string where = " (in " + base_name(it->second.file->path());
    where += hf ? ", stored as " + t.name + ")" : ")";
    if (!t.model_dtype) {
      problems.emplace_back(ErrorCode::unsupported, "tensor " + e.name + " has dtype " + t.dtype +
                                                        "; supported: BF16, F16, F32" + where);
      continue;
    }
    if (t.shape != e.shape) {
      const char* want = dtype_name(anchor_dtype.value_or(*t.model_dtype));
      problems.emplace_back(ErrorCode::format, "tensor " + e.name + ": expected " + io::shape_to_string(e.shape) +
                                                   " " + want + ", got " + io::shape_to_string(t.shape) + " " +
                                                   dtype_name(*t.model_dtype) + where);
      continue;
    }
    WeightView w;
    w.name = e.name;
    w.data = t.data;
    w.dtype = *t.model_dtype;
    w.shape = t.shape;
    impl.total_bytes += t.bytes();
    impl.tensors.emplace(e.name, std::move(w));
    found.erase(it);
  }
  if (!problems.empty()) {
    Status first = problems.front();
    if (problems.size() == 1) return first;
    return Status(first.code(), first.message() + " (and " + std::to_string(problems.size() - 1) + " more problem" +
                                    (problems.size() > 2 ? "s" : "") + ")");
  }
  if (!found.empty()) {
    std::string msg = "checkpoint " + impl.dir + ": ignoring " + std::to_string(found.size()) +
                      " tensor(s) this model does not use: ";
    std::size_t i = 0;
    for (const auto& [name, f] : found) {
      if (i == 5) {
        msg += ", ...";
        break;
      }
      msg += (i++ ? ", " : "") + f.tensor->name;
    }
    log(LogLevel::warning, msg);
  }
  return Status::success();
}

}  // namespace

Result<Checkpoint> Checkpoint::open(const std::string& dir) {
  std::error_code ec;
  const fs::path root(dir);
  if (!fs::exists(root, ec)) return Status(ErrorCode::not_found, "model folder " + dir + " does not exist");
  if (!fs::is_directory(root, ec)) return Status(ErrorCode::invalid_argument, dir + " is not a folder");

  Checkpoint ck;
  Impl& impl = *ck.impl_;
  impl.dir = dir;
  PIXTRAL_RETURN_IF_ERROR(detect_and_parse(root, impl));
  std::map<std::string, Found> found;
  PIXTRAL_RETURN_IF_ERROR(index_tensors(impl, found));
  PIXTRAL_RETURN_IF_ERROR(validate(impl, found));
  return ck;
}

}  // namespace pixtral
