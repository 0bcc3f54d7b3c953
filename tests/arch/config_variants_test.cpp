// Hand-written config variants: the older spellings of the same model give the same table, and the
// HF defaults and derivations each family applies (checked against transformers 5.17).
#include <cmath>

#include "arch_test_util.h"

namespace graft::arch::test {
namespace {

using nlohmann::json;

json fixture_config(const std::string& name) { return read_json(data_path("hf-parity/" + name + "/config.json")); }

std::unique_ptr<Architecture> build(const json& config) { return Architecture::from_json(config, "variant"); }

// ---- Gemma 3: legacy keys ------------------------------------------------------------------------

// The hf-parity Gemma 3 model, spelled as pre-v5 configs spell it: rope_theta, rope_local_base_freq,
// rope_scaling and sliding_window_pattern instead of rope_parameters and layer_types.
const char* const kGemma3Legacy = R"({
  "model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6,
  "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 256,
  "query_pre_attn_scalar": 16, "sliding_window": 8, "max_position_embeddings": 512,
  "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
  "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window_pattern": 3})";

TEST(Gemma3Variants, LegacyKeysGiveTheV5Table) {
  auto legacy = from_text(kGemma3Legacy);
  auto v5 = build(fixture_config("gemma3"));
  expect_same_model(*legacy, *v5);

  for (int i = 0; i < 6; ++i) EXPECT_EQ(legacy->is_sliding(i), i != 2 && i != 5) << i;
  const RopeSpec& full = legacy->rope_for_layer(2);
  EXPECT_EQ(full.kind, RopeKind::Linear);
  EXPECT_EQ(full.factor, 8.0);
  EXPECT_EQ(full.theta, 1e6);
  EXPECT_EQ(full.rotated_pairs, 8);
  const RopeSpec& sliding = legacy->rope_for_layer(0);
  EXPECT_EQ(sliding.kind, RopeKind::Default);
  EXPECT_EQ(sliding.theta, 1e4);
  EXPECT_EQ(sliding.factor, 1.0);

  const ModelSpec& s = legacy->spec();
  EXPECT_EQ(s.norm_weight_offset, 1.0);
  EXPECT_EQ(s.final_logit_softcap, 0.0);
  EXPECT_DOUBLE_EQ(s.embed_scale, 8.0);
  EXPECT_EQ(legacy->attention_scale(0), 0.25);  // query_pre_attn_scalar 16 ** -0.5
  EXPECT_EQ(legacy->layer(0).attn_logit_softcap, 0.0);
  EXPECT_TRUE(legacy->layer(0).has_qk_norm);
  EXPECT_EQ(legacy->sliding_window(0), 8);
}

TEST(Gemma3Variants, DefaultRopeAndPattern) {
  json config = json::parse(kGemma3Legacy);
  for (const char* key : {"rope_theta", "rope_local_base_freq", "rope_scaling", "sliding_window_pattern"})
    config.erase(key);
  config["num_hidden_layers"] = 12;
  auto arch = build(config);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(arch->is_sliding(i), (i + 1) % 6 != 0) << i;
  EXPECT_EQ(arch->rope_for_layer(5).kind, RopeKind::Default);
  EXPECT_EQ(arch->rope_for_layer(5).theta, 1e6);
  EXPECT_EQ(arch->rope_for_layer(0).theta, 1e4);
}

TEST(Gemma3Variants, MultimodalWrapper) {
  json wrapper = {{"model_type", "gemma3"}, {"text_config", json::parse(kGemma3Legacy)}};
  wrapper["text_config"]["final_logit_softcapping"] = 30.0;
  auto arch = build(wrapper);
  EXPECT_EQ(arch->spec().model_type, "gemma3");
  EXPECT_EQ(arch->spec().weight_prefix, "model.language_model.");
  EXPECT_EQ(arch->spec().tensors.embed_tokens, "model.language_model.embed_tokens.weight");
  // Gemma3ForConditionalGeneration does not apply final_logit_softcapping; Gemma3ForCausalLM does.
  EXPECT_EQ(arch->spec().final_logit_softcap, 0.0);
  EXPECT_EQ(build(wrapper["text_config"])->spec().final_logit_softcap, 30.0);
}

// ---- Gemma 4: global_head_dim vs per_layer_config ------------------------------------------------

