// SPDX-License-Identifier: Apache-2.0
// The CUDA backend's environment switches (PIXTRAL_CUDA_*): A/B comparisons of one library (PERF_NOTES' method) and
// test hooks. Each is read where it is used — once (a function-local static) or at every launch, so that a test can
// set it between runs, as its comment says. One spelling for the questions they ask.
#pragma once

#include <cstdlib>
#include <cstring>

namespace pixtral::cuda {

/// Set to a value starting with '0': a default-on switch turned off.
inline bool env_zero(const char* name) {
  const char* e = std::getenv(name);
  return e && e[0] == '0';
}
/// Set to a value starting with '1': a default-off switch turned on.
inline bool env_one(const char* name) {
  const char* e = std::getenv(name);
  return e && e[0] == '1';
}
/// Set to exactly `value` (e.g. "require").
inline bool env_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e && std::strcmp(e, value) == 0;
}
/// The integer at the start of the value (std::atol), `fallback` when unset.
inline long env_long(const char* name, long fallback) {
  const char* e = std::getenv(name);
  return e ? std::atol(e) : fallback;
}

}  // namespace pixtral::cuda
