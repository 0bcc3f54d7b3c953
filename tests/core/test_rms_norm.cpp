// The one-pass RMSNorm (core/rms_norm.h) against the norm written out in float64, and the cases it
// leaves to LibTorch.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/rms_norm.h"

namespace graft {
namespace {

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

at::Tensor reference(const at::Tensor& x, const at::Tensor& weight, double offset, double eps) {
  const at::Tensor xd = x.to(at::kDouble);
  at::Tensor y = xd * at::pow(xd.pow(2).mean(-1, /*keepdim=*/true) + eps, -0.5);
  return weight.defined() ? y * (weight.to(at::kDouble) + offset) : y;
}

double relative_error(const at::Tensor& y, const at::Tensor& ref) {
  return ((y.to(at::kDouble) - ref).abs() / (ref.abs() + 1e-30)).max().item<double>();
}

TEST(FusedRmsNorm, MatchesFloat64ForWidthsWeightsAndOffsets) {
  uint64_t seed = 1;
  for (int64_t width : {1, 15, 16, 33, 128, 1536})
    for (int64_t rows : {1, 3, 200})
      for (double offset : {0.0, 1.0}) {
        const at::Tensor x = randn({rows, width}, seed++) * 3.0, w = randn({width}, seed++);
        const at::Tensor y = fused_rms_norm(x, w, offset, 1e-6);
        ASSERT_TRUE(y.defined());
        ASSERT_EQ(y.sizes(), x.sizes());
        EXPECT_LE(relative_error(y, reference(x, w, offset, 1e-6)), 1e-6) << "width " << width << " rows " << rows;
        const at::Tensor bare = fused_rms_norm(x, {}, 0.0, 1e-6);  // no weight: only rescales
        EXPECT_LE(relative_error(bare, reference(x, {}, 0.0, 1e-6)), 1e-6) << "width " << width;
      }
}

TEST(FusedRmsNorm, EpsilonCountsAndStridedInputIsRead) {
  const at::Tensor tiny = at::full({1, 8}, 1e-4f);
  const at::Tensor y = fused_rms_norm(tiny, {}, 0.0, 1e-6);  // mean square 1e-8: eps dominates
  EXPECT_NEAR(y[0][0].item<double>(), 1e-4 / std::sqrt(1e-8 + 1e-6), 1e-7);
  const at::Tensor heads = randn({2, 5, 4, 32}, 3).transpose(1, 2);  // not contiguous
  const at::Tensor w = randn({32}, 4);
  EXPECT_LE(relative_error(fused_rms_norm(heads, w, 0.0, 1e-6), reference(heads, w, 0.0, 1e-6)), 1e-6);
}

TEST(FusedRmsNorm, IsTheSameForAnyThreadCount) {
  const at::Tensor x = randn({4096, 64}, 5), w = randn({64}, 6);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor one = fused_rms_norm(x, w, 1.0, 1e-6);
  at::set_num_threads(std::max(2, threads));
  const at::Tensor more = fused_rms_norm(x, w, 1.0, 1e-6);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(one, more));
}

TEST(FusedRmsNorm, LeavesOtherCasesToLibTorch) {
  const at::Tensor x = randn({2, 32}, 7), w = randn({32}, 8);
  EXPECT_FALSE(fused_rms_norm(x.to(at::kBFloat16), w.to(at::kBFloat16), 0.0, 1e-6).defined());
  EXPECT_FALSE(fused_rms_norm(x.to(at::kDouble), w.to(at::kDouble), 0.0, 1e-6).defined());
  EXPECT_FALSE(fused_rms_norm(x, randn({31}, 9), 0.0, 1e-6).defined());              // wrong width
  EXPECT_FALSE(fused_rms_norm(x, w.to(at::kBFloat16), 0.0, 1e-6).defined());         // weight dtype
  EXPECT_FALSE(fused_rms_norm(x.clone().requires_grad_(), w, 0.0, 1e-6).defined());  // autograd
  EXPECT_FALSE(fused_rms_norm(x, w.clone().requires_grad_(), 0.0, 1e-6).defined());
}

}  // namespace
}  // namespace graft
