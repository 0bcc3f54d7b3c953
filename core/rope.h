// Rotary position embeddings, computed exactly as HF transformers does (float32 frequencies, cos
// and sin rounded to the model dtype, rotate_half pairing j with j + dim/2).
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "arch/arch.h"

namespace graft {

// Inverse frequencies [dim/2] (float32) for a layer's RoPE. `sequence_length` matters only for the
// dynamic-NTK kind, which rescales when the sequence outgrows the original context.
at::Tensor rope_inverse_frequencies(const arch::RopeSpec& rope, int64_t sequence_length);

// Names a RoPE by every parameter its frequencies depend on: layers with equal keys share tables.
std::string rope_key(const arch::RopeSpec& rope);

struct RotaryTable {
  at::Tensor cos, sin;  // [B, S, 1, dim] in the model dtype
};
// `inverse_frequencies`: rope_inverse_frequencies computed beforehand (Model keeps them from load),
// or undefined to compute them here.
RotaryTable rotary_table(const arch::RopeSpec& rope, const at::Tensor& position_ids, at::ScalarType dtype,
                         const at::Tensor& inverse_frequencies = {});

// x: [B, S, heads, head_dim]. Rotates the first rope.dim dims of each head (all of them for every
// supported family) and passes the rest through.
at::Tensor apply_rotary(const at::Tensor& x, const RotaryTable& table);

}  // namespace graft
