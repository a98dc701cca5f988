// SPDX-License-Identifier: Apache-2.0
// Checkpoint::open on tiny generated folders: both layouts, both HF prefix styles, shards, precedence, every
// bad-input case; and the synthetic full-size Pixtral-12B header (sparse file, no 25 GB of data).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "io/checkpoint.h"
#include "tiny_model.h"

namespace pixtral::testing {
namespace {

std::size_t expected_count(const TinySpec& s) {
  return 1 + 9 * std::size_t(s.n_layers) + 2 + 2 + 9 * std::size_t(s.v_layers) + (s.adapter_bias ? 4 : 2);
}

// Canonical name → bytes, as read back through the checkpoint.
std::map<std::string, std::vector<std::uint8_t>> contents(const Checkpoint& ck) {
  std::map<std::string, std::vector<std::uint8_t>> out;
  for (const auto& [name, w] : ck.tensors()) {
    const auto* p = static_cast<const std::uint8_t*>(w.data);
    out[name] = std::vector<std::uint8_t>(p, p + w.bytes());
  }
  return out;
}

void expect_error(const Result<Checkpoint>& r, ErrorCode code, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << needle;
  EXPECT_EQ(r.status().code(), code) << r.status().to_string();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

class CheckpointTest : public ::testing::Test {
 protected:
  TinySpec spec_;
  TempDir dir_;
};

TEST_F(CheckpointTest, NativeLayoutOpensWithConfigAndData) {
  const auto tensors = tiny_tensors(spec_);
  write_native(dir_.path(), spec_, tensors);
  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->layout(), CheckpointLayout::mistral);
  EXPECT_EQ(ck->rope_pairs(), ops::RopePairs::interleaved);
  EXPECT_EQ(ck->tokenizer_path(), (dir_ / "tekken.json").string());
  EXPECT_EQ(ck->weight_dtype(), DType::bf16);
  const ModelConfig& c = ck->config();
  EXPECT_EQ(c.dim, spec_.dim);
  EXPECT_EQ(c.head_dim, spec_.head_dim);
  EXPECT_EQ(c.n_kv_heads, spec_.n_kv_heads);
  EXPECT_EQ(c.rope_theta, 1.0e9f);
  EXPECT_EQ(c.vision.patch_size, spec_.v_patch);
  EXPECT_EQ(c.vision.head_dim, spec_.v_hidden / spec_.v_heads);
  EXPECT_TRUE(c.has_vision);
  ASSERT_EQ(ck->tensors().size(), expected_count(spec_));
  std::uint64_t total = 0;
  for (const auto& t : tensors) {
    ASSERT_TRUE(ck->has_tensor(t.name)) << t.name;
    const WeightView& w = ck->tensor(t.name);
    EXPECT_EQ(w.name, t.name);
    EXPECT_EQ(w.shape, t.shape);
    EXPECT_EQ(w.dtype, DType::bf16);
    ASSERT_EQ(w.bytes(), t.bytes.size());
    EXPECT_EQ(std::memcmp(w.data, t.bytes.data(), t.bytes.size()), 0) << t.name;
    total += t.bytes.size();
  }
  EXPECT_EQ(ck->total_bytes(), total);
}

TEST_F(CheckpointTest, CheckpointStaysValidAfterMove) {
  write_native(dir_.path(), spec_, tiny_tensors(spec_));
  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  const auto before = contents(*ck);
  Checkpoint moved = std::move(ck).value();
  EXPECT_EQ(contents(moved), before);
}

TEST_F(CheckpointTest, HfLayoutsMapToTheSameTensorsAsNative) {
  const auto tensors = tiny_tensors(spec_);
  write_native(dir_.path(), spec_, tensors);
  auto native = Checkpoint::open(dir_.str());
  ASSERT_TRUE(native.ok()) << native.status().to_string();
  const auto want = contents(*native);

  struct Case { const char* name; bool new_prefix; int shards; };
  for (const Case& c : {Case{"old prefix", false, 1}, Case{"new prefix", true, 1}, Case{"old sharded", false, 3},
                        Case{"new sharded", true, 2}}) {
    SCOPED_TRACE(c.name);
    TempDir d;
    write_hf(d.path(), spec_, tensors, c.new_prefix, c.shards);
    auto hf = Checkpoint::open(d.str());
    ASSERT_TRUE(hf.ok()) << hf.status().to_string();
    EXPECT_EQ(hf->layout(), CheckpointLayout::hf);
    EXPECT_EQ(hf->rope_pairs(), ops::RopePairs::halves);
    EXPECT_EQ(hf->config().dim, native->config().dim);
    EXPECT_EQ(hf->config().head_dim, native->config().head_dim);
    EXPECT_EQ(hf->config().rope_theta, native->config().rope_theta);
    EXPECT_EQ(hf->config().norm_eps, native->config().norm_eps);
    EXPECT_EQ(hf->config().max_context, 131072);  // the converter's 1,024,000 is capped
    EXPECT_EQ(hf->config().vision.image_token_id, 10);
    EXPECT_EQ(contents(*hf), want);
    EXPECT_EQ(hf->total_bytes(), native->total_bytes());
  }
}

TEST_F(CheckpointTest, NativeShardsAreMerged) {
  const auto tensors = tiny_tensors(spec_);
  write_text(dir_ / "params.json", tiny_params_json(spec_).dump());
  write_text(dir_ / "tekken.json", "{}");
  const std::size_t half = tensors.size() / 2;
  write_safetensors(dir_ / "consolidated-00001-of-00002.safetensors", {tensors.begin(), tensors.begin() + half});
  write_safetensors(dir_ / "consolidated-00002-of-00002.safetensors", {tensors.begin() + half, tensors.end()});
  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->tensors().size(), tensors.size());
}

TEST_F(CheckpointTest, DuplicateTensorAcrossShardsIsAnError) {
  const auto tensors = tiny_tensors(spec_);
  write_text(dir_ / "params.json", tiny_params_json(spec_).dump());
  write_text(dir_ / "tekken.json", "{}");
  write_safetensors(dir_ / "consolidated.00.safetensors", tensors);
  write_safetensors(dir_ / "consolidated.01.safetensors", {tensors[3]});
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format, "tensor " + tensors[3].name + " is stored twice");
}

