// SPDX-License-Identifier: Apache-2.0
// The quantized-weights cache file (issue 6; docs/quant-cache.md), on the CPU backend with a tiny random model
// whose dims are multiples of 128 (int4 loads use both formats: int4 g128 for wq..w3, int8 for the head):
//   - XXH64 against reference digests; the CPU download/upload_prequantized round trip is byte-exact;
//   - the first int4/int8 load writes the cache, the second reads it ("hit", logged) with bit-identical logits;
//   - touching a source file (mtime) or changing the quantization format version makes it stale → rebuilt;
//   - a truncated file, flipped header/key/index bytes, a wrong payload size, an out-of-bounds offset (each
//     re-hashed so the bounds checks themselves are exercised) and a damaged payload are rejected, never used;
//   - a model folder that refuses files falls back to $XDG_CACHE_HOME/quire; a failed write (disk full
//     injected, or a folder that cannot exist) leaves the load successful and no file behind; off writes nothing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/quant.h"
#include "ops/backend.h"
#include "pixtral/log.h"
#include "pixtral/model.h"
#include "runtime/quant_cache.h"
#include "quant_test_util.h"
#include "tiny_model.h"

using namespace pixtral;
namespace fs = std::filesystem;

namespace {

tiny::TinyModelSpec spec128() { return quant_test::spec128(91); }

std::vector<std::uint8_t> read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_file(const std::string& p, const std::vector<std::uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
std::uint64_t get64(const std::vector<std::uint8_t>& b, std::size_t off) {
  std::uint64_t v;
  std::memcpy(&v, b.data() + off, 8);
  return v;
}
void put64(std::vector<std::uint8_t>& b, std::size_t off, std::uint64_t v) { std::memcpy(b.data() + off, &v, 8); }

/// Recompute the metadata hash as docs/quant-cache.md defines it (XXH64 of [0, index end) with bytes 48..55
/// read as zero), so a tampered field reaches the bounds checks behind the hash.
void rehash(std::vector<std::uint8_t>& b) {
  const std::uint64_t key_bytes = get64(b, 24), index_bytes = get64(b, 32);
  const std::uint64_t index_end = (64 + key_bytes + 7) / 8 * 8 + index_bytes;
  put64(b, 48, 0);
  put64(b, 48, qcache::Xxh64::of(b.data(), std::size_t(index_end)));
}
/// Offset of the first index entry.
std::size_t first_entry(const std::vector<std::uint8_t>& b) { return std::size_t((64 + get64(b, 24) + 7) / 8 * 8); }

class QuantCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tiny::write_tiny_model(spec128());
    ASSERT_FALSE(dir_.empty()) << "could not write the tiny model";
    xdg_ = dir_ + "-xdg";
    if (const char* x = std::getenv("XDG_CACHE_HOME")) old_xdg_ = x, had_xdg_ = true;
    ::setenv("XDG_CACHE_HOME", xdg_.c_str(), 1);  // never the real user cache
    qcache::test_hooks() = {};
    set_log_sink([this](LogLevel, std::string_view m) { logs_ += std::string(m) + "\n"; });
  }
  void TearDown() override {
    set_log_sink(nullptr);
    qcache::test_hooks() = {};
    if (had_xdg_) ::setenv("XDG_CACHE_HOME", old_xdg_.c_str(), 1);
    else ::unsetenv("XDG_CACHE_HOME");
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::remove_all(xdg_, ec);
  }

  std::shared_ptr<Model> load(Precision p, QuantCache c = QuantCache::automatic, const std::string& cache_dir = {}) {
    LoadOptions lo;
    lo.device = Device::cpu;
    lo.threads = 2;
    lo.precision = p;
    lo.quant_cache = c;
    lo.quant_cache_dir = cache_dir;
    auto m = Model::load(dir_, lo);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return m.ok() ? m.value() : nullptr;
  }
  std::string cache_path(const std::string& prec) const {
    return (fs::weakly_canonical(dir_) / ("quire-quant-" + prec + ".qcache")).string();
  }

  std::string dir_, xdg_, old_xdg_, logs_;
  bool had_xdg_ = false;
};

