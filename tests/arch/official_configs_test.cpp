// The four official Gemma 4 configs (tests/data/configs): the per-layer facts of their README, and
// agreement, layer by layer and tensor by tensor, with what transformers 5.17 itself built from each
// (NAME.hf_facts.json).
#include <cctype>
#include <cmath>
#include <set>

#include "arch_test_util.h"

namespace graft::arch::test {
namespace {

std::unique_ptr<Architecture> load_variant(const std::string& name) {
  return Architecture::from_config_file(data_path("configs/" + name + ".config.json"));
}

std::vector<int> full_layers(const Architecture& arch) {
  std::vector<int> out;
  for (int i = 0; i < arch.num_layers(); ++i) {
    if (!arch.is_sliding(i)) out.push_back(i);
  }
  return out;
}

std::vector<int> every(int first, int step, int last) {
  std::vector<int> out;
  for (int i = first; i <= last; i += step) out.push_back(i);
  return out;
}

// ---- README facts --------------------------------------------------------------------------------

TEST(OfficialGemma4Configs, E2B) {
  auto arch = load_variant("gemma-4-E2B-it");
  ASSERT_EQ(arch->num_layers(), 35);
  EXPECT_EQ(arch->spec().model_type, "gemma4");
  EXPECT_EQ(arch->spec().weight_prefix, "model.language_model.");
  EXPECT_EQ(full_layers(*arch), every(4, 5, 34));
  for (int i = 0; i < 35; ++i) {
    SCOPED_TRACE(describe_layer(arch->layer(i)));
    EXPECT_EQ(arch->intermediate_size_for_layer(i), i <= 14 ? 6144 : 12288);
    const bool shared = i >= 15;
    EXPECT_EQ(arch->layer(i).is_kv_shared(), shared);
    EXPECT_EQ(arch->kv_source(i), !shared ? i : arch->is_sliding(i) ? 13 : 14);
    EXPECT_EQ(arch->layer(i).has_k_proj, !shared);
    EXPECT_EQ(arch->has_v_proj(i), !shared);
    EXPECT_EQ(arch->num_q_heads_for_layer(i), 8);
    EXPECT_EQ(arch->num_kv_heads_for_layer(i), 1);
    EXPECT_EQ(arch->head_dim_for_layer(i), arch->is_sliding(i) ? 256 : 512);
    EXPECT_EQ(arch->sliding_window(i), arch->is_sliding(i) ? 512 : 0);
  }
  EXPECT_EQ(arch->kv_source(15), 13);
  EXPECT_EQ(arch->kv_source(19), 14);
  EXPECT_TRUE(arch->has_per_layer_embeddings());
  EXPECT_EQ(arch->spec().per_layer_input_size, 256);
  EXPECT_EQ(arch->spec().per_layer_vocab_size, 262144);
  // HF's P**0.5, hidden_size**-0.5 and 2**-0.5, as Python computes them.
  EXPECT_EQ(arch->spec().per_layer_token_scale, 16.0);
  EXPECT_EQ(arch->spec().per_layer_projection_scale, std::pow(1536.0, -0.5));
  EXPECT_EQ(arch->spec().per_layer_combine_scale, std::pow(2.0, -0.5));
}

TEST(OfficialGemma4Configs, E4B) {
  auto arch = load_variant("gemma-4-E4B-it");
  ASSERT_EQ(arch->num_layers(), 42);
  EXPECT_EQ(full_layers(*arch), every(5, 6, 41));
  for (int i = 0; i < 42; ++i) {
    SCOPED_TRACE(describe_layer(arch->layer(i)));
    EXPECT_EQ(arch->intermediate_size_for_layer(i), 10240);
    EXPECT_EQ(arch->kv_source(i), i < 24 ? i : arch->is_sliding(i) ? 22 : 23);
    EXPECT_EQ(arch->num_kv_heads_for_layer(i), 2);
  }
}

TEST(OfficialGemma4Configs, Dense31B) {
  auto arch = load_variant("gemma-4-31B-it");
  ASSERT_EQ(arch->num_layers(), 60);
  EXPECT_EQ(full_layers(*arch), every(5, 6, 59));
  for (int i = 0; i < 60; ++i) {
    SCOPED_TRACE(describe_layer(arch->layer(i)));
    const bool full = !arch->is_sliding(i);
    EXPECT_EQ(arch->kv_source(i), i);
    EXPECT_EQ(arch->intermediate_size_for_layer(i), 21504);
    EXPECT_EQ(arch->has_v_proj(i), !full);  // K == V on full layers: no v_proj
    EXPECT_EQ(arch->layer(i).k_eq_v, full);
    EXPECT_EQ(arch->num_kv_heads_for_layer(i), full ? 4 : 16);
    EXPECT_EQ(arch->head_dim_for_layer(i), full ? 512 : 256);
    EXPECT_EQ(arch->sliding_window(i), full ? 0 : 1024);
  }
  EXPECT_FALSE(arch->has_per_layer_embeddings());
  EXPECT_EQ(arch->spec().per_layer_token_scale, 1.0);  // unused without per-layer embeddings
  EXPECT_EQ(arch->layer(0).moe.router_input_scale, 1.0);
}

TEST(OfficialGemma4Configs, MoE26B) {
  auto arch = load_variant("gemma-4-26B-A4B-it");
  ASSERT_EQ(arch->num_layers(), 30);
  EXPECT_EQ(full_layers(*arch), every(5, 6, 29));
  for (int i = 0; i < 30; ++i) {
    SCOPED_TRACE(describe_layer(arch->layer(i)));
    const bool full = !arch->is_sliding(i);
    EXPECT_EQ(arch->intermediate_size_for_layer(i), 2112);
    EXPECT_EQ(arch->layer(i).moe.num_experts, 128);
    EXPECT_EQ(arch->layer(i).moe.top_k, 8);
    EXPECT_EQ(arch->layer(i).moe.expert_width, 704);
    EXPECT_EQ(arch->layer(i).moe.router_input_scale, std::pow(2816.0, -0.5));  // hidden_size**-0.5
    EXPECT_EQ(arch->num_kv_heads_for_layer(i), full ? 2 : 8);
    EXPECT_EQ(arch->has_v_proj(i), !full);
  }
  const auto tensors = tensor_map(*arch);
  EXPECT_EQ(tensors.at("model.language_model.layers.0.experts.gate_up_proj"), (std::vector<int64_t>{128, 1408, 2816}));
  EXPECT_EQ(tensors.at("model.language_model.layers.0.experts.down_proj"), (std::vector<int64_t>{128, 2816, 704}));
  EXPECT_EQ(tensors.at("model.language_model.layers.0.router.proj.weight"), (std::vector<int64_t>{128, 2816}));
}

// Gemma 4 model-level numerics and RoPE, the same for every variant.
TEST(OfficialGemma4Configs, SharedNumericsAndRope) {
  auto arch = load_variant("gemma-4-E2B-it");
  const ModelSpec& s = arch->spec();
  EXPECT_EQ(s.family, Family::Gemma4);
  EXPECT_EQ(s.norm_weight_offset, 0.0);
  EXPECT_FALSE(s.norm_casts_before_weight);
  EXPECT_TRUE(s.sandwich_norms);
  EXPECT_EQ(s.activation, Activation::GeluTanh);
  EXPECT_DOUBLE_EQ(s.embed_scale, std::sqrt(1536.0));
  EXPECT_EQ(s.final_logit_softcap, 30.0);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_EQ(s.tensors.lm_head, s.tensors.embed_tokens);
  EXPECT_EQ(s.dtype, "bfloat16");
  EXPECT_EQ(s.bos_token_id, 2);
  EXPECT_EQ(s.eos_token_ids, (std::vector<int64_t>{1}));

  const LayerSpec& sliding = arch->layer(0);
  EXPECT_EQ(sliding.attention_scale, 1.0);
  EXPECT_TRUE(sliding.has_qk_norm);
  EXPECT_TRUE(sliding.has_v_norm);
  EXPECT_TRUE(sliding.has_layer_scalar);
  EXPECT_EQ(sliding.rope.kind, RopeKind::Default);
  EXPECT_EQ(sliding.rope.theta, 10000.0);
  EXPECT_EQ(sliding.rope.dim, 256);
  EXPECT_EQ(sliding.rope.rotated_pairs, 128);

  const RopeSpec& full = arch->rope_for_layer(4);
  EXPECT_EQ(full.kind, RopeKind::Proportional);
  EXPECT_EQ(full.theta, 1e6);
  EXPECT_EQ(full.dim, 512);           // pairing j <-> j + 256 over the whole head
  EXPECT_EQ(full.rotated_pairs, 64);  // int(0.25 * 512 // 2); frequencies 64..255 are 0
  EXPECT_EQ(full.partial_rotary_factor, 0.25);
  EXPECT_EQ(full.factor, 1.0);

  // A KV-shared layer still has its own query path but reads K/V elsewhere.
  const LayerSpec& reader = arch->layer(15);
  EXPECT_TRUE(reader.tensors[TensorRole::K].weight.empty());
  EXPECT_TRUE(reader.tensors[TensorRole::V].weight.empty());
  EXPECT_TRUE(reader.tensors[TensorRole::KNorm].weight.empty());
  EXPECT_FALSE(reader.tensors[TensorRole::QNorm].weight.empty());
  EXPECT_FALSE(reader.has_v_norm);
  EXPECT_EQ(arch->mlp_down_projection(15).weight, "model.language_model.layers.15.mlp.down_proj.weight");
}

// Above the last layer that computes its own K/V (E2B: 14, E4B: 23), what a layer writes at a
// position reaches no later position; without KV sharing (31B) only the last layer is so.
TEST(OfficialGemma4Configs, LaterLayerReadsPositions) {
  for (const auto& [name, last_reader] : std::vector<std::pair<std::string, int>>{
           {"gemma-4-E2B-it", 13}, {"gemma-4-E4B-it", 22}, {"gemma-4-31B-it", 58}, {"gemma-4-26B-A4B-it", 28}}) {
    auto arch = load_variant(name);
    for (int i = 0; i < arch->num_layers(); ++i)
      EXPECT_EQ(arch->later_layer_reads_positions(i), i <= last_reader) << name << " " << i;
  }
}

// ---- Agreement with transformers (NAME.hf_facts.json) --------------------------------------------

class HfFactsParity : public ::testing::TestWithParam<std::string> {};

TEST_P(HfFactsParity, LayersMatchTransformers) {
  auto arch = load_variant(GetParam());
  const nlohmann::json facts = read_json(data_path("configs/" + GetParam() + ".hf_facts.json"));
  const nlohmann::json& layers = facts.at("layers");
  ASSERT_EQ(static_cast<int>(layers.size()), arch->num_layers());
  for (const nlohmann::json& hf : layers) {
    const int i = hf.at("layer").get<int>();
    SCOPED_TRACE("layer " + std::to_string(i) + ": " + hf.dump());
    EXPECT_EQ(attention_kind_name(arch->layer(i).attention), hf.at("type").get<std::string>());
    EXPECT_EQ(arch->head_dim_for_layer(i), hf.at("head_dim").get<int64_t>());
    EXPECT_EQ(arch->num_q_heads_for_layer(i), hf.at("q_heads").get<int64_t>());
    if (hf.at("kv_heads").is_null()) {
      // transformers reads the KV head count off k_proj, which KV-shared layers lack; such a layer
      // attends with its source layer's K/V heads.
      EXPECT_TRUE(hf.at("kv_shared").get<bool>());
      EXPECT_EQ(arch->num_kv_heads_for_layer(i), arch->num_kv_heads_for_layer(arch->kv_source(i)));
    } else {
      EXPECT_EQ(arch->num_kv_heads_for_layer(i), hf.at("kv_heads").get<int64_t>());
    }
    EXPECT_EQ(arch->layer(i).is_kv_shared(), hf.at("kv_shared").get<bool>());
    EXPECT_EQ(arch->has_v_proj(i), hf.at("has_v_proj").get<bool>());
    EXPECT_EQ(arch->intermediate_size_for_layer(i), hf.at("mlp_width").get<int64_t>());
  }
}

// hf_facts lists the text model's state: parameters and buffers. Two kinds of buffer are not in any
// checkpoint and so are not tensors the model reads from one: the rotary embedding's inv_freq tables
// (rotary_emb.*, recomputed from rope_parameters) and the embedding scales (*.embed_scale = sqrt of a
// width, recomputed from the config). Both are registered persistent=False in modeling_gemma4.py.
// layer_scalar is a persistent buffer, stored in checkpoints, and stays.
bool is_non_persistent_buffer(const std::string& name) {
  const std::string scale = ".embed_scale";
  return name.find(".rotary_emb.") != std::string::npos ||
         (name.size() > scale.size() && name.compare(name.size() - scale.size(), scale.size(), scale) == 0);
}

TEST_P(HfFactsParity, TensorsMatchTransformers) {
  auto arch = load_variant(GetParam());
  const nlohmann::json facts = read_json(data_path("configs/" + GetParam() + ".hf_facts.json"));
  std::map<std::string, std::vector<int64_t>> hf;
  int buffers = 0;
  for (const auto& [name, shape] : facts.at("tensors").items()) {
    if (is_non_persistent_buffer(name)) {
      ++buffers;
      continue;
    }
    hf[name] = shape.get<std::vector<int64_t>>();
  }
  EXPECT_GT(buffers, 0);  // the filter is doing something: these files do list the buffers

  const auto ours = tensor_map(*arch);
  for (const auto& [name, shape] : hf) {
    auto it = ours.find(name);
    if (it == ours.end()) {
      ADD_FAILURE() << "transformers has " << name << ", graft does not expect it";
    } else {
      EXPECT_EQ(it->second, shape) << name;
    }
  }
  for (const auto& [name, shape] : ours) {
    EXPECT_TRUE(hf.count(name)) << "graft expects " << name << ", transformers has no such tensor";
  }

  int64_t hf_parameters = 0;
  for (const auto& [name, shape] : hf) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    hf_parameters += n;
  }
  EXPECT_EQ(arch->parameter_count(), hf_parameters);
}

INSTANTIATE_TEST_SUITE_P(Gemma4, HfFactsParity,
                         ::testing::Values("gemma-4-E2B-it", "gemma-4-E4B-it", "gemma-4-31B-it", "gemma-4-26B-A4B-it"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(std::string("gemma-4-").size());
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

}  // namespace
}  // namespace graft::arch::test
