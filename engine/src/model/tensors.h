// SPDX-License-Identifier: Apache-2.0
// TensorSet: backend tensors allocated together (at session creation or per request, never per token) and freed
// together.
#pragma once

#include <string_view>
#include <vector>

#include "ops/backend.h"

namespace pixtral {

class TensorSet {
 public:
  explicit TensorSet(ops::Backend& backend) : backend_(&backend) {}
  ~TensorSet() { release(); }
  TensorSet(const TensorSet&) = delete;
  TensorSet& operator=(const TensorSet&) = delete;
  TensorSet(TensorSet&& o) noexcept : backend_(o.backend_), owned_(std::move(o.owned_)) { o.owned_.clear(); }
  TensorSet& operator=(TensorSet&& o) noexcept {
    if (this != &o) {
      release();
      backend_ = o.backend_;
      owned_ = std::move(o.owned_);
      o.owned_.clear();
    }
    return *this;
  }

  /// Allocate into `out`; the set frees it later.
  Status alloc(ops::Tensor& out, std::int64_t rows, std::int64_t cols, DType dtype, std::string_view what) {
    auto r = backend_->alloc(rows, cols, dtype, what);
    if (!r.ok()) return r.status();
    out = r.value();
    owned_.push_back(out);
    return {};
  }
  void release() {
    for (auto& t : owned_) backend_->free(t);
    owned_.clear();
  }

 private:
  ops::Backend* backend_;
  std::vector<ops::Tensor> owned_;
};

}  // namespace pixtral