/// Raw logits of the generated tokens for a few prompts (prefill and three decode steps each).
std::vector<std::vector<float>> logits_of(const Model& m) {
  return quant_test::logits_of(m, {"Hello there", "What is in the picture?", "1 2 3 4"}, 4);
}
using quant_test::bit_identical;

bool has_temp_files(const std::string& dir) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().find(".qcache.tmp-") != std::string::npos) return true;
  return false;
}

// ---- units --------------------------------------------------------------------------------------------------

// Reference digests from the xxHash library itself: python3 -c "import ctypes; l=ctypes.CDLL('libxxhash.so.0');
// l.XXH64.restype=ctypes.c_uint64; l.XXH64.argtypes=[ctypes.c_char_p,ctypes.c_size_t,ctypes.c_uint64];
// s=bytes(range(256))+b'xyz'; print(hex(l.XXH64(b'',0,0)), hex(l.XXH64(b'abc',3,0)), hex(l.XXH64(s,len(s),0)))"
TEST(QuantCacheHash, Xxh64MatchesTheReferenceAndStreams) {
  EXPECT_EQ(qcache::Xxh64::of("", 0), 0xef46db3751d8e999ull);
  EXPECT_EQ(qcache::Xxh64::of("abc", 3), 0x44bc2cf5ad770999ull);
  std::vector<std::uint8_t> s(256);
  for (int i = 0; i < 256; ++i) s[std::size_t(i)] = std::uint8_t(i);
  s.insert(s.end(), {'x', 'y', 'z'});
  EXPECT_EQ(qcache::Xxh64::of(s.data(), s.size()), 0x487237078c6c3726ull);
  for (std::size_t step : {1u, 5u, 31u, 32u, 33u, 100u}) {  // any split gives the one-shot digest
    qcache::Xxh64 h;
    for (std::size_t i = 0; i < s.size(); i += step) h.update(s.data() + i, std::min(step, s.size() - i));
    EXPECT_EQ(h.digest(), 0x487237078c6c3726ull) << "step " << step;
  }
}

TEST(QuantCacheBackend, CpuDownloadAndPrequantizedUploadRoundTrip) {
  auto be = ops::make_cpu_backend(2);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 0.1f);
  for (quant::Format f : {quant::Format::int8_channel, quant::Format::int4_g128}) {
    const std::int64_t N = 48, K = 256;
    std::vector<std::uint16_t> bits(std::size_t(N * K));
    for (auto& b : bits) b = f32_to_bf16(nd(rng));
    WeightView v{"w", bits.data(), DType::bf16, {N, K}};
    auto q = be->upload_weight_quantized(v, f);
    ASSERT_TRUE(q.ok()) << q.status().message();
    auto ref = quant::quantize(bits.data(), DType::bf16, N, K, f, "w");
    ASSERT_TRUE(ref.ok());
    std::vector<std::uint8_t> data(ref->q.size(), 0xAA);
    std::vector<float> scales(ref->scales.size(), -1.f);
    ASSERT_TRUE(be->download_weight(*q, data.data(), scales.data()).ok());
    EXPECT_EQ(data, ref->q) << quant::format_name(f);
    EXPECT_EQ(0, std::memcmp(scales.data(), ref->scales.data(), scales.size() * 4)) << quant::format_name(f);
    // Straight copy back: the same bytes, and the same products.
    auto p = be->upload_weight_prequantized(data.data(), scales.data(), N, K, f, DType::bf16, "w");
    ASSERT_TRUE(p.ok()) << p.status().message();
    std::vector<std::uint8_t> data2(data.size());
    std::vector<float> scales2(scales.size());
    ASSERT_TRUE(be->download_weight(*p, data2.data(), scales2.data()).ok());
    EXPECT_EQ(data2, data);
    EXPECT_EQ(0, std::memcmp(scales2.data(), scales.data(), scales.size() * 4));
    // A row view downloads its own rows only.
    std::vector<std::uint8_t> part(std::size_t(5 * quant::row_bytes(f, K)));
    std::vector<float> part_s(std::size_t(5 * quant::scales_per_row(f, K)));
    ASSERT_TRUE(be->download_weight(p->rows_view(7, 5, "w"), part.data(), part_s.data()).ok());
    EXPECT_EQ(0, std::memcmp(part.data(), data.data() + 7 * quant::row_bytes(f, K), part.size()));
    // Shapes the format refuses are refused here too; dense weights cannot be downloaded this way.
    if (f == quant::Format::int4_g128) {
      EXPECT_EQ(be->upload_weight_prequantized(data.data(), scales.data(), N, 200, f, DType::bf16, "odd")
                    .status().code(), ErrorCode::unsupported);
    }
    auto dense = be->upload_weight(v);
    EXPECT_FALSE(be->download_weight(*dense, data.data(), scales.data()).ok());
    be->free_weight(*q);
    be->free_weight(*p);
  }
}

