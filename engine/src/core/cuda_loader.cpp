// SPDX-License-Identifier: Apache-2.0
// ops::load_cuda_backend: find libpixtral_cuda.so at run time (dlopen) so one build runs on machines without an
// NVIDIA driver. Search order: $PIXTRAL_CUDA_LIBRARY (exactly that file, when set), the executable's folder,
// ../lib/quire/ beside it, then the default library search path. The library is never unloaded (the backend's
// code lives in it). Every failure says why: library not found (each place tried, with dlerror), stale library
// (ABI version), no driver / driver too old / no device (from the library's own checks).
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda/cuda_abi.h"
#include "cuda/cuda_ext.h"
#include "ops/backend.h"

namespace pixtral::ops {
namespace {

constexpr const char* kLibName = "libpixtral_cuda.so";

std::string exe_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string p(buf, std::size_t(n));
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? std::string() : p.substr(0, slash);
}

struct Loaded {
  void* handle = nullptr;
  std::string path;
  Status status;  // why loading failed (first attempt's result is kept)
};

Loaded open_library() {
  Loaded l;
  std::string tried;
  auto attempt = [&](const std::string& path) {
    dlerror();
    l.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (l.handle) {
      l.path = path;
      return true;
    }
    const char* e = dlerror();
    tried += "\n  " + path + ": " + (e ? e : "unknown error");
    return false;
  };
  if (const char* env = std::getenv("PIXTRAL_CUDA_LIBRARY"); env && *env) {
    if (!attempt(env))
      l.status = Status(ErrorCode::not_found, std::string("CUDA backend library not found (PIXTRAL_CUDA_LIBRARY):") +
                                                  tried);
    return l;
  }
  const std::string dir = exe_dir();
  if (!dir.empty() && (attempt(dir + "/" + kLibName) || attempt(dir + "/../lib/quire/" + kLibName))) return l;
  if (attempt(kLibName)) return l;
  l.status = Status(ErrorCode::not_found,
                    std::string("CUDA backend library ") + kLibName + " not found (this build may have no CUDA "
                    "backend; set PIXTRAL_CUDA_LIBRARY to its path); tried:" + tried);
  return l;
}

// A successful load is kept for the process lifetime; a failed one is retried on the next call (the user may
// have set PIXTRAL_CUDA_LIBRARY or installed the library meanwhile).
Loaded& library() {
  static Loaded l;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (!l.handle) l = open_library();
  return l;
}

template <class Fn>
Fn symbol(void* handle, const char* name) {
  return reinterpret_cast<Fn>(dlsym(handle, name));
}

}  // namespace

Result<std::unique_ptr<Backend>> load_cuda_backend(int device_index) {
  Loaded& l = library();
  if (!l.handle) return l.status;
  auto abi = symbol<PixtralCudaAbiFn>(l.handle, "pixtral_cuda_abi");
  auto create = symbol<PixtralCudaCreateFn>(l.handle, "pixtral_cuda_create");
  if (!abi || !create)
    return Status(ErrorCode::format, l.path + " is not a Quire CUDA backend (pixtral_cuda_abi/pixtral_cuda_create "
                                              "missing)");
  if (abi() != cuda::kCudaAbiVersion)
    return Status(ErrorCode::format, l.path + " was built for backend ABI " + std::to_string(abi()) +
                                         ", this program needs " + std::to_string(cuda::kCudaAbiVersion) +
                                         " (stale library: rebuild or reinstall it)");
  void* out = nullptr;
  char err[1024] = {0};
  const int code = create(device_index, &out, err, sizeof err);
  if (code != 0 || !out) {
    const ErrorCode ec = code > 0 && code <= int(ErrorCode::internal) ? ErrorCode(code) : ErrorCode::device;
    return Status(ec, std::string("CUDA backend unavailable: ") + err);
  }
  return std::unique_ptr<Backend>(static_cast<Backend*>(out));
}

CudaExtension* cuda_extension(Backend& backend) {
  Loaded& l = library();
  if (!l.handle) return nullptr;
  auto ext = symbol<PixtralCudaExtensionFn>(l.handle, "pixtral_cuda_extension");
  return ext ? static_cast<CudaExtension*>(ext(&backend)) : nullptr;
}

}  // namespace pixtral::ops