// Rewrites a 5.17 config (per_layer_config) into the pre-5.17 spelling (global_head_dim).
json with_global_head_dim(json config) {
  const json overrides = config.at("per_layer_config");
  config.erase("per_layer_config");
  const json& full_layer = overrides.begin().value();
  config["global_head_dim"] = full_layer.at("head_dim");
  if (full_layer.contains("num_key_value_heads"))
    config["num_global_key_value_heads"] = full_layer.at("num_key_value_heads");
  return config;
}

class Gemma4HeadSpellings : public ::testing::TestWithParam<std::string> {};

TEST_P(Gemma4HeadSpellings, GlobalHeadDimEqualsPerLayerConfig) {
  const json v5 = GetParam() == "gemma4_facts" ? read_json(std::string(GRAFT_MODELS_DIR) + "/gemma4_facts/config.json")
                                               : fixture_config(GetParam());
  auto from_per_layer = build(v5);
  auto from_global = build(with_global_head_dim(v5));
  expect_same_model(*from_per_layer, *from_global);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Gemma4HeadSpellings,
                         ::testing::Values("gemma4_e2b_like", "gemma4_31b_like", "gemma4_26b_moe_like",
                                           "gemma4_facts"));

TEST(Gemma4Variants, OfficialConfigInPerLayerConfigSpelling) {
  const json official = read_json(data_path("configs/gemma-4-31B-it.config.json"));
  json rewritten = official;
  json& text = rewritten["text_config"];
  text.erase("global_head_dim");
  text.erase("num_global_key_value_heads");
  text["per_layer_config"] = json::object();
  for (int i = 5; i < 60; i += 6) {  // zero-padded keys, as transformers writes them
    const std::string key = i < 10 ? "0" + std::to_string(i) : std::to_string(i);
    text["per_layer_config"][key] = {{"head_dim", 512}, {"num_key_value_heads", 4}};
  }
  expect_same_model(*build(official), *build(rewritten));
}

TEST(Gemma4Variants, HeadSizeDefaultsAndPrecedence) {
  json config = fixture_config("gemma4_e2b_like");
  config.erase("per_layer_config");
  // transformers 5.17: a missing global_head_dim means 512, not head_dim.
  auto arch = build(config);
  EXPECT_EQ(arch->head_dim_for_layer(3), 512);
  EXPECT_EQ(arch->head_dim_for_layer(0), 16);
  EXPECT_EQ(arch->rope_for_layer(3).rotated_pairs, 64);  // int(0.25 * 512 // 2)
  // A given per_layer_config wins; global_head_dim is then ignored.
  json both = fixture_config("gemma4_e2b_like");
  both["global_head_dim"] = 128;
  EXPECT_EQ(build(both)->head_dim_for_layer(3), 32);
  // num_global_key_value_heads applies only with attention_k_eq_v.
  config["global_head_dim"] = 32;
  config["num_global_key_value_heads"] = 1;
  config["num_key_value_heads"] = 2;
  EXPECT_EQ(build(config)->num_kv_heads_for_layer(3), 2);
}

TEST(Gemma4Variants, KvSharingAndDoubleWideMlp) {
  auto arch = build(fixture_config("gemma4_e2b_like"));  // 8 layers, full at 3 and 7, last 4 shared
  EXPECT_EQ(arch->kv_source(4), 2);
  EXPECT_EQ(arch->kv_source(7), 3);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(arch->intermediate_size_for_layer(i), i < 4 ? 96 : 192) << i;
}

TEST(Gemma4Variants, PerLayerInputSize) {
  json config = fixture_config("gemma4_e2b_like");
  config.erase("hidden_size_per_layer_input");  // missing: the class default, 256
  auto arch = build(config);
  EXPECT_EQ(arch->spec().per_layer_input_size, 256);
  const auto tensors = tensor_map(*arch);
  EXPECT_EQ(tensors.at("model.embed_tokens_per_layer.weight"), (std::vector<int64_t>{256, 8 * 256}));
  EXPECT_EQ(tensors.at("model.layers.0.per_layer_input_gate.weight"), (std::vector<int64_t>{256, 64}));
  EXPECT_TRUE(arch->layer(5).has_per_layer_input);

  for (const json& off : {json(0), json(nullptr)}) {  // 0 and null: no per-layer embeddings at all
    config["hidden_size_per_layer_input"] = off;
    auto without = build(config);
    EXPECT_FALSE(without->has_per_layer_embeddings());
    EXPECT_FALSE(without->layer(0).has_per_layer_input);
    for (const auto& [name, shape] : tensor_map(*without)) EXPECT_EQ(name.find("per_layer"), std::string::npos) << name;
  }
}

