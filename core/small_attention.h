// Attention for a few query rows (decoding: one per sequence) on the CPU. LibTorch's fused CPU
// attention is built for long query blocks; for one query row it spends 6-8 us a call in set-up
// against well under a microsecond of arithmetic on a small model, which makes it the largest
// single cost of a decoding step there (see bench/RESULTS.md).
#pragma once

#include <ATen/ATen.h>

namespace graft {

// softmax(q k^T * scale [soft-capped] where allowed, else -inf) v with grouped K/V heads (query head
// h reads K/V head h / (Hq / Hkv), as LibTorch's enable_gqa does). q: [B, Hq, S, D], k and v:
// [B, Hkv, T, D] whose rows of D are contiguous (a KV cache's narrowed views qualify), allowed:
// [B, 1, S, T] bool, with at least one allowed key per query row. soft_cap 0: none. Returns
// [B, Hq, S, D] (a transposed view of a contiguous [B, S, Hq, D], the layout the output projection
// reads), or an undefined tensor when the kernel does not apply and the caller uses LibTorch: not on
// the CPU, not float32, more than kSmallBatchRows query rows, other layouts, or anything needing
// gradients. Scores and sums are float32, one fixed order whatever the thread count.
at::Tensor small_query_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& allowed, double scale, double soft_cap);

}  // namespace graft
