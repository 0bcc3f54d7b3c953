// The in-memory weight update shared by PatchStack and TemporaryUpdates (see weight_update.h).
#include "edits/weight_update.h"

#include "core/error.h"
#include "core/io/detail.h"
#include "core/model.h"

namespace graft::edits {

at::Tensor logical_to_stored(const at::Tensor& logical, arch::WeightLayout layout) {
  return stored_transposed(layout) ? logical.t() : logical;
}

at::Tensor stored_to_logical(const at::Tensor& stored, arch::WeightLayout layout) {
  return logical_to_stored(stored, layout);  // a transpose is its own inverse
}

at::Tensor patch_factor(const at::Tensor& t) { return t.detach().to(at::kCPU, at::kFloat).contiguous(); }

at::Tensor logical_delta(const at::Tensor& left, const at::Tensor& right, const at::Tensor& dense) {
  if (dense.defined()) return patch_factor(dense).to(at::kDouble);
  return at::matmul(patch_factor(left).to(at::kDouble), patch_factor(right).to(at::kDouble).t());
}

at::Tensor logical_delta(const TensorUpdate& update) { return logical_delta(update.left, update.right, update.dense); }

at::Tensor updated_weight(const at::Tensor& weight, const at::Tensor& logical_dw, arch::WeightLayout layout) {
  const at::Tensor delta = logical_to_stored(logical_dw, layout).contiguous();
  if (delta.sizes() != weight.sizes())
    throw Error("an update of shape " + io::detail::shape_string(delta.sizes().vec()) +
                " (stored layout) does not fit a weight of shape " + io::detail::shape_string(weight.sizes().vec()));
  const at::ScalarType type = weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return (weight.to(type) + delta.to(weight.device(), type)).to(weight.scalar_type());
}

TemporaryUpdates::~TemporaryUpdates() {
  for (auto& [name, original] : originals_) model_.weight(name).copy_(original);
}

void TemporaryUpdates::add(const TensorUpdate& update) {
  at::Tensor& weight = model_.weight(update.tensor);
  const arch::WeightLayout layout = model_.arch().mlp_down_projection(update.layer).layout;
  const at::Tensor value = updated_weight(weight, logical_delta(update), layout);
  if (!originals_.count(update.tensor)) originals_.emplace(update.tensor, weight.clone());
  weight.copy_(value);
}

}  // namespace graft::edits
