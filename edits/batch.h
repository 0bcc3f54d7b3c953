// Token rows of different lengths as one right-padded batch. Right padding is what every batched
// pass of edits/ uses: a causal model computes nothing before a row's last real token from the
// padding after it, and the mask keeps the padding out of attention.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace graft {
class Model;
}

namespace graft::edits {

struct PaddedBatch {
  at::Tensor ids;   // [rows, longest] int64, padded with the model's pad token (0 without one)
  at::Tensor mask;  // [rows, longest] int64, 1 on real tokens
  int64_t length() const { return ids.size(1); }
};
PaddedBatch pad_right(const Model& model, const std::vector<std::vector<int64_t>>& rows);

}  // namespace graft::edits
