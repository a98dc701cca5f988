// SPDX-License-Identifier: Apache-2.0
// The C entry points of libpixtral_cuda.so, shared by the library and its loader (core/cuda_loader.cpp).
// No CUDA types. Bump kCudaAbiVersion whenever ops::Backend (ops/backend.h) or CudaExtension (cuda/cuda_ext.h)
// change layout, so a stale library is refused with a clear message instead of crashing.
#pragma once

#include <cstddef>

namespace pixtral::cuda {
inline constexpr int kCudaAbiVersion = 9;  // 2: CudaExtension decode state; 3: sample, rope_append_kv, weight
                                           // download / prequantized upload, inject_device_fault; 4: matmul_silu;
                                           // 5: matmul_rope_append_kv; 6: upload_weight_host;
                                           // 7: matmul_add; 8: sample_to_state, set_decode_draw,
                                           // take_sampled_token, allocation_attempts;
                                           // 9: rms_norm_matmul_rope_append_kv, rms_norm_matmul_silu
}

extern "C" {
/// The ABI version the library was built with (compare with kCudaAbiVersion).
typedef int (*PixtralCudaAbiFn)();
/// Create the backend on `device`. Returns 0 and stores an ops::Backend* (owned by the caller, delete through
/// the virtual destructor) in *out; otherwise a pixtral::ErrorCode value and a message in err[0..errlen).
typedef int (*PixtralCudaCreateFn)(int device, void** out, char* err, std::size_t errlen);
/// The CudaExtension* of a backend created by pixtral_cuda_create (nullptr for any other pointer).
typedef void* (*PixtralCudaExtensionFn)(void* backend);
}