TEST(Gemma4Variants, LastLayerForcedFull) {
  json config = fixture_config("gemma4_31b_like");
  config["layer_types"] = json::array();
  for (int i = 0; i < 6; ++i) config["layer_types"].push_back("sliding_attention");
  config["per_layer_config"].erase("2");  // layer 2 is now sliding; only layer 5 keeps the full-layer head
  auto arch = build(config);
  EXPECT_FALSE(arch->is_sliding(5));
  EXPECT_EQ(arch->head_dim_for_layer(5), 32);  // per_layer_config still names layer 5
  EXPECT_FALSE(arch->has_v_proj(5));
}

TEST(Gemma4Variants, WrapperAndTextOnlyAgree) {
  const json wrapper = fixture_config("gemma4_e2b_like_multimodal_keys");
  auto multimodal = build(wrapper);
  auto text_only = build(wrapper.at("text_config"));
  ASSERT_EQ(multimodal->num_layers(), text_only->num_layers());
  for (int i = 0; i < multimodal->num_layers(); ++i) {
    EXPECT_EQ(describe_layer(multimodal->layer(i)), describe_layer(text_only->layer(i)));
  }
  EXPECT_EQ(multimodal->spec().weight_prefix, "model.language_model.");
  EXPECT_EQ(text_only->spec().weight_prefix, "model.");
  EXPECT_EQ(multimodal->parameter_count(), text_only->parameter_count());
}

// ---- Llama, Mistral ------------------------------------------------------------------------------

TEST(LlamaVariants, Llama3RopeScalingLegacySpelling) {
  const json v5 = fixture_config("llama3");
  json legacy = v5;
  legacy.erase("rope_parameters");
  legacy["rope_theta"] = 500000.0;
  legacy["rope_scaling"] = {{"type", "llama3"},
                            {"factor", 8.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 64}};
  expect_same_model(*build(v5), *build(legacy));

  auto legacy_arch = build(legacy);
  const RopeSpec& r = legacy_arch->rope_for_layer(1);
  EXPECT_EQ(r.kind, RopeKind::Llama3);
  EXPECT_EQ(r.theta, 500000.0);
  EXPECT_EQ(r.factor, 8.0);
  EXPECT_EQ(r.low_freq_factor, 1.0);
  EXPECT_EQ(r.high_freq_factor, 4.0);
  EXPECT_EQ(r.original_max_position_embeddings, 64);
  EXPECT_EQ(r.dim, 16);
  EXPECT_EQ(r.rotated_pairs, 8);

  // original_max_position_embeddings defaults to max_position_embeddings (HF standardize_rope_params).
  legacy["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_EQ(build(legacy)->rope_for_layer(0).original_max_position_embeddings, 512);
}

TEST(LlamaVariants, ModelFacts) {
  auto arch = build(fixture_config("llama3"));
  const ModelSpec& s = arch->spec();
  EXPECT_TRUE(s.norm_casts_before_weight);
  EXPECT_EQ(s.norm_weight_offset, 0.0);
  EXPECT_EQ(s.activation, Activation::SiLU);
  EXPECT_EQ(s.embed_scale, 1.0);
  EXPECT_FALSE(s.tie_word_embeddings);
  EXPECT_EQ(s.tensors.lm_head, "lm_head.weight");
  EXPECT_EQ(arch->attention_scale(0), 0.25);
  EXPECT_EQ(arch->layer(0).tensors[TensorRole::MlpPreNorm].weight, "model.layers.0.post_attention_layernorm.weight");
  EXPECT_TRUE(arch->layer(0).tensors[TensorRole::AttnPostNorm].weight.empty());

  // head_dim missing: hidden_size / num_attention_heads.
  json no_head_dim = fixture_config("llama3");
  no_head_dim.erase("head_dim");
  EXPECT_EQ(build(no_head_dim)->head_dim_for_layer(0), 16);
  // attention_bias puts a bias on q, k, v and o; mlp_bias on gate, up, down.
  no_head_dim["attention_bias"] = true;
  no_head_dim["mlp_bias"] = true;
  const auto tensors = tensor_map(*build(no_head_dim));
  EXPECT_EQ(tensors.at("model.layers.0.self_attn.o_proj.bias"), (std::vector<int64_t>{64}));
  EXPECT_EQ(tensors.at("model.layers.0.self_attn.k_proj.bias"), (std::vector<int64_t>{32}));
  EXPECT_EQ(tensors.at("model.layers.0.mlp.down_proj.bias"), (std::vector<int64_t>{64}));
}

// Without KV sharing, every layer's output at a position can be read by the next layer's attention.
TEST(LlamaVariants, LaterLayersReadEveryPosition) {
  auto arch = build(fixture_config("llama3"));
  const int last = arch->num_layers() - 1;
  for (int i = 0; i < last; ++i) EXPECT_TRUE(arch->later_layer_reads_positions(i)) << i;
  EXPECT_FALSE(arch->later_layer_reads_positions(last));
  expect_input_error([&] { arch->later_layer_reads_positions(last + 1); }, {"layer " + std::to_string(last + 1)});
}

TEST(LlamaVariants, PerLayerConfigOverridesAnyFamily) {
  json config = fixture_config("llama3");
  config["per_layer_config"] = {{"1", {{"intermediate_size", 32}}}};
  auto arch = build(config);
  EXPECT_EQ(arch->intermediate_size_for_layer(0), 176);
  EXPECT_EQ(arch->intermediate_size_for_layer(1), 32);
  EXPECT_EQ(tensor_map(*arch).at("model.layers.1.mlp.down_proj.weight"), (std::vector<int64_t>{64, 32}));
}

const char* const kMistral = R"({
  "model_type": "mistral", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 256, "sliding_window": 16})";

