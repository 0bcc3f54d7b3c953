#include "core/gemv.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cstring>

#include "core/simd.h"

namespace graft {
namespace {

using namespace simd;  // v16, load, store, reduce, dot

// Y[i, r] = sum_j X[i, j] W[r, j] for weight rows [r0, r1); W row-major with row stride ld, X [m, n]
// contiguous, Y [m, out] contiguous. Four weight rows at a time, each read once from memory and
// reused from cache for every row of X.
GRAFT_KERNEL void out_in_kernel(const float* __restrict w, int64_t ld, const float* __restrict x, int64_t m, int64_t n,
                                float* __restrict y, int64_t out, int64_t r0, int64_t r1) {
  const int64_t nv = n / 16 * 16;
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const float* w0 = w + r * ld;
    const float* w1 = w0 + ld;
    const float* w2 = w1 + ld;
    const float* w3 = w2 + ld;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * n;
      v16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t j = 0; j < nv; j += 16) {
        const v16 xv = load(xi + j);
        a0 += load(w0 + j) * xv;
        a1 += load(w1 + j) * xv;
        a2 += load(w2 + j) * xv;
        a3 += load(w3 + j) * xv;
      }
      float s0 = reduce(a0), s1 = reduce(a1), s2 = reduce(a2), s3 = reduce(a3);
      for (int64_t j = nv; j < n; ++j) {
        s0 += w0[j] * xi[j];
        s1 += w1[j] * xi[j];
        s2 += w2[j] * xi[j];
        s3 += w3[j] * xi[j];
      }
      float* yi = y + i * out + r;
      yi[0] = s0, yi[1] = s1, yi[2] = s2, yi[3] = s3;
    }
  }
  for (; r < r1; ++r) {
    const float* wr = w + r * ld;
    for (int64_t i = 0; i < m; ++i) y[i * out + r] = dot(wr, x + i * n, n);
  }
}

// Y[i, c] = sum_j X[i, j] W[j, c] for columns [c0, c1); W [n, out] row-major with row stride ld.
// Four weight rows at a time are added into the output rows (which stay in cache).
GRAFT_KERNEL void in_out_kernel(const float* __restrict w, int64_t ld, const float* __restrict x, int64_t m, int64_t n,
                                float* __restrict y, int64_t out, int64_t c0, int64_t c1) {
  const int64_t cv = c0 + (c1 - c0) / 16 * 16;
  for (int64_t i = 0; i < m; ++i) std::fill(y + i * out + c0, y + i * out + c1, 0.0f);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float* w0 = w + j * ld;
    const float* w1 = w0 + ld;
    const float* w2 = w1 + ld;
    const float* w3 = w2 + ld;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * n + j;
      const float x0 = xi[0], x1 = xi[1], x2 = xi[2], x3 = xi[3];
      float* yi = y + i * out;
      for (int64_t c = c0; c < cv; c += 16)
        store(yi + c,
              load(yi + c) + (((load(w0 + c) * x0 + load(w1 + c) * x1) + load(w2 + c) * x2) + load(w3 + c) * x3));
      for (int64_t c = cv; c < c1; ++c) yi[c] += ((w0[c] * x0 + w1[c] * x1) + w2[c] * x2) + w3[c] * x3;
    }
  }
  for (; j < n; ++j) {
    const float* wj = w + j * ld;
    for (int64_t i = 0; i < m; ++i) {
      const float xj = x[i * n + j];
      float* yi = y + i * out;
      for (int64_t c = c0; c < c1; ++c) yi[c] += wj[c] * xj;
    }
  }
}

}  // namespace

at::Tensor small_batch_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool in_out) {
  if (!x.defined() || !weight.defined() || x.dim() < 1 || weight.dim() != 2) return {};
  if (!x.device().is_cpu() || !weight.device().is_cpu() || x.scalar_type() != at::kFloat ||
      weight.scalar_type() != at::kFloat)
    return {};
  if (at::GradMode::is_enabled() &&
      (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad())))
    return {};
  const int64_t n = x.size(-1);
  const int64_t out = in_out ? weight.size(1) : weight.size(0);
  if ((in_out ? weight.size(0) : weight.size(1)) != n || n == 0 || out == 0) return {};
  if (weight.stride(1) != 1 || weight.stride(0) < weight.size(1)) return {};
  if (bias.defined() &&
      (bias.dim() != 1 || bias.size(0) != out || !bias.device().is_cpu() || bias.scalar_type() != at::kFloat))
    return {};
  const int64_t m = x.numel() / n;
  if (m < 1 || m > kSmallBatchRows) return {};

  const at::Tensor xc = x.contiguous();
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = out;
  at::Tensor y = at::empty(sizes, x.options());
  const float* wp = weight.data_ptr<float>();
  const float* xp = xc.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t ld = weight.stride(0);
  if (!in_out) {
    // Tasks of whole 4-row blocks, at least about 64K weight elements each.
    const int64_t blocks = (out + 3) / 4;
    const int64_t grain = std::max<int64_t>(1, (1 << 16) / (4 * n));
    at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
      out_in_kernel(wp, ld, xp, m, n, yp, out, 4 * b0, std::min(out, 4 * b1));
    });
  } else {
    // Column tiles of 512 (the output rows of a tile stay in L1), at least about 64K elements a task.
    constexpr int64_t tile = 512;
    const int64_t tiles = (out + tile - 1) / tile;
    const int64_t grain = std::max<int64_t>(1, (1 << 16) / (tile * n));
    at::parallel_for(0, tiles, grain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        in_out_kernel(wp, ld, xp, m, n, yp, out, t * tile, std::min(out, (t + 1) * tile));
    });
  }
  if (bias.defined()) y.add_(bias);
  return y;
}

}  // namespace graft
