// SPDX-License-Identifier: Apache-2.0
// CudaBackend::inject_device_fault (test hook, cuda_ext.h): a kernel that executes a trap instruction. The
// context is then in the sticky error state that a GPU reset, an Xid fault or a device falling off the bus leave
// behind: every later runtime call returns an error, which the backend reports as ErrorCode::device — the test
// checks that the engine turns it into an error promptly and never waits forever.
#include "cuda/cuda_backend.h"

namespace pixtral::cuda {
namespace {

__global__ void trap_kernel() { __trap(); }

}  // namespace

Status CudaBackend::inject_device_fault() {
  trap_kernel<<<1, 1, 0, stream_>>>();
  PIXTRAL_CUDA_LAUNCH_CHECK("trap_kernel");
  return {};
}

}  // namespace pixtral::cuda
