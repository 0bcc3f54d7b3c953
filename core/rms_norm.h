// RMSNorm of float32 rows on the CPU in one pass. A small model's decoding step is bound by how
// many LibTorch operations it dispatches, not by arithmetic: the composite form (square, mean, add,
// power, multiply, multiply) costs six dispatches and five temporaries per norm, and Gemma 4 runs
// eight norms a layer. This kernel does the same arithmetic in one.
#pragma once

#include <ATen/ATen.h>

namespace graft {

// y = x * (mean(x^2) + eps)^(-1/2) * (weight + weight_offset) over the last dimension, in the
// order HuggingFace writes it: each element scaled by the row's factor, then by the weight (a norm
// without weight only rescales). Sums of squares are float32 like LibTorch's; only their summation
// order differs. Returns an undefined tensor when the kernel does not apply, and the caller uses
// LibTorch: not on the CPU, not float32, a weight that is not a float32 vector of the row's width,
// or anything needing gradients (the editors optimise through the forward pass).
at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double weight_offset, double eps);

}  // namespace graft
