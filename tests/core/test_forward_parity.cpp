// Parity with HuggingFace transformers 5.17 on every fixture model (tests/data/hf-parity): logits,
// every layer's residual stream, MLP keys and attention z, the final norm, greedy decoding with the
// KV cache, cached vs full logits, left-padded batches (prefill and decoding), and bfloat16 vs float32.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <iostream>
#include <map>

#include "core/error.h"
#include "core/generate.h"
#include "core/io/safetensors.h"
#include "core/model.h"
#include "core/tensor.h"

namespace graft {
namespace {

const std::string kParityDir = std::string(GRAFT_TEST_DATA) + "/hf-parity/";

struct Reference {
  explicit Reference(const std::string& model)
      : file(io::SafetensorsFile::open(kParityDir + model + "/reference.safetensors")) {}
  at::Tensor operator[](const std::string& name) const { return tensor_from_view(file.get(name)); }
  bool has(const std::string& name) const { return file.contains(name); }
  io::SafetensorsFile file;
};

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble).cpu() - b.to(at::kDouble).cpu()).abs().max().item<double>();
}

// Activations of a few units: an absolute 1e-4 scaled by the tensor's magnitude when it exceeds 1.
double tolerance_for(const at::Tensor& expected) { return 1e-4 * std::max(1.0, expected.abs().max().item<double>()); }

class Parity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = Model::load(kParityDir + GetParam());
    reference_ = std::make_unique<Reference>(GetParam());
  }
  std::shared_ptr<Model> model_;
  std::unique_ptr<Reference> reference_;
};

TEST_P(Parity, LogitsAndEveryLayerMatchTransformers) {
  const auto& ref = *reference_;
  const int layers = model_->arch().num_layers();
  Hooks hooks(layers);
  std::map<std::string, at::Tensor> cache;
  for (int i = 0; i < layers; ++i) {
    hooks.cache({HookPoint::ResidPre, i}, &cache);
    hooks.cache({HookPoint::ResidPost, i}, &cache);
    hooks.cache({HookPoint::MlpPost, i}, &cache);
    hooks.cache({HookPoint::AttnZ, i}, &cache);
  }
  hooks.cache({HookPoint::LnFinal, -1}, &cache);
  ForwardOptions options;
  options.hooks = &hooks;
  const at::Tensor logits = model_->forward(ref["input_ids"], options);

  const double logit_error = max_abs_diff(logits, ref["logits"]);
  std::cout << "[parity] " << GetParam() << ": max |logits - HF| = " << logit_error << std::endl;
  RecordProperty("max_logit_error", std::to_string(logit_error));
  EXPECT_LT(logit_error, 1e-4);

  auto expect_close = [&](const at::Tensor& ours, const std::string& theirs) {
    const at::Tensor expected = ref[theirs];
    ASSERT_EQ(ours.sizes(), expected.sizes()) << theirs;
    EXPECT_LT(max_abs_diff(ours, expected), tolerance_for(expected)) << GetParam() << " " << theirs;
  };
  for (int i = 0; i < layers; ++i) {
    const std::string n = std::to_string(i);
    expect_close(cache.at("blocks." + n + ".hook_resid_pre"), "resid_pre." + n);
    expect_close(cache.at("blocks." + n + ".hook_resid_post"), "resid_post." + n);
    // The editors' key: its width is this layer's true MLP width (double on Gemma 4 shared layers).
    const at::Tensor key = cache.at("blocks." + n + ".mlp.hook_post");
    EXPECT_EQ(key.size(-1), model_->arch().intermediate_size_for_layer(i));
    expect_close(key, "mlp_key." + n);
    const at::Tensor z = cache.at("blocks." + n + ".attn.hook_z");
    expect_close(z.flatten(2), "attn_z." + n);
  }
  expect_close(cache.at("ln_final.hook_normalized"), "final_norm");
}

