// Every fixture model's safetensors against expected_tensors(): each expected tensor is in the
// checkpoint with the expected shape, and each checkpoint tensor is either expected or one that
// known_unused_reason() explains. Also the checkpoint-prefix handling (GPT-2 saved without
// "transformer.", Gemma 3's legacy "language_model.model.") and the known-unused table.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "arch_test_util.h"
#include "core/io/safetensors.h"

namespace graft::arch::test {
namespace {

TEST(CheckpointTensors, FixtureSetIsComplete) {
  // 10 hf-parity models, 2 facts models, models/gemma4_facts: a missing directory is a test bug.
  EXPECT_EQ(fixture_model_dirs().size(), 13u);
}

class CheckpointTensors : public ::testing::TestWithParam<std::string> {};

TEST_P(CheckpointTensors, MatchExpectedTensors) {
  const std::string dir = GetParam();
  auto arch = Architecture::from_model_dir(dir);
  const io::Checkpoint checkpoint = io::Checkpoint::open(dir);
  const std::vector<std::string> names = checkpoint.names();
  // The fixtures are saved the way transformers saves each class: the config's own prefix.
  EXPECT_TRUE(arch->adopt_checkpoint_prefix(names));

  int64_t parameters = 0;
  std::set<std::string> expected;
  for (const TensorSpec& t : arch->expected_tensors()) {
    expected.insert(t.name);
    if (!checkpoint.contains(t.name)) {
      ADD_FAILURE() << "expected " << t.name << ", not in " << dir;
      continue;
    }
    EXPECT_EQ(checkpoint.get(t.name).shape, t.shape) << t.name;
    parameters += checkpoint.get(t.name).numel();
  }
  for (const std::string& name : names) {
    if (!expected.count(name)) {
      EXPECT_NE(arch->known_unused_reason(name), "") << dir << " holds " << name << ", which graft does not read";
    }
  }
  EXPECT_EQ(arch->parameter_count(), parameters);

  const ModelSpec& s = arch->spec();
  EXPECT_EQ(checkpoint.contains("lm_head.weight"), !s.tie_word_embeddings);
  // The tensor editors act on: every layer's MLP down projection.
  for (int i = 0; i < arch->num_layers(); ++i) EXPECT_TRUE(checkpoint.contains(arch->mlp_down_projection(i).weight));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CheckpointTensors, ::testing::ValuesIn(fixture_model_dirs()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return gtest_name(std::filesystem::path(info.param).filename().string());
                         });

// ---- Checkpoint prefixes -------------------------------------------------------------------------

TEST(CheckpointPrefix, Gpt2SavedWithoutTransformerPrefix) {
  auto arch = Architecture::from_model_dir(data_path("hf-parity/gpt2"));
  EXPECT_EQ(arch->spec().weight_prefix, "transformer.");
  // The original openai-community/gpt2 files come from GPT2Model: no "transformer." prefix.
  ASSERT_TRUE(arch->adopt_checkpoint_prefix({"wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", "h.0.attn.bias"}));
  EXPECT_EQ(arch->spec().weight_prefix, "");
  EXPECT_EQ(arch->spec().tensors.embed_tokens, "wte.weight");
  EXPECT_EQ(arch->spec().tensors.lm_head, "wte.weight");
  EXPECT_EQ(arch->layer(2).tensors[TensorRole::QKV].weight, "h.2.attn.c_attn.weight");
  EXPECT_EQ(arch->layer(2).tensors[TensorRole::QKV].layout, WeightLayout::InOut);
  for (const TensorSpec& t : arch->expected_tensors())
    EXPECT_EQ(t.name.find("transformer."), std::string::npos) << t.name;
  EXPECT_NE(arch->known_unused_reason("h.0.attn.bias"), "");
  // And back again.
  ASSERT_TRUE(arch->adopt_checkpoint_prefix({"transformer.wte.weight"}));
  EXPECT_EQ(arch->spec().tensors.embed_tokens, "transformer.wte.weight");
}

TEST(CheckpointPrefix, Gemma3LegacyLanguageModelLayout) {
  nlohmann::json config = read_json(data_path("hf-parity/gemma3/config.json"));
  nlohmann::json wrapper = {{"model_type", "gemma3"}, {"text_config", config}};
  auto arch = Architecture::from_json(wrapper, "wrapped gemma3");
  EXPECT_EQ(arch->spec().tensors.embed_tokens, "model.language_model.embed_tokens.weight");
  ASSERT_TRUE(arch->adopt_checkpoint_prefix({"language_model.model.embed_tokens.weight"}));
  EXPECT_EQ(arch->layer(1).tensors[TensorRole::QNorm].weight, "language_model.model.layers.1.self_attn.q_norm.weight");
}

TEST(CheckpointPrefix, UnknownLayoutChangesNothing) {
  auto arch = Architecture::from_model_dir(data_path("hf-parity/llama3"));
  EXPECT_FALSE(arch->adopt_checkpoint_prefix({"tok_embeddings.weight", "layers.0.attention.wq.weight"}));
  EXPECT_EQ(arch->spec().tensors.embed_tokens, "model.embed_tokens.weight");
}

// ---- Known-unused tensors ------------------------------------------------------------------------

TEST(KnownUnused, Gemma4SharedLayerKV) {
  auto arch = Architecture::from_config_file(data_path("configs/gemma-4-E2B-it.config.json"));
  const std::string p = "model.language_model.layers.";
  for (const char* t : {"self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.k_norm.weight"}) {
    EXPECT_NE(arch->known_unused_reason(p + "15." + t), "") << t;  // layer 15 reads layer 13's K/V
    EXPECT_EQ(arch->known_unused_reason(p + "14." + t), "") << t;  // layer 14 computes its own
  }
  EXPECT_EQ(arch->known_unused_reason(p + "15.self_attn.q_proj.weight"), "");
  EXPECT_EQ(arch->known_unused_reason(p + "99.self_attn.k_proj.weight"), "");
  EXPECT_EQ(arch->known_unused_reason("model.vision_tower.encoder.layers.0.mlp.up_proj.weight"), "");
  // Tied head: a stored copy of the LM head is harmless.
  EXPECT_NE(arch->known_unused_reason("lm_head.weight"), "");
}

TEST(KnownUnused, OldRotaryBuffersAndUntiedHead) {
  auto arch = Architecture::from_model_dir(data_path("hf-parity/llama3"));
  EXPECT_NE(arch->known_unused_reason("model.layers.1.self_attn.rotary_emb.inv_freq"), "");
  EXPECT_EQ(arch->known_unused_reason("lm_head.weight"), "");  // untied: it is an expected tensor
  EXPECT_EQ(arch->known_unused_reason("model.layers.1.self_attn.q_proj.weight"), "");
}

}  // namespace
}  // namespace graft::arch::test
