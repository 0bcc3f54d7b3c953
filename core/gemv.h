// Matrix products of a few rows (decoding: one row per sequence) against a float32 weight matrix on
// the CPU. Such a product reads the whole matrix for little arithmetic, so its speed is the speed
// at which the matrix is read. LibTorch's CPU path for it (MKL's sgemv / small-M sgemm) reads
// [out, in] matrices with in <= 2048 at 16-22 GB/s on a machine where a plain streaming kernel
// reaches 35-45 GB/s, and gets slower still with 2-8 rows (see bench/RESULTS.md). These kernels
// stream each weight row once and reuse it for every input row from cache.
#pragma once

#include <ATen/ATen.h>

namespace graft {

// At most this many rows of x take the kernels below (more rows: a matrix product proper).
constexpr int64_t kSmallBatchRows = 8;

// x @ weight^T + bias for a row-major weight [out, in] (at::linear's layout), or x @ weight + bias
// for weight [in, out] (GPT-2's Conv1D layout: `in_out`). Returns an undefined tensor when the
// kernels do not apply, and the caller falls back to LibTorch: not on the CPU, not float32, more
// than kSmallBatchRows rows, a weight whose rows are not contiguous, or anything needing gradients.
// Each output element is one fixed-order sum (the same for any thread count).
at::Tensor small_batch_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              bool in_out = false);

}  // namespace graft