// ---- through Model::load --------------------------------------------------------------------------------------

TEST_F(QuantCacheTest, SecondLoadReadsTheCacheWithIdenticalLogits) {
  for (Precision p : {Precision::int4, Precision::int8}) {
    const std::string prec = precision_name(p);
    auto a = load(p);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->info().quant_cache, "written") << prec;
    EXPECT_EQ(a->info().quant_cache_path, cache_path(prec));
    ASSERT_TRUE(fs::exists(cache_path(prec))) << prec;
    EXPECT_FALSE(has_temp_files(dir_));
    const auto la = logits_of(*a);
    a.reset();
    logs_.clear();
    auto b = load(p);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->info().quant_cache, "hit") << prec;
    EXPECT_EQ(b->info().quant_cache_path, cache_path(prec));
    EXPECT_NE(logs_.find("reading quantized weights from " + cache_path(prec)), std::string::npos) << logs_;
    EXPECT_TRUE(bit_identical(la, logits_of(*b))) << prec << ": cached weights differ from quantized ones";
    // The same as a load that never sees a cache.
    auto c = load(p, QuantCache::off);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->info().quant_cache, "off");
    EXPECT_TRUE(bit_identical(la, logits_of(*c))) << prec;
  }
  // bf16 has nothing to cache.
  auto d = load(Precision::bf16);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->info().quant_cache, "");
  EXPECT_FALSE(fs::exists(cache_path("bf16")));
}

TEST_F(QuantCacheTest, OffNeitherReadsNorWrites) {
  auto a = load(Precision::int8, QuantCache::off);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->info().quant_cache, "off");
  EXPECT_FALSE(fs::exists(cache_path("int8")));
}

TEST_F(QuantCacheTest, TouchedSourceFileMakesTheCacheStale) {
  auto a = load(Precision::int4);
  ASSERT_TRUE(a);
  const auto la = logits_of(*a);
  a.reset();
  const fs::path st = fs::path(dir_) / "consolidated.safetensors";
  ASSERT_TRUE(fs::exists(st));
  fs::last_write_time(st, fs::last_write_time(st) + std::chrono::seconds(3));
  logs_.clear();
  auto b = load(Precision::int4);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->info().quant_cache, "stale");
  EXPECT_NE(logs_.find("stale quantized cache"), std::string::npos) << logs_;
  EXPECT_NE(logs_.find("consolidated.safetensors"), std::string::npos) << "the log names the changed file: " << logs_;
  EXPECT_TRUE(bit_identical(la, logits_of(*b)));
  b.reset();
  auto c = load(Precision::int4);  // rebuilt with the new key
  ASSERT_TRUE(c);
  EXPECT_EQ(c->info().quant_cache, "hit");
}