TEST(MistralVariants, SlidingWindowOnEveryLayer) {
  json config = json::parse(kMistral);
  auto arch = build(config);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(arch->is_sliding(i));
    EXPECT_EQ(arch->sliding_window(i), 16);
    EXPECT_EQ(arch->head_dim_for_layer(i), 8);
    EXPECT_EQ(arch->rope_for_layer(i).theta, 10000.0);
  }
  EXPECT_EQ(arch->spec().family, Family::Mistral);
  EXPECT_FALSE(arch->spec().tie_word_embeddings);

  config.erase("sliding_window");  // MistralConfig default: 4096
  EXPECT_EQ(build(config)->sliding_window(1), 4096);
  config["sliding_window"] = nullptr;  // null: full attention
  EXPECT_FALSE(build(config)->is_sliding(1));
  config.erase("num_key_value_heads");  // MistralConfig default: 8
  EXPECT_EQ(build(config)->num_kv_heads_for_layer(0), 8);
}

// ---- Qwen ----------------------------------------------------------------------------------------

const char* const kQwen2 = R"({
  "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 4,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
  "use_sliding_window": true, "sliding_window": 32, "max_window_layers": 2})";

TEST(QwenVariants, Qwen2UseSlidingWindow) {
  json config = json::parse(kQwen2);
  auto arch = build(config);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(arch->is_sliding(i), i >= 2) << i;  // layers at and above max_window_layers
    EXPECT_EQ(arch->sliding_window(i), i >= 2 ? 32 : 0) << i;
  }
  config["use_sliding_window"] = false;  // the window then does not exist
  auto off = build(config);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(off->is_sliding(i)) << i;
}

