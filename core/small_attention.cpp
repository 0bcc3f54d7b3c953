#include "core/small_attention.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/gemv.h"
#include "core/simd.h"

namespace graft {
namespace {

using namespace simd;  // v16, load, store, dot

// out += p * row over D values (inlined into the kernel's per-instruction-set copies).
__attribute__((always_inline)) inline void add_scaled(float* __restrict out, const float* __restrict row, float p,
                                                      int64_t n) {
  const int64_t nv = n / 16 * 16;
  for (int64_t j = 0; j < nv; j += 16) store(out + j, load(out + j) + load(row + j) * p);
  for (int64_t j = nv; j < n; ++j) out[j] += row[j] * p;
}

// One query row against T keys: scores (masked, capped), softmax, weighted sum of the values.
// `scores` is scratch of T floats.
GRAFT_KERNEL void attend_row(const float* __restrict q, const float* __restrict k, const float* __restrict v,
                             int64_t k_row, int64_t v_row, const bool* __restrict allowed, int64_t allowed_step,
                             int64_t keys, int64_t head_dim, float scale, float cap, float* __restrict scores,
                             float* __restrict out) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  float top = minus_inf;
  bool any = false;
  for (int64_t t = 0; t < keys; ++t) {
    float s = minus_inf;
    if (allowed[t * allowed_step]) {
      any = true;
      s = dot(q, k + t * k_row, head_dim) * scale;
      if (cap != 0.0f) s = std::tanh(s / cap) * cap;
      top = std::isnan(s) ? s : std::max(top, s);  // NaN in, NaN out (as LibTorch's softmax)
      if (std::isnan(top)) break;
    }
    scores[t] = s;
  }
  std::fill(out, out + head_dim, std::isnan(top) ? top : 0.0f);
  if (!any || std::isnan(top)) return;  // no key allowed: callers never ask (attention_allowed keeps one)
  float total = 0;
  for (int64_t t = 0; t < keys; ++t) {
    const float e = allowed[t * allowed_step] ? std::exp(scores[t] - top) : 0.0f;
    scores[t] = e;
    total += e;
  }
  const float inverse = 1.0f / total;
  for (int64_t t = 0; t < keys; ++t)
    if (allowed[t * allowed_step]) add_scaled(out, v + t * v_row, scores[t] * inverse, head_dim);
}

bool rows_contiguous(const at::Tensor& t) { return t.dim() == 4 && t.stride(3) == 1; }

}  // namespace

at::Tensor small_query_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& allowed, double scale, double soft_cap) {
  for (const at::Tensor* t : {&q, &k, &v})
    if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != at::kFloat || !rows_contiguous(*t)) return {};
  if (!allowed.defined() || !allowed.device().is_cpu() || allowed.scalar_type() != at::kBool || allowed.dim() != 4)
    return {};
  if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) return {};
  const int64_t B = q.size(0), Hq = q.size(1), S = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), T = k.size(2);
  if (S < 1 || S > kSmallBatchRows || Hkv < 1 || Hq % Hkv != 0) return {};
  if (k.size(0) != B || v.size(0) != B || v.size(1) != Hkv || v.size(2) != T || k.size(3) != D || v.size(3) != D)
    return {};
  if (allowed.size(0) != B || allowed.size(1) != 1 || allowed.size(2) != S || allowed.size(3) != T) return {};

  at::Tensor out = at::empty({B, S, Hq, D}, q.options());  // the layout the output projection reads
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const bool* ap = allowed.data_ptr<bool>();
  float* op = out.data_ptr<float>();
  const int64_t groups = Hq / Hkv;
  const float scale_f = static_cast<float>(scale), cap_f = static_cast<float>(soft_cap);
  // Tasks of whole (batch, query head) pairs, at least about 32K key and value elements each.
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, 2 * T * D * S));
  at::parallel_for(0, B * Hq, grain, [&](int64_t p0, int64_t p1) {
    std::vector<float> scores(static_cast<size_t>(T));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / Hq, h = p % Hq, kv = h / groups;
      const float* kh = kp + b * k.stride(0) + kv * k.stride(1);
      const float* vh = vp + b * v.stride(0) + kv * v.stride(1);
      for (int64_t s = 0; s < S; ++s) {
        attend_row(qp + b * q.stride(0) + h * q.stride(1) + s * q.stride(2), kh, vh, k.stride(2), v.stride(2),
                   ap + b * allowed.stride(0) + s * allowed.stride(2), allowed.stride(3), T, D, scale_f, cap_f,
                   scores.data(), op + ((b * S + s) * Hq + h) * D);
      }
    }
  });
  return out.transpose(1, 2);
}

}  // namespace graft
