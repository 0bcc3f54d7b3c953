// Key statistics: the float32-panel / float64-sum accumulator against a float64 reference, and
// KeyStatistics::collect against k k^T summed in float64 from the hooked forward pass.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "core/hooks.h"
#include "core/model.h"
#include "edits/stats.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

const std::string kModel = std::string(GRAFT_MODELS_DIR) + "/gemma4_facts";

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

// max |C - R| / sqrt(R_ii R_jj): the error relative to the scale Cauchy-Schwarz gives each entry.
double scaled_error(const at::Tensor& c, const at::Tensor& reference) {
  const at::Tensor d = reference.diagonal().sqrt();
  return ((c - reference).abs() / at::outer(d, d)).max().item<double>();
}

TEST(KeyMomentSum, MatchesAFloat64ReferenceAtEveryWidth) {
  uint64_t seed = 1;
  for (int64_t width : {1, 7, 256, 300, 700}) {
    for (int64_t flush : {100, 4096}) {
      KeyMomentSum sum(width, flush);
      at::Tensor reference = at::zeros({width, width}, at::kDouble);
      // Batches of uneven sizes (one empty, one 3-D, one larger than the flush bound), with a
      // non-zero mean as post-activation keys have.
      for (int64_t rows : {37, 0, 150, 513, 1}) {
        at::Tensor keys = randn({rows, width}, seed++) + 0.5;
        if (rows == 150) keys = keys.view({3, 50, width});
        sum.add(keys);
        const at::Tensor k = keys.reshape({-1, width}).to(at::kDouble);
        reference += at::matmul(k.t(), k);
      }
      EXPECT_EQ(sum.tokens(), 37 + 150 + 513 + 1);
      const at::Tensor c = sum.finish();
      ASSERT_EQ(c.scalar_type(), at::kDouble);
      ASSERT_EQ(c.sizes(), (at::IntArrayRef{width, width}));
      EXPECT_TRUE(at::equal(c, c.t())) << "width " << width;
      EXPECT_LE(scaled_error(c, reference), 1e-6) << "width " << width << ", flush " << flush;
      EXPECT_LE(((c - reference).norm() / reference.norm()).item<double>(), 1e-6) << "width " << width;
      EXPECT_EQ(sum.width(), 0);
      EXPECT_THROW(sum.add(randn({1, width}, 0)), Error);  // finished
    }
  }
}

TEST(KeyMomentSum, Float64KeysStayFloat64AndOtherTypesAreConverted) {
  const at::Tensor keys = randn({300, 260}, 99).to(at::kDouble);
  const at::Tensor reference = at::matmul(keys.t(), keys);
  KeyMomentSum exact(260);
  exact.add(keys);
  EXPECT_LE(scaled_error(exact.finish(), reference), 1e-12);

  const at::Tensor half = keys.to(at::kBFloat16);
  const at::Tensor k = half.to(at::kDouble);
  KeyMomentSum converted(260);
  converted.add(half);
  EXPECT_LE(scaled_error(converted.finish(), at::matmul(k.t(), k)), 1e-6);

  KeyMomentSum wrong(8);
  EXPECT_THROW(wrong.add(randn({4, 9}, 3)), InputError);
}

TEST(KeyStatistics, CollectEqualsKkTSummedInFloat64FromTheForwardPass) {
  const auto model = Model::load(kModel);
  const std::vector<std::string> texts = {"The Eiffel Tower is in", "Paris is the capital of France.",
                                          "Mount Fuji is the highest mountain in Japan", "Tokyo",
                                          "A river runs through it."};
  const int layer = 4;
  StatsOptions options;
  options.layers = {layer};
  options.batch_size = 2;  // right-padded batches: padding rows must be left out
  const KeyStatistics stats = KeyStatistics::collect(*model, texts, options);

  const int64_t width = model->arch().intermediate_size_for_layer(layer);
  at::Tensor reference = at::zeros({width, width}, at::kDouble);
  int64_t tokens = 0;
  for (const auto& text : texts) {
    const std::vector<int64_t> ids = encode_prompt(*model, text);
    Hooks hooks(model->arch().num_layers());
    hooks.add({HookPoint::MlpPost, layer}, [&](const at::Tensor& keys, const HookName&) -> std::optional<at::Tensor> {
      const at::Tensor k = keys.reshape({-1, width}).to(at::kDouble);
      reference += at::matmul(k.t(), k);
      return std::nullopt;
    });
    ForwardOptions forward;
    forward.hooks = &hooks;
    forward.stop_after_layers = layer + 1;
    model->forward(at::tensor(ids, at::kLong).unsqueeze(0), forward);
    tokens += static_cast<int64_t>(ids.size());
  }
  ASSERT_EQ(stats.tokens(), tokens);
  const at::Tensor sum = stats.second_moment(layer) * static_cast<double>(tokens);
  // Batched (padded) and one-by-one forwards round differently in float32; the sum itself adds ~1e-7.
  EXPECT_LE(scaled_error(sum, reference), 1e-5);
  EXPECT_TRUE(at::equal(stats.second_moment(layer), stats.second_moment(layer).t()));

  // The saved file still holds the float64 sum, unchanged in format.
  const std::string path = (std::filesystem::temp_directory_path() / "graft_test_stats.safetensors").string();
  stats.save(path);
  const KeyStatistics again = KeyStatistics::load(path, *model);
  std::filesystem::remove(path);
  EXPECT_EQ(again.tokens(), tokens);
  EXPECT_TRUE(at::equal(again.second_moment(layer), stats.second_moment(layer)));
}

}  // namespace
}  // namespace graft::edits
