#include "core/rms_norm.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "core/simd.h"

namespace graft {
namespace {

using namespace simd;  // v16, load, store, dot

// Rows [r0, r1) of X [rows, n] into Y; scale is null (no weight) or n floats (weight + offset).
GRAFT_KERNEL void rms_norm_rows(const float* __restrict x, const float* __restrict scale, int64_t n, float eps,
                                float* __restrict y, int64_t r0, int64_t r1) {
  const int64_t nv = n / 16 * 16;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    const float factor = 1.0f / std::sqrt(dot(xr, xr, n) / static_cast<float>(n) + eps);
    if (scale) {
      for (int64_t j = 0; j < nv; j += 16) store(yr + j, load(xr + j) * factor * load(scale + j));
      for (int64_t j = nv; j < n; ++j) yr[j] = xr[j] * factor * scale[j];
    } else {
      for (int64_t j = 0; j < nv; j += 16) store(yr + j, load(xr + j) * factor);
      for (int64_t j = nv; j < n; ++j) yr[j] = xr[j] * factor;
    }
  }
}

}  // namespace

at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double weight_offset, double eps) {
  if (!x.defined() || x.dim() < 1 || !x.device().is_cpu() || x.scalar_type() != at::kFloat) return {};
  const int64_t n = x.size(-1);
  if (n == 0) return {};
  if (weight.defined() &&
      (weight.dim() != 1 || weight.size(0) != n || !weight.device().is_cpu() || weight.scalar_type() != at::kFloat))
    return {};
  if (at::GradMode::is_enabled() && (x.requires_grad() || (weight.defined() && weight.requires_grad()))) return {};

  at::Tensor scale;  // (weight + offset) in float32, as HF computes it before multiplying
  if (weight.defined()) scale = weight_offset != 0.0 ? weight + weight_offset : weight.contiguous();
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  const int64_t rows = x.numel() / n;
  const float* xp = xc.data_ptr<float>();
  const float* sp = scale.defined() ? scale.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const float eps_f = static_cast<float>(eps);
  // Tasks of whole rows, at least about 16K elements each (a decoding step's rows stay on one thread).
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / n);
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) { rms_norm_rows(xp, sp, n, eps_f, yp, r0, r1); });
  return y;
}

}  // namespace graft