TEST_P(Parity, GreedyDecodingWithCacheReproducesTransformers) {
  const at::Tensor expected = (*reference_)["greedy_ids"];
  const int64_t prompt = (*reference_)["input_ids"].size(1);
  GenerateOptions options;
  options.max_new_tokens = expected.size(1) - prompt;
  options.stop_tokens = std::vector<int64_t>{};  // HF's reference ran all steps
  const Generation out = generate(*model_, (*reference_)["input_ids"].narrow(0, 0, 1), options);
  EXPECT_TRUE(at::equal(out.ids.cpu(), expected)) << GetParam() << "\nours:   " << out.ids << "\ntheirs: " << expected;
}

TEST_P(Parity, CachedLogitsEqualFullSequenceLogits) {
  const at::Tensor ids = (*reference_)["greedy_ids"];
  const at::Tensor full = model_->forward(ids);
  const int64_t prefix = ids.size(1) / 2;
  KVCache cache(*model_, 1, 4);  // small on purpose: the cache must grow
  ForwardOptions options;
  options.cache = &cache;
  std::vector<at::Tensor> pieces{model_->forward(ids.narrow(1, 0, prefix), options)};
  for (int64_t t = prefix; t < ids.size(1); ++t) pieces.push_back(model_->forward(ids.narrow(1, t, 1), options));
  const double error = max_abs_diff(at::cat(pieces, 1), full);
  EXPECT_LT(error, 1e-4) << GetParam();

  // Chunks of three after a prefix: queries that each see a different stretch of a sliding window
  // (window 8 on the Gemma fixtures) over a cache whose oldest keys fall outside it.
  KVCache chunked(*model_, 1, ids.size(1));
  options.cache = &chunked;
  pieces = {model_->forward(ids.narrow(1, 0, 5), options)};
  for (int64_t t = 5; t < ids.size(1); t += 3)
    pieces.push_back(model_->forward(ids.narrow(1, t, std::min<int64_t>(3, ids.size(1) - t)), options));
  EXPECT_LT(max_abs_diff(at::cat(pieces, 1), full), 1e-4) << GetParam() << " (chunks of three)";
}

TEST_P(Parity, LeftPaddedBatchGivesEachRowItsOwnLogits) {
  const at::Tensor ids = (*reference_)["input_ids"];
  const int64_t length = ids.size(1), short_length = length - 7;
  const at::Tensor long_row = ids.narrow(0, 0, 1);
  const at::Tensor short_row = ids.narrow(0, 1, 1).narrow(1, 0, short_length);
  const int64_t pad = model_->spec().pad_token_id.value_or(0);

  at::Tensor batch = at::full({2, length}, pad, at::kLong);
  batch.narrow(0, 0, 1).copy_(long_row);
  batch.narrow(0, 1, 1).narrow(1, length - short_length, short_length).copy_(short_row);
  at::Tensor mask = at::ones({2, length}, at::kLong);
  mask.narrow(0, 1, 1).narrow(1, 0, length - short_length).zero_();

  ForwardOptions options;
  options.attention_mask = mask;
  const at::Tensor batched = model_->forward(batch, options);
  EXPECT_LT(max_abs_diff(batched.select(0, 0), model_->forward(long_row).select(0, 0)), 1e-4) << GetParam();
  const at::Tensor short_alone = model_->forward(short_row).select(0, 0);
  EXPECT_LT(max_abs_diff(batched.select(0, 1).narrow(0, length - short_length, short_length), short_alone), 1e-4)
      << GetParam();
}

