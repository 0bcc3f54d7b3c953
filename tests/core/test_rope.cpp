// RoPE's fused CPU path (core/rope.cpp) gives the very bits of the LibTorch form it replaces, for
// full and partial rotation; the LibTorch form is what runs under autograd, so requesting gradients
// selects it.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/rope.h"

namespace graft {
namespace {

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

arch::RopeSpec rope(int64_t dim, int64_t rotated_pairs) {
  arch::RopeSpec r;
  r.kind = arch::RopeKind::Default;
  r.theta = 10000.0;
  r.dim = dim;
  r.rotated_pairs = rotated_pairs;
  return r;
}

TEST(FusedRotary, GivesTheBitsOfTheLibTorchForm) {
  const at::Tensor positions = at::arange(3, 3 + 2 * 5, at::TensorOptions().dtype(at::kLong)).view({2, 5});
  uint64_t seed = 1;
  // (head size, rotated dims, rotated pairs): full; Gemma 4 proportional (zero frequencies past the
  // pairs); a head whose tail passes through unrotated.
  const std::vector<std::array<int64_t, 3>> cases = {{64, 64, 32}, {128, 128, 16}, {48, 32, 16}};
  for (const auto& [head_dim, dim, pairs] : cases) {
    const RotaryTable table = rotary_table(rope(dim, pairs), positions, at::kFloat);
    const at::Tensor x = randn({2, 5, 3, head_dim}, seed++);
    const at::Tensor fused = apply_rotary(x, table);
    const at::Tensor general = apply_rotary(x.clone().requires_grad_(), table).detach();
    ASSERT_EQ(fused.sizes(), x.sizes());
    EXPECT_TRUE(at::equal(fused, general)) << "head " << head_dim << " dims " << dim;
    EXPECT_FALSE(at::equal(fused, x));
  }
}

TEST(FusedRotary, ReadsAHeadViewOfAProjection) {
  const at::Tensor positions = at::arange(0, 4, at::TensorOptions().dtype(at::kLong)).view({1, 4});
  const RotaryTable table = rotary_table(rope(32, 16), positions, at::kFloat);
  const at::Tensor x = randn({1, 4, 2, 32}, 9).transpose(1, 2).contiguous().transpose(1, 2);  // strided heads
  EXPECT_TRUE(at::equal(apply_rotary(x, table), apply_rotary(x.clone().requires_grad_(), table).detach()));
}

}  // namespace
}  // namespace graft