TEST_F(QuantCacheTest, DamagedFilesAreRejectedAndRebuilt) {
  auto a = load(Precision::int4);
  ASSERT_TRUE(a);
  const auto la = logits_of(*a);
  a.reset();
  const std::string path = cache_path("int4");
  const auto good = read_file(path);
  ASSERT_GT(good.size(), 4096u);
  auto key = qcache::make_key(dir_, "mistral", weight_options(Precision::int4));
  ASSERT_TRUE(key.ok()) << key.status().message();
  ASSERT_TRUE(qcache::CacheFile::open(path, *key).ok());

  struct Case {
    std::string what, expect;
    std::vector<std::uint8_t> bytes;
  };
  std::vector<Case> cases;
  auto with = [&](std::string what, std::string expect, auto edit) {
    auto b = good;
    edit(b);
    cases.push_back({std::move(what), std::move(expect), std::move(b)});
  };
  with("truncated", "truncated", [](auto& b) { b.resize(b.size() / 2); });
  with("truncated to 10 bytes", "no header", [](auto& b) { b.resize(10); });
  with("extended", "truncated or extended", [](auto& b) { b.push_back(0); });
  with("magic byte flipped", "bad magic", [](auto& b) { b[1] ^= 0x20; });
  with("version byte flipped", "hash mismatch", [](auto& b) { b[8] ^= 1; });
  with("tensor count byte flipped", "", [](auto& b) { b[40] ^= 1; });
  with("key byte flipped", "hash mismatch", [](auto& b) { b[70] ^= 1; });
  with("index byte flipped", "hash mismatch", [](auto& b) { b[first_entry(b) + 9] ^= 1; });
  // Tampered and re-hashed: the checks behind the hash must still catch them.
  with("values size + 1 (re-hashed)", "payload sizes do not match", [](auto& b) {
    put64(b, first_entry(b) + 32, get64(b, first_entry(b) + 32) + 1);
    rehash(b);
  });
  with("values offset past the end (re-hashed)", "out of bounds", [](auto& b) {
    put64(b, first_entry(b) + 24, (b.size() + 4096) / 4096 * 4096);
    rehash(b);
  });
  with("values offset misaligned (re-hashed)", "out of bounds", [](auto& b) {
    put64(b, first_entry(b) + 24, get64(b, first_entry(b) + 24) + 8);
    rehash(b);
  });
  with("quant format version (re-hashed)", "quantization format version", [](auto& b) {
    b[12] ^= 0x7;
    rehash(b);
  });
  with("payloads overlap (re-hashed)", "overlap", [](auto& b) {
    put64(b, first_entry(b) + 40, get64(b, first_entry(b) + 24));  // scales over the values
    rehash(b);
  });
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    write_file(path, c.bytes);
    auto f = qcache::CacheFile::open(path, *key);
    EXPECT_FALSE(f.ok());
    if (!c.expect.empty()) {
      EXPECT_NE(f.status().message().find(c.expect), std::string::npos) << f.status().message();
    }
    logs_.clear();
    auto m = load(Precision::int4);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->info().quant_cache, "stale") << logs_;
    EXPECT_TRUE(bit_identical(la, logits_of(*m)));
    EXPECT_EQ(read_file(path), good) << "rebuilt byte for byte (same weights, same key)";
  }

  // A damaged payload passes open() (metadata intact) but its tensor is never used: quantized instead.
  auto b = good;
  b[b.size() - 4096 - 1] ^= 0x10;  // inside the last tensor's payload (the head's scales)
  write_file(path, b);
  ASSERT_TRUE(qcache::CacheFile::open(path, *key).ok());
  logs_.clear();
  auto m = load(Precision::int4);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->info().quant_cache, "stale");
  EXPECT_NE(logs_.find("hash mismatch"), std::string::npos) << logs_;
  EXPECT_TRUE(bit_identical(la, logits_of(*m)));
  EXPECT_EQ(read_file(path), good);
}

TEST_F(QuantCacheTest, AHitUsesTheFileBytes) {
  // A payload edited with its hash updated is accepted ("hit") and changes the logits: the cached bytes are
  // what the model computes with (and the hashes are what keeps damaged bytes out).
  auto a = load(Precision::int8);
  ASSERT_TRUE(a);
  const auto la = logits_of(*a);
  a.reset();
  const std::string path = cache_path("int8");
  auto b = read_file(path);
  const std::uint32_t n = [&] { std::uint32_t v; std::memcpy(&v, b.data() + 40, 4); return v; }();
  std::size_t e = first_entry(b), last = e;
  for (std::uint32_t i = 0; i < n; ++i) {  // the last entry: the output head
    last = e;
    std::uint32_t name_bytes;
    std::memcpy(&name_bytes, b.data() + e, 4);
    e += 64 + (name_bytes + 7) / 8 * 8;
  }
  ASSERT_EQ(std::string(reinterpret_cast<const char*>(b.data() + last + 64), 13), "output.weight");
  const std::uint64_t voff = get64(b, last + 24), vbytes = get64(b, last + 32);
  const std::uint64_t soff = get64(b, last + 40), sbytes = get64(b, last + 48);
  for (std::uint64_t i = 0; i < sbytes; i += 4) {  // every scale of the head doubled
    float v;
    std::memcpy(&v, b.data() + soff + i, 4);
    v *= 2;
    std::memcpy(b.data() + soff + i, &v, 4);
  }
  qcache::Xxh64 h;
  h.update(b.data() + voff, std::size_t(vbytes));
  h.update(b.data() + soff, std::size_t(sbytes));
  put64(b, last + 56, h.digest());
  rehash(b);
  write_file(path, b);
  auto m = load(Precision::int8);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->info().quant_cache, "hit");
  const auto lb = logits_of(*m);
  ASSERT_EQ(lb.size(), la.size());
  ASSERT_FALSE(lb.empty());
  for (std::size_t i = 0; i < la[0].size(); i += 97)  // the head's output doubles exactly (fp32 scale · 2)
    EXPECT_FLOAT_EQ(lb[0][i], 2 * la[0][i]) << i;
}

