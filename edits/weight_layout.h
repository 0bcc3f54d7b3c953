// How a checkpoint lays out a weight relative to its logical nn.Linear orientation [out, in]: the
// one place that decides it (GPT-2's Conv1D stores [in, out]). Torch-free, so the patch format's
// reader (edits/patch_format.h) and the in-memory applier (edits/weight_update.h) share it.
#pragma once

#include <cstdint>
#include <vector>

#include "arch/arch.h"

namespace graft::edits {

// True when the checkpoint stores the transpose of the logical [out, in] matrix.
inline bool stored_transposed(arch::WeightLayout layout) { return layout == arch::WeightLayout::InOut; }

// The shape the checkpoint stores for a logical [out, in] shape.
inline std::vector<int64_t> stored_shape(const std::vector<int64_t>& logical, arch::WeightLayout layout) {
  if (stored_transposed(layout) && logical.size() == 2) return {logical[1], logical[0]};
  return logical;
}

}  // namespace graft::edits
