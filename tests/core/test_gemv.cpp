// The decode-sized matrix products (core/gemv.h) against a float64 reference, and the cases they
// leave to LibTorch.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/gemv.h"

namespace graft {
namespace {

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

// max |y - reference| over the largest |reference|-scale term: sum_j |x_j w_j|.
double scaled_error(const at::Tensor& y, const at::Tensor& x, const at::Tensor& w, bool in_out) {
  const at::Tensor xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  const at::Tensor reference = in_out ? at::matmul(xd, wd) : at::matmul(xd, wd.t());
  const at::Tensor scale = in_out ? at::matmul(xd.abs(), wd.abs()) : at::matmul(xd.abs(), wd.abs().t());
  return ((y.to(at::kDouble) - reference).abs() / scale).max().item<double>();
}

TEST(SmallBatchLinear, MatchesFloat64ForEveryShapeAndLayout) {
  uint64_t seed = 1;
  for (bool in_out : {false, true})
    for (int64_t in : {1, 5, 16, 37, 768})
      for (int64_t out : {1, 3, 4, 17, 513, 1030})
        for (int64_t rows : {1, 2, 8}) {
          const at::Tensor w = in_out ? randn({in, out}, seed++) : randn({out, in}, seed++);
          const at::Tensor x = randn({rows, 1, in}, seed++);
          const at::Tensor y = small_batch_linear(x, w, {}, in_out);
          ASSERT_TRUE(y.defined());
          ASSERT_EQ(y.sizes(), (at::IntArrayRef{rows, 1, out}));
          EXPECT_LE(scaled_error(y, x, w, in_out), 1e-6)
              << "in " << in << " out " << out << " rows " << rows << " in_out " << in_out;
        }
}

TEST(SmallBatchLinear, AddsBiasAndReadsStridedRows) {
  const at::Tensor big = randn({300, 200}, 7);
  const at::Tensor w = big.narrow(1, 10, 150);  // rows of 150 with stride 200
  const at::Tensor bias = randn({300}, 8), x = randn({3, 150}, 9);
  const at::Tensor y = small_batch_linear(x, w, bias);
  ASSERT_TRUE(y.defined());
  EXPECT_TRUE(at::allclose(y, at::linear(x, w, bias), 1e-5, 1e-5));
  const at::Tensor w_io = randn({150, 400}, 10).narrow(1, 7, 300);  // [in, out], rows with stride 400
  const at::Tensor y_io = small_batch_linear(x, w_io, bias, /*in_out=*/true);
  ASSERT_TRUE(y_io.defined());
  EXPECT_TRUE(at::allclose(y_io, at::matmul(x, w_io) + bias, 1e-5, 1e-5));
}

TEST(SmallBatchLinear, IsTheSameForAnyThreadCount) {
  const at::Tensor w = randn({4099, 512}, 3), x = randn({2, 512}, 4);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor one = small_batch_linear(x, w, {});
  at::set_num_threads(std::max(2, threads));
  const at::Tensor more = small_batch_linear(x, w, {});
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(one, more));
}

TEST(SmallBatchLinear, LeavesOtherCasesToLibTorch) {
  const at::Tensor w = randn({64, 32}, 5);
  EXPECT_FALSE(small_batch_linear(randn({9, 32}, 6), w, {}).defined());  // more rows
  EXPECT_FALSE(small_batch_linear(randn({1, 32}, 6).to(at::kDouble), w.to(at::kDouble), {}).defined());
  EXPECT_FALSE(small_batch_linear(randn({1, 32}, 6).to(at::kBFloat16), w.to(at::kBFloat16), {}).defined());
  EXPECT_FALSE(small_batch_linear(randn({1, 32}, 6), w.t(), {}).defined());               // column-strided
  EXPECT_FALSE(small_batch_linear(randn({1, 31}, 6), w, {}).defined());                   // wrong width
  EXPECT_FALSE(small_batch_linear(randn({1, 32}, 6).requires_grad_(), w, {}).defined());  // autograd
  EXPECT_FALSE(small_batch_linear(randn({1, 32}, 6), w, randn({63}, 1)).defined());       // wrong bias
}

}  // namespace
}  // namespace graft
