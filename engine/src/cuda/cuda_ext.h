// SPDX-License-Identifier: Apache-2.0
// CudaExtension: what the model/runtime needs from the CUDA backend beyond ops::Backend, without CUDA types.
// Obtain it with ops::cuda_extension(backend) (declared here, defined in core/cuda_loader.cpp); it is null for
// any backend that is not the loaded CUDA one.
// Graph capture contract (decode step): call begin_capture(), run the step's ops, end_capture(); then replay()
// re-runs exactly the captured kernels with the same pointers and sizes. Ops that take host spans (ids,
// positions, rows, segments) copy them to the device when called, so a replayed graph sees the values of capture
// time: the runtime must put per-step values (token id, position, KV length) in device buffers it updates
// before replay — see the proposal in the issue-4 report (device-side position/length arguments).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/backend.h"

namespace pixtral::ops {

class CudaExtension {
 public:
  virtual ~CudaExtension() = default;
  /// The cudaStream_t every op is queued on (as void*, so this header stays CUDA-free).
  virtual void* stream() = 0;
  /// Device memory now free and total, in bytes.
  virtual Status memory_info(std::size_t* free_bytes, std::size_t* total_bytes) = 0;
  /// Bytes currently allocated through alloc/upload_weight, and the peak since creation.
  virtual std::size_t allocated_bytes() const = 0;
  virtual std::size_t peak_allocated_bytes() const = 0;
  /// Start capturing the ops queued from this thread into a CUDA graph (replaces any earlier graph).
  virtual Status begin_capture() = 0;
  /// Stop capturing and instantiate the graph.
  virtual Status end_capture() = 0;
  /// Launch the instantiated graph on the backend's stream.
  virtual Status replay() = 0;
  /// Test hook: make the n-th device allocation from now fail with out_of_memory (n = 1: the next one);
  /// 0 disables. Lets a test inject a failure at every allocation site.
  virtual void fail_allocation_after(int n) = 0;
};

/// The CUDA extension of `backend`, or nullptr when `backend` is not the loaded CUDA backend.
CudaExtension* cuda_extension(Backend& backend);

}  // namespace pixtral::ops