TEST_F(CheckpointTest, NativeWinsWhenBothLayoutsArePresent) {
  const auto tensors = tiny_tensors(spec_);
  write_hf(dir_.path(), spec_, tiny_tensors(spec_, /*seed=*/99), false);
  write_native(dir_.path(), spec_, tensors);
  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->layout(), CheckpointLayout::mistral);
  EXPECT_EQ(std::memcmp(ck->tensor(tensors[0].name).data, tensors[0].bytes.data(), tensors[0].bytes.size()), 0);
}

TEST_F(CheckpointTest, AdapterWithoutBias) {
  spec_.adapter_bias = false;
  write_native(dir_.path(), spec_, tiny_tensors(spec_));
  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_FALSE(ck->config().vision.adapter_bias);
  EXPECT_FALSE(ck->has_tensor("vision_language_adapter.w_in.bias"));
  EXPECT_EQ(ck->tensors().size(), expected_count(spec_));
}

TEST_F(CheckpointTest, F32AndF16CheckpointsAndMixedDtypes) {
  for (const char* dt : {"F32", "F16"}) {
    TempDir d;
    TinySpec s;
    s.dtype = dt;
    write_native(d.path(), s, tiny_tensors(s));
    auto ck = Checkpoint::open(d.str());
    ASSERT_TRUE(ck.ok()) << ck.status().to_string();
    EXPECT_EQ(ck->weight_dtype(), std::string(dt) == "F32" ? DType::f32 : DType::f16);
  }
  // Mixed: patch_conv in F32, the rest BF16 → weight_dtype is patch_conv's.
  auto tensors = tiny_tensors(spec_);
  std::mt19937 rng(4);
  for (auto& t : tensors)
    if (t.name == "vision_encoder.patch_conv.weight") t = random_tensor(t.name, "F32", t.shape, rng);
  write_native(dir_.path(), spec_, tensors);
  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->weight_dtype(), DType::f32);
  EXPECT_EQ(ck->tensor("norm.weight").dtype, DType::bf16);
}

TEST_F(CheckpointTest, MissingFolderAndFiles) {
  expect_error(Checkpoint::open((dir_ / "absent").string()), ErrorCode::not_found, "does not exist");
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::not_found, "no model found in");
  write_text(dir_ / "params.json", tiny_params_json(spec_).dump());
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::not_found, "params.json but no consolidated.safetensors");
  std::filesystem::remove(dir_ / "params.json");
  write_text(dir_ / "config.json", tiny_hf_config_json(spec_).dump());
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::not_found, "config.json but neither model.safetensors");
}