// Short prompts and decoding steps (at most 8 query rows) take the CPU's small-row paths: the mask
// written out, the fused attention. A left-padded pair is prefilled (its padding queries see
// nothing but themselves) and decoded five steps; each row must match the row run alone.
TEST_P(Parity, LeftPaddedDecodingGivesEachRowItsOwnLogits) {
  const at::Tensor ids = (*reference_)["greedy_ids"];
  const int64_t length = 6, short_length = 3, steps = 5;
  const int64_t pad = model_->spec().pad_token_id.value_or(0);
  const at::Tensor long_row = ids.narrow(0, 0, 1).narrow(1, 0, length);
  const at::Tensor short_row = ids.narrow(0, 0, 1).narrow(1, 2, short_length);
  const at::Tensor next = ids.narrow(0, 0, 1).narrow(1, length, steps);  // the tokens fed to both rows

  at::Tensor batch = at::full({2, length}, pad, at::kLong);
  batch.narrow(0, 0, 1).copy_(long_row);
  batch.narrow(0, 1, 1).narrow(1, length - short_length, short_length).copy_(short_row);
  at::Tensor mask = at::ones({2, length}, at::kLong);
  mask.narrow(0, 1, 1).narrow(1, 0, length - short_length).zero_();

  auto run = [&](const at::Tensor& prompt, const at::Tensor& prompt_mask) {  // prefill, then one token a step
    KVCache cache(*model_, prompt.size(0), prompt.size(1) + steps);
    ForwardOptions options;
    options.cache = &cache;
    options.attention_mask = prompt_mask;
    std::vector<at::Tensor> pieces{model_->forward(prompt, options)};
    options.attention_mask = at::ones({prompt.size(0), 1}, at::kLong);
    for (int64_t t = 0; t < steps; ++t)
      pieces.push_back(model_->forward(next.narrow(1, t, 1).expand({prompt.size(0), 1}), options));
    return at::cat(pieces, 1);
  };
  const at::Tensor batched = run(batch, mask);
  const at::Tensor long_alone = run(long_row, at::ones({1, length}, at::kLong));
  const at::Tensor short_alone = run(short_row, at::ones({1, short_length}, at::kLong));
  EXPECT_LT(max_abs_diff(batched.select(0, 0), long_alone.select(0, 0)), 1e-4) << GetParam();
  EXPECT_LT(max_abs_diff(batched.select(0, 1).narrow(0, length - short_length, short_length + steps),
                         short_alone.select(0, 0)),
            1e-4)
      << GetParam();
  // And the decoding steps agree with one full forward over the same tokens.
  const at::Tensor full = model_->forward(at::cat({long_row, next}, 1));
  EXPECT_LT(max_abs_diff(long_alone, full), 1e-4) << GetParam();
}

TEST_P(Parity, BFloat16AgreesWithFloat32OnTheNextToken) {
  LoadOptions bf16;
  bf16.dtype = at::kBFloat16;
  const auto low = Model::load(kParityDir + GetParam(), bf16);
  ForwardOptions options;
  options.last_position_only = true;
  const at::Tensor ids = (*reference_)["input_ids"];
  const at::Tensor ours = low->forward(ids, options);
  EXPECT_EQ(ours.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(ours.argmax(-1), model_->forward(ids, options).argmax(-1))) << GetParam();
}

// The editors' passes: logits at chosen positions only, and passes resumed from a checkpoint.
TEST_P(Parity, LogitsAtChosenPositionsEqualTheFullLogits) {
  const at::Tensor ids = (*reference_)["input_ids"];
  const at::Tensor batch = at::cat({ids, ids.flip(1)}, 0);  // two rows, S positions each
  const int64_t S = batch.size(1);
  const at::Tensor full = model_->forward(batch).flatten(0, 1);
  const at::Tensor positions = at::tensor(std::vector<int64_t>{0, 3, S - 1, S + 2, 2 * S - 1}, at::kLong);
  ForwardOptions options;
  options.logit_positions = positions;
  const at::Tensor some = model_->forward(batch, options);
  ASSERT_EQ(some.sizes(), (std::vector<int64_t>{1, 5, full.size(1)})) << GetParam();
  EXPECT_LT(max_abs_diff(some[0], full.index_select(0, positions)), 1e-5) << GetParam();
  options.last_position_only = true;
  EXPECT_THROW(model_->forward(batch, options), InputError);
}

