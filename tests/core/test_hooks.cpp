// Hook points: names, reading, replacing, validation, and that they cost nothing when unused.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/model.h"

namespace graft {
namespace {

const std::string kParity = std::string(GRAFT_TEST_DATA) + "/hf-parity/";

at::Tensor sample_ids(int64_t vocab, int64_t length = 12) {
  return at::arange(3, 3 + length, at::kLong).remainder(vocab).unsqueeze(0);
}

TEST(HookNames, ListEveryPointInForwardOrderAndOnlyWhatALayerHas) {
  const auto model = Model::load(kParity + "gemma4_e2b_like");
  const auto names = model->hook_names();
  EXPECT_EQ(names.front(), "hook_embed");
  EXPECT_EQ(names.back(), "hook_logits");
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  EXPECT_TRUE(has("blocks.0.attn.hook_k"));
  EXPECT_FALSE(has("blocks.5.attn.hook_k"));  // layers 4..7 read the K/V of layers 2 and 3
  EXPECT_TRUE(has("blocks.5.attn.hook_q"));
  EXPECT_TRUE(has("blocks.7.hook_ple_out"));
  EXPECT_TRUE(has("blocks.7.mlp.hook_post"));
  const auto llama = Model::load(kParity + "llama3");
  const auto llama_names = llama->hook_names();
  EXPECT_EQ(std::count_if(llama_names.begin(), llama_names.end(),
                          [](const std::string& n) { return n.find("ple") != std::string::npos; }),
            0);
}

TEST(HookNames, BadNamesAreClearErrors) {
  const auto model = Model::load(kParity + "gemma4_e2b_like");
  const auto& a = model->arch();
  EXPECT_EQ(parse_hook_name("blocks.3.mlp.hook_post", a).layer, 3);
  EXPECT_EQ(parse_hook_name("hook_logits", a).point, HookPoint::Logits);
  auto message = [&](const std::string& name) {
    try {
      parse_hook_name(name, a);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("blocks.3.mlp.hook_postt").find("unknown hook name \"blocks.3.mlp.hook_postt\""),
            std::string::npos);
  EXPECT_NE(message("blocks.99.hook_resid_pre").find("out of range"), std::string::npos);
  EXPECT_NE(message("blocks.6.attn.hook_v").find("KV-shared"), std::string::npos);
  EXPECT_NE(message("blocks.x.hook_resid_pre").find("unknown hook name"), std::string::npos);
  const auto llama = Model::load(kParity + "llama3");
  EXPECT_NE(std::string([&] {
              try {
                parse_hook_name("blocks.0.hook_ple_out", llama->arch());
              } catch (const InputError& e) {
                return std::string(e.what());
              }
              return std::string();
            }())
                .find("per-layer-embedding"),
            std::string::npos);
}

TEST(Hooks, EmptyHookSetChangesNothing) {
  const auto model = Model::load(kParity + "gemma2");
  const at::Tensor ids = sample_ids(model->spec().vocab_size);
  Hooks none(model->arch().num_layers());
  ForwardOptions options;
  options.hooks = &none;
  EXPECT_TRUE(at::equal(model->forward(ids), model->forward(ids, options)));
}

TEST(Hooks, ReplacementChangesTheOutputAndIdentityDoesNot) {
  const auto model = Model::load(kParity + "qwen3");
  const at::Tensor ids = sample_ids(model->spec().vocab_size);
  const at::Tensor clean = model->forward(ids);

  Hooks identity(model->arch().num_layers());
  identity.add({HookPoint::ResidPost, 1},
               [](const at::Tensor& t, const HookName&) { return std::optional<at::Tensor>(t.clone()); });
  ForwardOptions options;
  options.hooks = &identity;
  EXPECT_TRUE(at::allclose(model->forward(ids, options), clean));

  Hooks ablate(model->arch().num_layers());
  ablate.add({HookPoint::MlpOut, 1},
             [](const at::Tensor& t, const HookName&) { return std::optional<at::Tensor>(at::zeros_like(t)); });
  options.hooks = &ablate;
  EXPECT_GT((model->forward(ids, options) - clean).abs().max().item<double>(), 1e-3);
}

TEST(Hooks, ReplacingTheMlpKeyIsTheSameAsEditingItsInput) {
  // Adding delta to mlp.hook_post must change hook_mlp_out by down_proj(delta).
  const auto model = Model::load(kParity + "llama3");
  const at::Tensor ids = sample_ids(model->spec().vocab_size);
  const int layer = 1;
  std::map<std::string, at::Tensor> before, after;
  Hooks read(model->arch().num_layers());
  read.cache({HookPoint::MlpOut, layer}, &before);
  ForwardOptions options;
  options.hooks = &read;
  model->forward(ids, options);

  const int64_t width = model->arch().intermediate_size_for_layer(layer);
  const at::Tensor delta = at::randn({width}, at::kFloat) * 0.1;
  Hooks edit(model->arch().num_layers());
  edit.add({HookPoint::MlpPost, layer},
           [&](const at::Tensor& t, const HookName&) { return std::optional<at::Tensor>(t + delta); });
  edit.cache({HookPoint::MlpOut, layer}, &after);
  options.hooks = &edit;
  model->forward(ids, options);
  const at::Tensor expected = before.at("blocks.1.hook_mlp_out") +
                              at::linear(delta, model->layer_weights(layer)[arch::TensorRole::Down].weight);
  EXPECT_TRUE(at::allclose(after.at("blocks.1.hook_mlp_out"), expected, 1e-5, 1e-5));
}

TEST(Hooks, WrongShapeFromAHookNamesTheHook) {
  const auto model = Model::load(kParity + "llama3");
  Hooks bad(model->arch().num_layers());
  bad.add({HookPoint::ResidMid, 0},
          [](const at::Tensor& t, const HookName&) { return std::optional<at::Tensor>(t.narrow(-1, 0, 3)); });
  ForwardOptions options;
  options.hooks = &bad;
  try {
    model->forward(sample_ids(model->spec().vocab_size), options);
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.hook_resid_mid"), std::string::npos) << e.what();
  }
}

TEST(Hooks, PatternHookSeesProbabilitiesAndTheEagerPathMatchesTheFusedOne) {
  const auto model = Model::load(kParity + "gemma4_31b_like");
  const at::Tensor ids = sample_ids(model->spec().vocab_size, 16);
  std::map<std::string, at::Tensor> cache;
  Hooks hooks(model->arch().num_layers());
  for (int i = 0; i < model->arch().num_layers(); ++i) hooks.cache({HookPoint::AttnPattern, i}, &cache);
  ForwardOptions options;
  options.hooks = &hooks;
  const at::Tensor eager = model->forward(ids, options);
  EXPECT_LT((eager - model->forward(ids)).abs().max().item<double>(), 1e-5);
  const at::Tensor pattern = cache.at("blocks.0.attn.hook_pattern");  // a sliding layer, window 8
  EXPECT_EQ(pattern.sizes(), (at::IntArrayRef{1, 4, 16, 16}));
  EXPECT_TRUE(at::allclose(pattern.sum(-1), at::ones({1, 4, 16})));
  EXPECT_EQ(pattern.select(2, 15).narrow(-1, 0, 8).abs().max().item<float>(), 0.0f);  // outside the window
}

}  // namespace
}  // namespace graft
