// SPDX-License-Identifier: Apache-2.0
// Shared helpers of the CUDA backend: checked CUDA/cuBLAS calls (file:line in every message), element type
// conversion between fp32 math and the f32/bf16 storage types, deterministic warp/block reductions, and dtype
// dispatch for launchers. Private to libpixtral_cuda.so (the engine's public headers never see CUDA types).
// ref: llm.c llmc/cuda_common.h (cudaCheck), llmc/cuda_utils.cuh (blockReduce).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "cuda/timeline.cuh"
#include "pixtral/status.h"

namespace pixtral::cuda {

using bf16 = __nv_bfloat16;

inline Status cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::out_of_memory : ErrorCode::device;
  return Status(code, std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " +
                          cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

inline Status cublas_error(cublasStatus_t s, const char* expr, const char* file, int line) {
  ErrorCode code = s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::out_of_memory : ErrorCode::device;
  return Status(code, std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " +
                          cublas_status_name(s));
}

}  // namespace pixtral::cuda

/// Return a device Status naming file:line and the call when a CUDA runtime call fails.
#define PIXTRAL_CUDA_CHECK(expr)                                                          \
  do {                                                                                    \
    cudaError_t _pixtral_e = (expr);                                                      \
    if (_pixtral_e != cudaSuccess)                                                        \
      return ::pixtral::cuda::cuda_error(_pixtral_e, #expr, __FILE__, __LINE__);         \
  } while (0)

/// Same for cuBLAS.
#define PIXTRAL_CUBLAS_CHECK(expr)                                                        \
  do {                                                                                    \
    cublasStatus_t _pixtral_s = (expr);                                                   \
    if (_pixtral_s != CUBLAS_STATUS_SUCCESS)                                              \
      return ::pixtral::cuda::cublas_error(_pixtral_s, #expr, __FILE__, __LINE__);       \
  } while (0)

/// After a kernel launch: configuration errors surface here with the launch site.
#define PIXTRAL_CUDA_LAUNCH_CHECK(name) PIXTRAL_CUDA_CHECK(cudaGetLastError())

namespace pixtral::cuda {

// ---- element access: storage type <-> fp32 math ----------------------------------------------------------
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }  // RNE, as torch

/// Asks L2 for one 128-byte line; unlike a load it ties up no register, so a warp can keep more in flight than its
/// registers hold (the optional prefetch of the GEMVs and of decode attention).
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

/// The 8 bf16 values of a 16-byte load, to fp32 (the GEMVs, the row kernels, decode attention).
__device__ __forceinline__ void bf16x8_to_f32(const uint4& u, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

/// 8 consecutive activations starting at element 8c, as fp32 (the GEMVs' x: bf16 or f32, 16-byte aligned rows).
/// Plain loads, not the non-coherent path (ld.global.nc): under programmatic dependent launch the previous kernel
/// writes x while this one is resident, so x is not read-only for this kernel's lifetime — the condition .nc
/// needs; griddepcontrol.wait makes the previous grid's writes visible to ordinary loads.
/// (__ldca = ld.global.ca, the default caching of an ordinary load, as one 16-byte access.)
__device__ __forceinline__ void load_x8(const bf16* x, std::int64_t c, float f[8]) {
  bf16x8_to_f32(__ldca(reinterpret_cast<const uint4*>(x) + c), f);
}
__device__ __forceinline__ void load_x8(const float* x, std::int64_t c, float f[8]) {
  const float4 a = __ldca(reinterpret_cast<const float4*>(x) + 2 * c);
  const float4 b = __ldca(reinterpret_cast<const float4*>(x) + 2 * c + 1);
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
  f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

/// silu(g) · u in fp32: the one formula of silu_mul and of the GEMV that fuses it (same bits in both).
__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }
/// silu_times of g and u as a matmul into TO would have stored them (rounded to TO first).
template <class TO>
__device__ __forceinline__ TO silu_mul_rounded(float g, float u) {
  return from_f32<TO>(silu_times(to_f32(from_f32<TO>(g)), to_f32(from_f32<TO>(u))));
}

/// Programmatic dependent launch: a kernel launched by launch_dependent (kernels.cuh) may start while the previous
/// kernel on the stream still runs; before this returns it must not read what that kernel writes nor write
/// anything. No-op without PDL.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#ifdef PIXTRAL_CUDA_TIMELINE
  if (threadIdx.x == 0) tl_wait_slot() = tl_now();
#endif
}

/// Programmatic dependent launch, the other half: lets the next kernel on the stream (launched by launch_dependent)
/// start now. Called first thing by the decode-step kernels, so the next kernel's blocks become resident while
/// this one's last wave drains and issue what they may before waiting (weights, old KV rows: never what this
/// kernel or an earlier one writes). The next kernel's wait still waits for this whole grid (and its memory).
__device__ __forceinline__ void allow_dependents_to_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// ---- deterministic reductions (fixed shuffle tree, no atomics) -------------------------------------------
/// 16-byte streaming load of data read once (weights): non-coherent path, not kept in L1.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// ---- cp.async (Ampere+): 16-byte global → shared copies that need no registers --------------------------------
/// Copies 16 bytes to shared address `dst`; with `valid` false nothing is read and the 16 bytes are zeroed.
__device__ __forceinline__ void cp_async16(std::uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
/// Copies 4 bytes (scales), through L1 (.ca: the only form for fewer than 16 bytes).
__device__ __forceinline__ void cp_async4(std::uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/// Waits until at most N of this thread's most recent groups are pending (all older ones complete).
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return std::uint32_t(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result. `scratch` ≥ 32 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

// ---- dtype dispatch for launchers ------------------------------------------------------------------------
template <class T>
struct Tag {
  using type = T;
};

/// Call f(Tag<float>{}) or f(Tag<bf16>{}) for an activation dtype; f16 activations are not supported.
template <class F>
Status dispatch_act(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(Tag<float>{});
    case DType::bf16: return f(Tag<bf16>{});
    default: return Status(ErrorCode::unsupported, std::string("cuda: activation dtype ") + dtype_name(t) +
                                                       " is not supported (use f32 or bf16)");
  }
}

inline int ceil_div(std::int64_t a, std::int64_t b) { return int((a + b - 1) / b); }

}  // namespace pixtral::cuda
