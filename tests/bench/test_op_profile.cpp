// bench/op_profile: the operator times behind `graft bench --sections editors`, and the matrix
// products' floating-point operations that --profile prints against the GEMM reference.
#include "bench/op_profile.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <string>

namespace graft::bench {
namespace {

const OpTime* find(const std::vector<OpTime>& ops, const std::string& name) {
  for (const OpTime& op : ops)
    if (op.name == name) return &op;
  return nullptr;
}

TEST(OpProfile, CountsTwoMnkForEveryKindOfMatrixProduct) {
  const at::Tensor a = at::randn({3, 4}), b = at::randn({4, 5}), bias = at::randn({5});
  const at::Tensor ba = at::randn({2, 3, 4}), bb = at::randn({2, 4, 5}), bias3 = at::randn({2, 3, 5});
  const at::Tensor v = at::randn({4});
  OpProfile profile(/*count_matmul_flops=*/true);
  (void)at::mm(a, b);                // 2 * 3 * 4 * 5 = 120
  (void)at::addmm(bias, a, b);       // 120
  (void)at::bmm(ba, bb);             // 2 * 120 = 240
  (void)at::baddbmm(bias3, ba, bb);  // 240
  (void)at::mv(a, v);                // 2 * 3 * 4 = 24
  (void)at::dot(v, v);               // 2 * 4 = 8
  profile.stop();
  (void)at::mm(a, b);  // after stop: not counted
  EXPECT_DOUBLE_EQ(profile.matmul_flops(), 120 + 120 + 240 + 240 + 24 + 8);
  const std::vector<OpTime> ops = profile.by_self_time();
  ASSERT_NE(find(ops, "aten::mm"), nullptr);
  EXPECT_EQ(find(ops, "aten::mm")->calls, 1);
  EXPECT_DOUBLE_EQ(find(ops, "aten::mm")->flops, 120);
  EXPECT_GT(profile.matmul_seconds(), 0);
}

TEST(OpProfile, CountsTheProductsOfABackwardPass) {
  const at::Tensor a = at::randn({3, 4}).requires_grad_(true), b = at::randn({4, 5}).requires_grad_(true);
  OpProfile profile(/*count_matmul_flops=*/true);
  at::Tensor loss = at::mm(a, b).sum();
  torch::autograd::backward({loss});
  profile.stop();
  // Forward 120, and the backward's two products (grad a = g b^T, grad b = a^T g) 120 each.
  EXPECT_DOUBLE_EQ(profile.matmul_flops(), 360);
}

TEST(OpProfile, TimesWithoutCountingUnlessAsked) {
  const at::Tensor a = at::randn({8, 8});
  OpProfile profile;
  (void)at::mm(a, a);
  profile.stop();
  EXPECT_EQ(profile.matmul_flops(), 0);
  ASSERT_NE(find(profile.by_self_time(), "aten::mm"), nullptr);
}

TEST(OpProfile, OneAtATime) {
  OpProfile profile;
  EXPECT_ANY_THROW(OpProfile second);
}

}  // namespace
}  // namespace graft::bench