TEST(QwenVariants, Qwen2BiasesAndDefaults) {
  auto arch = build(json::parse(kQwen2));
  const LayerTensors& t = arch->layer(0).tensors;
  EXPECT_EQ(t[TensorRole::Q].bias, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(t[TensorRole::K].bias, "model.layers.0.self_attn.k_proj.bias");
  EXPECT_EQ(t[TensorRole::V].bias, "model.layers.0.self_attn.v_proj.bias");
  EXPECT_TRUE(t[TensorRole::O].bias.empty());
  EXPECT_FALSE(arch->spec().tie_word_embeddings);  // Qwen2Config: tie_word_embeddings = False
  EXPECT_TRUE(arch->spec().eos_token_ids.empty());
}

TEST(QwenVariants, YarnRopeScaling) {
  json config = json::parse(kQwen2);
  config["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  const RopeSpec r = build(config)->rope_for_layer(0);
  EXPECT_EQ(r.kind, RopeKind::Yarn);
  EXPECT_EQ(r.factor, 4.0);
  EXPECT_EQ(r.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(r.attention_scaling, 0.1 * std::log(4.0) + 1.0);
  EXPECT_EQ(r.yarn_beta_fast, 32.0);
  EXPECT_EQ(r.yarn_beta_slow, 1.0);
  EXPECT_TRUE(r.yarn_truncate);
}

TEST(QwenVariants, Qwen3HeadDimAndNorms) {
  json config = fixture_config("qwen3");
  auto arch = build(config);
  EXPECT_EQ(arch->head_dim_for_layer(0), 24);
  EXPECT_TRUE(arch->layer(0).has_qk_norm);
  EXPECT_EQ(tensor_map(*arch).at("model.layers.0.self_attn.q_norm.weight"), (std::vector<int64_t>{24}));
  config.erase("head_dim");  // Qwen3Config default: 128, not hidden_size / heads
  EXPECT_EQ(build(config)->head_dim_for_layer(0), 128);
}

// ---- Gemma 2 -------------------------------------------------------------------------------------

TEST(Gemma2Variants, DefaultsAndSoftcaps) {
  json config = fixture_config("gemma2");
  config.erase("layer_types");
  config.erase("attn_logit_softcapping");
  config.erase("final_logit_softcapping");
  auto arch = build(config);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(arch->is_sliding(i), i % 2 == 0) << i;  // even layers slide
  EXPECT_EQ(arch->layer(0).attn_logit_softcap, 50.0);
  EXPECT_EQ(arch->spec().final_logit_softcap, 30.0);
  EXPECT_DOUBLE_EQ(arch->attention_scale(0), std::pow(24.0, -0.5));  // query_pre_attn_scalar 24
  EXPECT_EQ(arch->spec().norm_weight_offset, 1.0);
  EXPECT_FALSE(arch->layer(0).has_qk_norm);

  config["attn_logit_softcapping"] = nullptr;  // null: none
  EXPECT_EQ(build(config)->layer(0).attn_logit_softcap, 0.0);
}

// ---- GPT-2 ---------------------------------------------------------------------------------------

TEST(Gpt2Variants, InnerWidthAndConv1DLayout) {
  json config = fixture_config("gpt2");
  ASSERT_TRUE(config.at("n_inner").is_null());
  auto arch = build(config);
  EXPECT_EQ(arch->intermediate_size_for_layer(0), 256);  // n_inner null: 4 * n_embd
  const auto tensors = tensor_map(*arch);
  EXPECT_EQ(tensors.at("transformer.h.0.attn.c_attn.weight"), (std::vector<int64_t>{64, 192}));  // [in, 3 * hidden]
  EXPECT_EQ(tensors.at("transformer.h.0.attn.c_attn.bias"), (std::vector<int64_t>{192}));
  EXPECT_EQ(tensors.at("transformer.h.0.mlp.c_fc.weight"), (std::vector<int64_t>{64, 256}));
  EXPECT_EQ(tensors.at("transformer.h.0.mlp.c_proj.weight"), (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(tensors.at("transformer.wpe.weight"), (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(tensors.count("lm_head.weight"), 0u);

  const ModelSpec& s = arch->spec();
  EXPECT_EQ(s.norm_kind, NormKind::LayerNorm);
  EXPECT_EQ(s.norm_eps, 1e-5);
  EXPECT_EQ(s.activation, Activation::GeluTanh);
  EXPECT_FALSE(s.gated_mlp);
  EXPECT_TRUE(s.learned_positions);
  EXPECT_EQ(s.tensors.lm_head, "transformer.wte.weight");
  EXPECT_EQ(arch->rope_for_layer(0).kind, RopeKind::None);
  EXPECT_EQ(arch->attention_scale(0), 0.25);
  EXPECT_EQ(arch->mlp_down_projection(0).layout, WeightLayout::InOut);
  EXPECT_TRUE(arch->layer(0).tensors[TensorRole::Gate].weight.empty());

  config["n_inner"] = 100;
  EXPECT_EQ(tensor_map(*build(config)).at("transformer.h.2.mlp.c_fc.weight"), (std::vector<int64_t>{64, 100}));
}

// The Gemma families need BOS at the start of every prompt; the others take what their tokenizer adds.
TEST(Registry, GemmaFamiliesAlwaysPrependBos) {
  for (const std::string& dir : fixture_model_dirs()) {
    auto arch = Architecture::from_model_dir(dir);
    const Family f = arch->family();
    EXPECT_EQ(arch->spec().always_prepend_bos, f == Family::Gemma2 || f == Family::Gemma3 || f == Family::Gemma4)
        << dir;
  }
}

TEST(Registry, SupportedModelTypes) {
  EXPECT_EQ(Architecture::supported_model_types(),
            (std::vector<std::string>{"gemma2", "gemma3", "gemma3_text", "gemma4", "gemma4_text", "gpt2", "llama",
                                      "mistral", "qwen2", "qwen3"}));
}

}  // namespace
}  // namespace graft::arch::test
