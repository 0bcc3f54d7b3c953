#include "core/rope.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/simd.h"

namespace graft {
namespace {

at::Tensor default_frequencies(double theta, int64_t dim, int64_t pairs) {
  // HF: 1 / (theta ** (arange(0, 2 * pairs, 2).float() / dim)); the remaining dim/2 - pairs
  // frequencies (Gemma 4 proportional RoPE) are exactly 0, so those dims pass through unrotated.
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor exponents = at::arange(0, 2 * pairs, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                         static_cast<double>(dim);
  at::Tensor inv = 1.0 / at::pow(at::scalar_tensor(theta, f32), exponents);
  if (pairs < dim / 2) inv = at::cat({inv, at::zeros({dim / 2 - pairs}, f32)});
  return inv;
}

// Llama 3.1 frequency scaling: long wavelengths divided by `factor`, short ones kept, a smooth
// interpolation between (HF _compute_llama3_parameters).
at::Tensor llama3_frequencies(const arch::RopeSpec& rope) {
  at::Tensor inv = default_frequencies(rope.theta, rope.dim, rope.dim / 2);
  const double original = static_cast<double>(rope.original_max_position_embeddings);
  const double low_wavelen = original / rope.low_freq_factor;
  const double high_wavelen = original / rope.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv;
  at::Tensor scaled = at::where(wavelen > low_wavelen, inv / rope.factor, inv);
  at::Tensor smooth = (original / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
  at::Tensor medium = at::logical_not(wavelen < high_wavelen).logical_and(at::logical_not(wavelen > low_wavelen));
  return at::where(medium, smoothed, scaled);
}

// YaRN: interpolated (divided by factor) frequencies for long wavelengths, the original ones for
// short wavelengths, a linear ramp between the correction dims (HF _compute_yarn_parameters).
// attention_scaling, applied to cos and sin, comes precomputed from arch/.
at::Tensor yarn_frequencies(const arch::RopeSpec& rope) {
  const double dim = static_cast<double>(rope.dim);
  const double original = static_cast<double>(rope.original_max_position_embeddings);
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(original / (rotations * 2 * M_PI))) / (2 * std::log(rope.theta));
  };
  double low = correction_dim(rope.yarn_beta_fast), high = correction_dim(rope.yarn_beta_slow);
  if (rope.yarn_truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0), high = std::min(high, dim - 1);
  if (low == high) high += 0.001;  // HF: prevents a division by zero
  at::Tensor extrapolation = default_frequencies(rope.theta, rope.dim, rope.dim / 2);
  at::Tensor interpolation = extrapolation / rope.factor;
  at::Tensor ramp =
      ((at::arange(rope.dim / 2, at::TensorOptions().dtype(at::kFloat)) - low) / (high - low)).clamp(0, 1);
  at::Tensor keep = 1 - ramp;  // weight of the original (extrapolated) frequency
  return interpolation * (1 - keep) + extrapolation * keep;
}

}  // namespace

at::Tensor rope_inverse_frequencies(const arch::RopeSpec& rope, int64_t sequence_length) {
  switch (rope.kind) {
    case arch::RopeKind::Default: return default_frequencies(rope.theta, rope.dim, rope.rotated_pairs);
    case arch::RopeKind::Linear: return default_frequencies(rope.theta, rope.dim, rope.rotated_pairs) / rope.factor;
    case arch::RopeKind::Proportional:
      return default_frequencies(rope.theta, rope.dim, rope.rotated_pairs) / rope.factor;
    case arch::RopeKind::Llama3: return llama3_frequencies(rope);
    case arch::RopeKind::Dynamic: {
      // Dynamic NTK: past the original context the base grows with the sequence (HF dynamic_rope_update).
      const double original = static_cast<double>(rope.original_max_position_embeddings);
      double theta = rope.theta;
      if (original > 0 && static_cast<double>(sequence_length) > original) {
        const double d = static_cast<double>(rope.dim);
        theta = rope.theta * std::pow(rope.factor * sequence_length / original - (rope.factor - 1), d / (d - 2));
      }
      return default_frequencies(theta, rope.dim, rope.rotated_pairs);
    }
    case arch::RopeKind::Yarn: return yarn_frequencies(rope);
    case arch::RopeKind::None: break;
  }
  throw Error("rope_inverse_frequencies called for a layer without RoPE");
}

std::string rope_key(const arch::RopeSpec& r) {
  return std::to_string(static_cast<int>(r.kind)) + "/" + std::to_string(r.theta) + "/" + std::to_string(r.dim) + "/" +
         std::to_string(r.rotated_pairs) + "/" + std::to_string(r.factor) + "/" + std::to_string(r.low_freq_factor) +
         "/" + std::to_string(r.high_freq_factor) + "/" + std::to_string(r.original_max_position_embeddings) + "/" +
         std::to_string(r.attention_scaling) + "/" + std::to_string(r.yarn_beta_fast) + "/" +
         std::to_string(r.yarn_beta_slow) + "/" + std::to_string(r.yarn_truncate);
}

RotaryTable rotary_table(const arch::RopeSpec& rope, const at::Tensor& position_ids, at::ScalarType dtype,
                         const at::Tensor& inverse_frequencies) {
  at::Tensor inv = inverse_frequencies;
  if (!inv.defined()) {
    const int64_t longest = position_ids.numel() ? position_ids.max().item<int64_t>() + 1 : 0;
    inv = rope_inverse_frequencies(rope, longest);
  }
  inv = inv.to(position_ids.device());
  // [B, S, 1] x [dim/2] -> [B, S, dim/2]: one multiply per element, exact as HF's K=1 matmul.
  at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv;
  at::Tensor angles = at::cat({freqs, freqs}, -1).unsqueeze(2);
  at::Tensor cos = angles.cos(), sin = angles.sin();
  if (rope.attention_scaling != 1.0) cos = cos * rope.attention_scaling, sin = sin * rope.attention_scaling;
  return {cos.to(dtype), sin.to(dtype)};
}

namespace {

// out = x * cos + rotate_half(x) * sin over the first `dim` of each head's D values, the rest copied:
// the same products and sums, in the same order, as the LibTorch form below (this file is compiled
// without floating-point contraction, so no product is fused into an add). rows = B * S, each with
// `heads` heads; cos/sin hold one row of `dim` per (b, s).
GRAFT_KERNEL void rotate_rows(const float* __restrict x, const float* __restrict cos, const float* __restrict sin,
                              int64_t rows, int64_t heads, int64_t head_dim, int64_t dim, float* __restrict out) {
  const int64_t half = dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos + r * dim;
    const float* s = sin + r * dim;
    for (int64_t h = 0; h < heads; ++h) {
      const float* xh = x + (r * heads + h) * head_dim;
      float* oh = out + (r * heads + h) * head_dim;
      for (int64_t j = 0; j < half; ++j) oh[j] = xh[j] * c[j] + (-xh[j + half]) * s[j];
      for (int64_t j = half; j < dim; ++j) oh[j] = xh[j] * c[j] + xh[j - half] * s[j];
      for (int64_t j = dim; j < head_dim; ++j) oh[j] = xh[j];
    }
  }
}

// The kernel above for float32 on the CPU without gradients, when the table has one row per (b, s);
// undefined otherwise. A decoding step applies RoPE to q and k of every layer, and the LibTorch form
// costs eight dispatches each.
at::Tensor fused_rotary(const at::Tensor& x, const RotaryTable& table) {
  const at::Tensor &cos = table.cos, &sin = table.sin;
  for (const at::Tensor* t : {&x, &cos, &sin})
    if (!t->device().is_cpu() || t->scalar_type() != at::kFloat) return {};
  if (at::GradMode::is_enabled() && x.requires_grad()) return {};
  if (x.dim() != 4 || cos.dim() != 4 || cos.sizes() != sin.sizes()) return {};
  const int64_t batch = x.size(0), seq = x.size(1), dim = cos.size(3);
  if (cos.size(0) != batch || cos.size(1) != seq || cos.size(2) != 1 || dim % 2 != 0 || dim > x.size(3)) return {};
  if (x.numel() == 0) return {};
  const at::Tensor xc = x.contiguous(), cc = cos.contiguous(), sc = sin.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t heads = x.size(2), head_dim = x.size(3);
  const float *xp = xc.data_ptr<float>(), *cp = cc.data_ptr<float>(), *sp = sc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  // Tasks of whole (b, s) rows, at least about 16K elements each (a decoding step stays on one thread).
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / (heads * head_dim));
  at::parallel_for(0, batch * seq, grain, [&](int64_t r0, int64_t r1) {
    const int64_t skip = r0 * heads * head_dim;
    rotate_rows(xp + skip, cp + r0 * dim, sp + r0 * dim, r1 - r0, heads, head_dim, dim, op + skip);
  });
  return out;
}

}  // namespace

at::Tensor apply_rotary(const at::Tensor& x, const RotaryTable& table) {
  if (at::Tensor out = fused_rotary(x, table); out.defined()) return out;
  const int64_t dim = table.cos.size(-1);
  const int64_t head_dim = x.size(-1);
  at::Tensor rotated = dim == head_dim ? x : x.narrow(-1, 0, dim);
  at::Tensor first = rotated.narrow(-1, 0, dim / 2), second = rotated.narrow(-1, dim / 2, dim / 2);
  at::Tensor out = rotated * table.cos + at::cat({-second, first}, -1) * table.sin;
  if (dim == head_dim) return out;
  return at::cat({out, x.narrow(-1, dim, head_dim - dim)}, -1);
}

}  // namespace graft