TEST_F(CheckpointTest, MissingTekkenSaysWhereToGetIt) {
  write_native(dir_.path(), spec_, tiny_tensors(spec_));
  std::filesystem::remove(dir_ / "tekken.json");
  auto r = Checkpoint::open(dir_.str());
  expect_error(r, ErrorCode::not_found, "tekken.json not found");
  expect_error(r, ErrorCode::not_found, "mistralai/Pixtral-12B-2409");
  TempDir hf;
  write_hf(hf.path(), spec_, tiny_tensors(spec_), true);
  std::filesystem::remove(hf / "tekken.json");
  expect_error(Checkpoint::open(hf.str()), ErrorCode::not_found, "download tekken.json");
}

TEST_F(CheckpointTest, IndexNamingAMissingShard) {
  write_hf(dir_.path(), spec_, tiny_tensors(spec_), false, 3);
  std::filesystem::remove(dir_ / "model-00002-of-00003.safetensors");
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::not_found, "missing shard model-00002-of-00003.safetensors");
}

TEST_F(CheckpointTest, IndexEntryNotInItsShard) {
  write_hf(dir_.path(), spec_, tiny_tensors(spec_), false, 2);
  json index = json::parse(std::ifstream(dir_ / "model.safetensors.index.json"));
  // The projector bias is the last tensor written, so it lives in shard 2; point the index at shard 1.
  ASSERT_EQ(index["weight_map"]["multi_modal_projector.linear_2.bias"], "model-00002-of-00002.safetensors");
  index["weight_map"]["multi_modal_projector.linear_2.bias"] = "model-00001-of-00002.safetensors";
  write_text(dir_ / "model.safetensors.index.json", index.dump());
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format, "which does not contain it");
  index["weight_map"]["language_model.lm_head.weight"] = "../elsewhere.safetensors";
  write_text(dir_ / "model.safetensors.index.json", index.dump());
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format, "not a file name in the model folder");
}

TEST_F(CheckpointTest, TruncatedWeightsFile) {
  write_native(dir_.path(), spec_, tiny_tensors(spec_));
  const auto p = dir_ / "consolidated.safetensors";
  std::filesystem::resize_file(p, std::filesystem::file_size(p) - 100);
  auto r = Checkpoint::open(dir_.str());
  expect_error(r, ErrorCode::format, "truncated");
  expect_error(r, ErrorCode::format, "100 bytes missing");
  expect_error(r, ErrorCode::format, "consolidated.safetensors");
}

TEST_F(CheckpointTest, WrongShape) {
  auto tensors = tiny_tensors(spec_);
  std::mt19937 rng(2);
  for (auto& t : tensors)
    if (t.name == "layers.1.attention.wq.weight") t = random_tensor(t.name, "BF16", {spec_.dim, spec_.dim}, rng);
  write_native(dir_.path(), spec_, tensors);
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format,
               "tensor layers.1.attention.wq.weight: expected [32,16] bf16, got [16,16] bf16 "
               "(in consolidated.safetensors)");
}

TEST_F(CheckpointTest, WrongShapeInHfNamesTheStoredTensor) {
  auto tensors = tiny_tensors(spec_);
  std::mt19937 rng(2);
  for (auto& t : tensors)
    if (t.name == "vision_language_adapter.w_out.bias") t = random_tensor(t.name, "BF16", {3}, rng);
  write_hf(dir_.path(), spec_, tensors, true);
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format,
               "tensor vision_language_adapter.w_out.bias: expected [16] bf16, got [3] bf16 (in model.safetensors, "
               "stored as model.multi_modal_projector.linear_2.bias)");
}

TEST_F(CheckpointTest, WrongDtype) {
  auto tensors = tiny_tensors(spec_);
  std::mt19937 rng(2);
  for (auto& t : tensors)
    if (t.name == "layers.0.ffn_norm.weight") t = random_tensor(t.name, "I32", t.shape, rng);
  write_native(dir_.path(), spec_, tensors);
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::unsupported,
               "tensor layers.0.ffn_norm.weight has dtype I32; supported: BF16, F16, F32");
}

