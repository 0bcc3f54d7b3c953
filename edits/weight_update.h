// The one way graft changes a weight in memory. PatchStack (a patch applied to a loaded model) and
// TemporaryUpdates (an editor's updates while it edits, and `graft eval`'s while it scores) both go
// through updated_weight(), so an edit is measured on exactly the weights its patch produces, on
// low-precision weights too. On disk, apply_patches_to_directory sums in float64 from the base bytes
// instead (docs/patch-format.md), sharing the layout transform below.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>

#include "arch/arch.h"
#include "edits/patch.h"
#include "edits/weight_layout.h"

namespace graft {
class Model;
}

namespace graft::edits {

// A logical [out, in] matrix in the orientation the checkpoint stores (a transposed view for InOut),
// and a stored weight in its logical orientation: the same transpose, named for each direction.
at::Tensor logical_to_stored(const at::Tensor& logical, arch::WeightLayout layout);
at::Tensor stored_to_logical(const at::Tensor& stored, arch::WeightLayout layout);

// An update's factor as a patch body holds it: float32, contiguous, on the CPU (a view of `t` when
// it already is one). dW formed from it below is then the same whether it comes from an editor's
// TensorUpdate or from the patch made of it.
at::Tensor patch_factor(const at::Tensor& t);

// dW = left @ right^T, or the dense dW: logical [out, in], float64, on the CPU, from the factors
// as patch_factor() rounds them. Exact at rank 1 (a product of two float32 values is a float64).
at::Tensor logical_delta(const at::Tensor& left, const at::Tensor& right, const at::Tensor& dense);
at::Tensor logical_delta(const TensorUpdate& update);

// The new value of `weight` (stored dtype, layout and device) after adding a logical float64 dW:
// float64 for float64 weights; otherwise dW is cast to float32 and added to the weight in float32,
// and the sum is cast to the stored dtype last (one rounding of dW, one of the sum, one to a
// low-precision dtype). Error when dW in the stored layout does not have the weight's shape.
at::Tensor updated_weight(const at::Tensor& weight, const at::Tensor& logical_dw, arch::WeightLayout layout);

// Updates applied to a model's weights for the duration of an edit (so later steps see earlier
// ones), undone exactly when it goes out of scope, error or not: the first time a tensor is
// touched its bytes are copied, and the copies are written back at the end.
class TemporaryUpdates {
 public:
  explicit TemporaryUpdates(Model& model) : model_(model) {}
  ~TemporaryUpdates();
  TemporaryUpdates(const TemporaryUpdates&) = delete;
  TemporaryUpdates& operator=(const TemporaryUpdates&) = delete;
  // Adds dW = left @ right^T (logical [out, in]) to the tensor, in the layout the checkpoint stores,
  // exactly as PatchStack would add the patch made of `update`.
  void add(const TensorUpdate& update);

 private:
  Model& model_;
  std::map<std::string, at::Tensor> originals_;
};

}  // namespace graft::edits
