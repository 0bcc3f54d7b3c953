// Rotary position embeddings, computed exactly as HF transformers does (float32 frequencies, cos
// and sin rounded to the model dtype, rotate_half pairing j with j + dim/2).
#pragma once

#include <ATen/ATen.h>

#include "arch/arch.h"

namespace graft {

// Inverse frequencies [dim/2] (float32) for a layer's RoPE. `sequence_length` matters only for the
// dynamic-NTK kind, which rescales when the sequence outgrows the original context.
at::Tensor rope_inverse_frequencies(const arch::RopeSpec& rope, int64_t sequence_length);

struct RotaryTable {
  at::Tensor cos, sin;  // [B, S, 1, dim] in the model dtype
};
RotaryTable rotary_table(const arch::RopeSpec& rope, const at::Tensor& position_ids, at::ScalarType dtype);

// x: [B, S, heads, head_dim]. Rotates the first rope.dim dims of each head (all of them for every
// supported family) and passes the rest through.
at::Tensor apply_rotary(const at::Tensor& x, const RotaryTable& table);

}  // namespace graft
