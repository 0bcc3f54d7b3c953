// Attention for a few query rows (core/small_attention.h) against attention written out in float64,
// and the cases it leaves to LibTorch.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/small_attention.h"

namespace graft {
namespace {

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

// softmax(q k^T * scale [capped], masked) v in float64, K/V head h / groups for query head h.
at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed,
                     double scale, double cap) {
  const int64_t groups = q.size(1) / k.size(1);
  const at::Tensor keys = k.to(at::kDouble).repeat_interleave(groups, 1);
  const at::Tensor values = v.to(at::kDouble).repeat_interleave(groups, 1);
  at::Tensor scores = at::matmul(q.to(at::kDouble), keys.transpose(-1, -2)) * scale;
  if (cap != 0.0) scores = at::tanh(scores / cap) * cap;
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  return at::matmul(at::softmax(scores, -1), values);
}

// Each query row sees a causal prefix of its own, some rows a window; never nothing.
at::Tensor some_allowed(int64_t batch, int64_t rows, int64_t keys) {
  at::Tensor allowed = at::ones({batch, 1, rows, keys}, at::TensorOptions().dtype(at::kBool));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < rows; ++s) {
      const int64_t last = keys - rows + s;  // causal
      allowed[b][0][s].narrow(0, last + 1, keys - last - 1).fill_(false);
      if ((b + s) % 2 == 1 && last > 3) allowed[b][0][s].narrow(0, 0, last - 3).fill_(false);  // a window of 4
    }
  return allowed;
}

TEST(SmallQueryAttention, MatchesFloat64ForHeadsGroupsAndRows) {
  uint64_t seed = 1;
  for (int64_t kv_heads : {1, 2})
    for (int64_t groups : {1, 4})
      for (int64_t rows : {1, 3, 8})
        for (int64_t head_dim : {16, 40})
          for (double cap : {0.0, 2.0}) {
            const int64_t keys = 37, heads = kv_heads * groups;
            const at::Tensor q = randn({2, rows, heads, head_dim}, seed++).transpose(1, 2);  // as the forward passes it
            const at::Tensor k = randn({2, kv_heads, keys, head_dim}, seed++);
            const at::Tensor v = randn({2, kv_heads, keys, head_dim}, seed++);
            const at::Tensor allowed = some_allowed(2, rows, keys);
            const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
            const at::Tensor z = small_query_attention(q, k, v, allowed, scale, cap);
            ASSERT_TRUE(z.defined());
            ASSERT_EQ(z.sizes(), q.sizes());
            EXPECT_TRUE(z.transpose(1, 2).is_contiguous());  // the output projection reads it without a copy
            const double error =
                (z.to(at::kDouble) - reference(q, k, v, allowed, scale, cap)).abs().max().item<double>();
            EXPECT_LE(error, 1e-5) << "kv " << kv_heads << " groups " << groups << " rows " << rows << " cap " << cap;
          }
}

TEST(SmallQueryAttention, ReadsNarrowedCacheViews) {
  // A KV cache holds [B, H, capacity, D] and hands out the filled, windowed part.
  const at::Tensor cache_k = randn({1, 2, 64, 32}, 11), cache_v = randn({1, 2, 64, 32}, 12);
  const at::Tensor k = cache_k.narrow(2, 10, 20), v = cache_v.narrow(2, 10, 20);
  const at::Tensor q = randn({1, 1, 4, 32}, 13).transpose(1, 2);
  const at::Tensor allowed = at::ones({1, 1, 1, 20}, at::TensorOptions().dtype(at::kBool));
  const at::Tensor z = small_query_attention(q, k, v, allowed, 0.2, 0.0);
  ASSERT_TRUE(z.defined());
  EXPECT_LE((z.to(at::kDouble) - reference(q, k, v, allowed, 0.2, 0.0)).abs().max().item<double>(), 1e-5);
}

TEST(SmallQueryAttention, NanInNanOutAsLibTorch) {
  at::Tensor q = randn({1, 1, 2, 16}, 41);
  q[0][0][0][3] = std::numeric_limits<float>::quiet_NaN();  // query head 0 only
  const at::Tensor k = randn({1, 1, 5, 16}, 42), v = randn({1, 1, 5, 16}, 43);
  const at::Tensor allowed = at::ones({1, 1, 1, 5}, at::TensorOptions().dtype(at::kBool));
  const at::Tensor z = small_query_attention(q.transpose(1, 2), k, v, allowed, 0.25, 0.0);
  ASSERT_TRUE(z.defined());
  EXPECT_TRUE(z.select(1, 0).isnan().all().item<bool>());
  EXPECT_FALSE(z.select(1, 1).isnan().any().item<bool>());
}

TEST(SmallQueryAttention, IsTheSameForAnyThreadCount) {
  const at::Tensor q = randn({2, 1, 8, 64}, 21).transpose(1, 2);
  const at::Tensor k = randn({2, 2, 3000, 64}, 22), v = randn({2, 2, 3000, 64}, 23);
  const at::Tensor allowed = at::ones({2, 1, 1, 3000}, at::TensorOptions().dtype(at::kBool));
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor one = small_query_attention(q, k, v, allowed, 0.125, 0.0);
  at::set_num_threads(std::max(2, threads));
  const at::Tensor more = small_query_attention(q, k, v, allowed, 0.125, 0.0);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(one, more));
}

TEST(SmallQueryAttention, LeavesOtherCasesToLibTorch) {
  const at::Tensor k = randn({1, 1, 9, 16}, 31), v = randn({1, 1, 9, 16}, 32);
  const at::Tensor q = randn({1, 2, 1, 16}, 33);
  const at::Tensor allowed = at::ones({1, 1, 1, 9}, at::TensorOptions().dtype(at::kBool));
  EXPECT_TRUE(small_query_attention(q, k, v, allowed, 0.25, 0.0).defined());
  const at::Tensor many = randn({1, 2, 9, 16}, 34);  // 9 query rows: a prefill
  EXPECT_FALSE(small_query_attention(many, k, v, at::ones({1, 1, 9, 9}, at::kBool), 0.25, 0.0).defined());
  EXPECT_FALSE(small_query_attention(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16), allowed, 0.25, 0.0)
                   .defined());
  EXPECT_FALSE(small_query_attention(q.clone().requires_grad_(), k, v, allowed, 0.25, 0.0).defined());  // autograd
  EXPECT_FALSE(small_query_attention(q, k.transpose(2, 3), v, allowed, 0.25, 0.0).defined());           // rows strided
  EXPECT_FALSE(small_query_attention(randn({1, 3, 1, 16}, 35), randn({1, 2, 9, 16}, 36), randn({1, 2, 9, 16}, 37),
                                     allowed, 0.25, 0.0)
                   .defined());  // 3 query heads over 2 K/V heads
  EXPECT_FALSE(small_query_attention(q, k, v, allowed.to(at::kFloat), 0.25, 0.0).defined());  // an additive mask
}

}  // namespace
}  // namespace graft
