// Weight updates applied to a loaded model in memory.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>

#include "edits/patch.h"

namespace graft {
class Model;
}

namespace graft::edits {

// Updates applied to a model's weights for the duration of an edit (so later steps see earlier
// ones), undone exactly when it goes out of scope, error or not: the first time a tensor is
// touched its bytes are copied, and the copies are written back at the end.
class TemporaryUpdates {
 public:
  explicit TemporaryUpdates(Model& model) : model_(model) {}
  ~TemporaryUpdates();
  TemporaryUpdates(const TemporaryUpdates&) = delete;
  TemporaryUpdates& operator=(const TemporaryUpdates&) = delete;
  // Adds dW = left @ right^T (logical [out, in]) to the tensor, in the layout the checkpoint stores.
  void add(const TensorUpdate& update);

 private:
  Model& model_;
  std::map<std::string, at::Tensor> originals_;
};

}  // namespace graft::edits
