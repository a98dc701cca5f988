// SPDX-License-Identifier: Apache-2.0
// The host half of qtma_common.cuh.
#include "cuda/qtma_common.cuh"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "cuda/env_switch.h"

namespace pixtral::cuda::qtma {

TmaSwitch tma_switch(const char* env) {
  if (env_is(env, "require")) return TmaSwitch::require;
  if (std::strcmp(env, kQ8Env) == 0) return env_long(env, 0) >= 1 ? TmaSwitch::on : TmaSwitch::off;
  return env_zero(env) ? TmaSwitch::off : TmaSwitch::on;
}

Status not_here(const char* env, const char* why) {
  if (tma_switch(env) != TmaSwitch::require) return {};
  return Status(ErrorCode::unsupported, std::string("one-row TMA GEMV (") + env + "=require): " + why);
}

MapSpec make_map(const void* base, CUtensorMapDataType dtype, std::initializer_list<cuuint64_t> dims,
                 std::initializer_list<cuuint64_t> strides, std::initializer_list<cuuint32_t> box) {
  MapSpec m;
  m.base = base;
  m.dtype = dtype;
  m.rank = int(dims.size());
  std::copy(dims.begin(), dims.end(), m.dims);
  std::copy(strides.begin(), strides.end(), m.strides);
  std::copy(box.begin(), box.end(), m.box);
  return m;
}

bool encode_map(CUtensorMap* m, const MapSpec& s) {
  const EncodeTiledFn fn = encode_tiled();
  if (!fn) return false;
  const auto encode = [&] {
    const cuuint32_t es[5] = {1, 1, 1, 1, 1};
    return fn(m, s.dtype, cuuint32_t(s.rank), const_cast<void*>(s.base), s.dims, s.strides, s.box, es,
              CU_TENSOR_MAP_INTERLEAVE_NONE, s.swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
  };
  if (!s.cache) return encode();
  using Key = std::tuple<const void*, int, int, std::array<cuuint64_t, 5>, std::array<cuuint64_t, 4>,
                         std::array<cuuint32_t, 5>, int>;
  Key key{s.base, int(s.dtype), s.rank, {}, {}, {}, int(s.swizzle)};
  std::copy(s.dims, s.dims + 5, std::get<3>(key).begin());
  std::copy(s.strides, s.strides + 4, std::get<4>(key).begin());
  std::copy(s.box, s.box + 5, std::get<5>(key).begin());
  static std::mutex mu;
  static std::map<Key, CUtensorMap> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(key); it != cache.end()) {
    *m = it->second;
    return true;
  }
  if (!encode()) return false;
  cache.emplace(key, *m);
  return true;
}

int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> counts[kMaxDevices] = {};  // 0: not read yet
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    (void)cudaGetLastError();
    return 0;
  }
  if (const int n = counts[dev].load(std::memory_order_relaxed)) return n;
  int c = 0;
  if (cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  counts[dev].store(c, std::memory_order_relaxed);
  return c;
}

}  // namespace pixtral::cuda::qtma