TEST_F(QuantCacheTest, UnwritableModelFolderFallsBackToTheUserCache) {
  // CI runs as root (chmod cannot stop it): the hook makes the model folder refuse the file.
  qcache::test_hooks().unwritable_prefix = fs::weakly_canonical(dir_).string() + "/";
  auto a = load(Precision::int8);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->info().quant_cache, "written");
  const std::string p = a->info().quant_cache_path;
  EXPECT_EQ(p.rfind(xdg_ + "/quire/", 0), 0u) << p;
  EXPECT_TRUE(p.size() > 12 && p.compare(p.size() - 12, 12, "-int8.qcache") == 0) << p;
  EXPECT_TRUE(fs::exists(p));
  EXPECT_FALSE(fs::exists(cache_path("int8")));
  const auto la = logits_of(*a);
  a.reset();
  auto b = load(Precision::int8);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->info().quant_cache, "hit");
  EXPECT_EQ(b->info().quant_cache_path, p);
  EXPECT_TRUE(bit_identical(la, logits_of(*b)));
}

TEST_F(QuantCacheTest, FailedWritesNeverFailTheLoad) {
  // Disk full (injected) after a few KiB: the load succeeds, nothing is left behind, the next load writes.
  qcache::test_hooks().fail_write_after_bytes = 5000;
  auto a = load(Precision::int4);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->info().quant_cache, "unwritten");
  EXPECT_EQ(a->info().quant_cache_path, "");
  EXPECT_NE(logs_.find("No space left on device"), std::string::npos) << logs_;
  EXPECT_FALSE(fs::exists(cache_path("int4")));
  EXPECT_FALSE(has_temp_files(dir_));
  EXPECT_FALSE(fs::exists(xdg_ + "/quire")) << "a write that failed mid-way does not move to another folder";
  const auto la = logits_of(*a);
  a.reset();
  qcache::test_hooks() = {};
  // A cache folder that cannot exist (a regular file where its parent should be): a real ENOTDIR.
  const std::string blocker = dir_ + "/not-a-folder";
  write_file(blocker, {1, 2, 3});
  auto b = load(Precision::int4, QuantCache::automatic, blocker + "/cache");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->info().quant_cache, "unwritten");
  EXPECT_TRUE(bit_identical(la, logits_of(*b)));
  b.reset();
  auto c = load(Precision::int4);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->info().quant_cache, "written");
}

TEST_F(QuantCacheTest, OverrideFolderIsTheOnlyPlace) {
  const std::string own = dir_ + "-own";
  auto a = load(Precision::int8, QuantCache::automatic, own);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->info().quant_cache, "written");
  EXPECT_EQ(a->info().quant_cache_path, own + "/quire-quant-int8.qcache");
  EXPECT_FALSE(fs::exists(cache_path("int8")));
  a.reset();
  auto b = load(Precision::int8, QuantCache::automatic, own);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->info().quant_cache, "hit");
  b.reset();
  auto c = load(Precision::int8);  // without the override: the model folder, which has none
  ASSERT_TRUE(c);
  EXPECT_EQ(c->info().quant_cache, "written");
  std::error_code ec;
  fs::remove_all(own, ec);
}

}  // namespace