TEST_P(Parity, PassesResumedFromACheckpointEqualWholePasses) {
  const at::Tensor ids = (*reference_)["input_ids"];
  const int layers = model_->arch().num_layers();
  const int64_t H = model_->spec().hidden_size;
  for (int layer : {0, layers / 2, layers - 1}) {
    // An editor's hook: a vector added to the layer's MLP output at one position, and one that must
    // not run once the pass resumes above it.
    at::Tensor vector = at::zeros({H});
    int early_calls = 0;
    Hooks hooks(layers);
    hooks.add({HookPoint::MlpDown, layer},
              [&vector](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
                at::Tensor added = at::zeros_like(x);
                added.select(1, 2).add_(vector.to(x.scalar_type()));
                return x + added;
              });
    hooks.add({HookPoint::ResidPre, layer},
              [&early_calls](const at::Tensor&, const HookName&) -> std::optional<at::Tensor> {
                ++early_calls;
                return std::nullopt;
              });
    ForwardCheckpoint checkpoint;
    checkpoint.layer = layer;
    ForwardOptions resumed;
    resumed.hooks = &hooks;
    resumed.checkpoint = &checkpoint;
    ForwardOptions whole;
    whole.hooks = &hooks;
    const at::Tensor first = model_->forward(ids, resumed);  // runs whole, captures
    ASSERT_TRUE(checkpoint.captured());
    EXPECT_LT(max_abs_diff(first, model_->forward(ids, whole)), 1e-6) << GetParam() << " layer " << layer;
    early_calls = 0;

    at::AutoGradMode grad(true);
    vector = at::randn({H}, at::TensorOptions().dtype(at::kFloat)).requires_grad_(true);
    const at::Tensor from_checkpoint = model_->forward(ids, resumed);
    EXPECT_EQ(early_calls, 0) << GetParam() << ": a hook below the checkpoint ran";
    const at::Tensor expected = model_->forward(ids, whole);
    EXPECT_LT(max_abs_diff(from_checkpoint, expected), 1e-4 * std::max(1.0, expected.abs().max().item<double>()))
        << GetParam() << " layer " << layer;
    auto gradient = [&vector](const at::Tensor& logits) {
      vector.mutable_grad() = at::Tensor();
      logits.select(1, -1).to(at::kFloat).logsumexp(-1).sum().backward();
      return vector.grad().clone();
    };
    const at::Tensor g_resumed = gradient(from_checkpoint), g_whole = gradient(expected);
    EXPECT_LT(max_abs_diff(g_resumed, g_whole), 1e-4 * std::max(1.0, g_whole.abs().max().item<double>()))
        << GetParam() << " layer " << layer;
  }
}

TEST_P(Parity, ACheckpointRefusesAnotherInputOrACache) {
  const at::Tensor ids = (*reference_)["input_ids"];
  ForwardCheckpoint checkpoint;
  checkpoint.layer = 0;
  ForwardOptions options;
  options.checkpoint = &checkpoint;
  model_->forward(ids, options);
  EXPECT_THROW(model_->forward(ids.narrow(1, 0, ids.size(1) - 1), options), InputError);
  KVCache cache(*model_, 1, 8);
  options.cache = &cache;
  EXPECT_THROW(model_->forward(ids, options), InputError);
  options.cache = nullptr;
  checkpoint.layer = model_->arch().num_layers();
  EXPECT_THROW(model_->forward(ids, options), InputError);
}

std::vector<std::string> parity_models() {
  return {"llama3",
          "qwen2",
          "qwen3",
          "gemma2",
          "gemma3",
          "gemma4_e2b_like",
          "gemma4_e2b_like_multimodal_keys",
          "gemma4_31b_like",
          "gemma4_26b_moe_like",
          "gpt2"};
}

INSTANTIATE_TEST_SUITE_P(HfFixtures, Parity, ::testing::ValuesIn(parity_models()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace graft