TEST_F(CheckpointTest, MissingTensor) {
  auto tensors = tiny_tensors(spec_);
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                               [](const StTensor& t) { return t.name == "layers.1.ffn_norm.weight"; }),
                tensors.end());
  write_native(dir_.path(), spec_, tensors);
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::not_found,
               "missing tensor layers.1.ffn_norm.weight (in consolidated.safetensors)");
  TempDir hf;
  write_hf(hf.path(), spec_, tensors, false);
  expect_error(Checkpoint::open(hf.str()), ErrorCode::not_found,
               "missing tensor layers.1.ffn_norm.weight (HF name "
               "language_model.model.layers.1.post_attention_layernorm.weight, in model.safetensors)");
}

TEST_F(CheckpointTest, SeveralProblemsAreCounted) {
  auto tensors = tiny_tensors(spec_);
  tensors.resize(tensors.size() - 3);
  write_native(dir_.path(), spec_, tensors);
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::not_found, "(and 2 more problems)");
}

TEST_F(CheckpointTest, ExtraTensorsWarn) {
  auto tensors = tiny_tensors(spec_);
  std::mt19937 rng(8);
  tensors.push_back(random_tensor("layers.0.attention.rotary.inv_freq", "F32", {4}, rng));
  write_native(dir_.path(), spec_, tensors);
  LogCapture logs;
  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_FALSE(ck->has_tensor("layers.0.attention.rotary.inv_freq"));
  EXPECT_TRUE(logs.contains("layers.0.attention.rotary.inv_freq")) << logs.all();

  TempDir hf;
  auto hft = tiny_tensors(spec_);
  write_hf(hf.path(), spec_, hft, false);
  auto renamed = renamed_hf(hft, false);
  renamed.push_back(random_tensor("language_model.model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {4}, rng));
  write_safetensors(hf / "model.safetensors", renamed);
  LogCapture logs2;
  auto ck2 = Checkpoint::open(hf.str());
  ASSERT_TRUE(ck2.ok()) << ck2.status().to_string();
  EXPECT_TRUE(logs2.contains("rotary_emb.inv_freq")) << logs2.all();
}

TEST_F(CheckpointTest, BothHfPrefixStylesInOneFileCollide) {
  auto tensors = renamed_hf(tiny_tensors(spec_), false);
  std::mt19937 rng(9);
  tensors.push_back(random_tensor("model.language_model.norm.weight", "BF16", {spec_.dim}, rng));
  write_hf(dir_.path(), spec_, {}, false);
  write_safetensors(dir_ / "model.safetensors", tensors);
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format, "tensor norm.weight is stored twice");
}

TEST_F(CheckpointTest, PreprocessorConfigMustAgree) {
  write_hf(dir_.path(), spec_, tiny_tensors(spec_), false);
  write_text(dir_ / "preprocessor_config.json",
             json{{"patch_size", {{"height", spec_.v_patch}, {"width", spec_.v_patch}}},
                  {"size", {{"longest_edge", spec_.v_image}}}}
                 .dump());
  ASSERT_TRUE(Checkpoint::open(dir_.str()).ok());
  write_text(dir_ / "preprocessor_config.json", json{{"patch_size", 14}}.dump());
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format, "patch_size is 14 but the model's vision patch_size is 4");
  write_text(dir_ / "preprocessor_config.json", json{{"size", {{"longest_edge", 1540}}}}.dump());
  expect_error(Checkpoint::open(dir_.str()), ErrorCode::format,
               "size.longest_edge is 1540 but the model's vision image_size is 32");
}

TEST_F(CheckpointTest, TokenizerAgreement) {
  ModelConfig c;
  c.vision.patch_size = 16;
  c.vision.image_size = 1024;
  EXPECT_TRUE(check_tokenizer_agreement(c, 16, 1024).ok());
  auto st = check_tokenizer_agreement(c, 14, 1024);
  EXPECT_EQ(st.code(), ErrorCode::format);
  EXPECT_NE(st.message().find("patch_size is 14 but the model's vision patch_size is 16"), std::string::npos)
      << st.message();
  st = check_tokenizer_agreement(c, 16, 1540);
  EXPECT_NE(st.message().find("max_image_size is 1540 but the model's vision image_size is 1024"), std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace pixtral::testing
