#include "edits/weight_update.h"

#include "core/model.h"

namespace graft::edits {

TemporaryUpdates::~TemporaryUpdates() {
  for (auto& [name, original] : originals_) model_.weight(name).copy_(original);
}

void TemporaryUpdates::add(const TensorUpdate& update) {
  at::Tensor& weight = model_.weight(update.tensor);
  if (!originals_.count(update.tensor)) originals_.emplace(update.tensor, weight.clone());
  at::Tensor delta = update.dense.defined() ? update.dense : at::matmul(update.left, update.right.t());
  if (model_.arch().mlp_down_projection(update.layer).layout == arch::WeightLayout::InOut) delta = delta.t();
  weight.add_(delta.to(weight.scalar_type()).to(weight.device()));
}

}  // namespace graft::edits
