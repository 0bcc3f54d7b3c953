// Gemma 3 (HF Gemma3ForCausalLM for "gemma3_text", Gemma3ForConditionalGeneration for "gemma3";
// transformers 5.17).
//
// Gemma 2's sandwich blocks, (1 + weight) RMSNorm, sqrt(hidden_size) embedding scale, GeGLU MLP and
// query_pre_attn_scalar^-0.5 attention scale, with these changes:
// - q_norm and k_norm: RMSNorm (1 + weight) over each head of q and k, before RoPE.
// - No attention-logit softcapping (Gemma3Attention never passes attn_logit_softcapping on), and
//   no final softcap by default (final_logit_softcapping null; the multimodal wrapper never applies one).
// - 5 sliding layers then 1 full layer: layer i is full when (i + 1) % sliding_window_pattern == 0
//   (pattern 6), unless layer_types says otherwise. Window 4096 by default (512 / 1024 in releases).
// - RoPE per layer type: sliding layers "default" with theta rope_local_base_freq (10000); full layers
//   theta rope_theta (1e6) plus the legacy rope_scaling (4B/12B/27B: linear, factor 8).
//
// Config forms: "gemma3_text" holds everything at the top level, weights under "model."; the
// multimodal "gemma3" wrapper nests it under text_config, weights under "model.language_model."
// (older checkpoints store them as "language_model.model.", which adopt_checkpoint_prefix accepts).
// config.json keys (HF defaults where a key is missing):
//   hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size   required
//   num_key_value_heads 4, head_dim 256, query_pre_attn_scalar 256, sliding_window 4096,
//   tie_word_embeddings true; use_bidirectional_attention true (EmbeddingGemma) is not supported
#include <cmath>

#include "arch/families.h"

namespace graft::arch::detail {
namespace {

using nlohmann::json;

class Gemma3Architecture : public Architecture {
 public:
  explicit Gemma3Architecture(const ConfigReader& file);

 private:
  void assign_tensor_names() override;
  DecoderNaming naming_;
};

// Gemma3TextConfig.__post_init__: full on every sliding_window_pattern-th layer.
std::vector<AttentionKind> gemma3_layer_types(const ConfigReader& config, int num_layers) {
  if (auto given = read_layer_types(config, num_layers)) return *given;
  const int64_t pattern = config.check_range(config.key_path("sliding_window_pattern"),
                                             config.get_int("sliding_window_pattern", 6), 1, kMaxLayers);
  std::vector<AttentionKind> kinds;
  for (int i = 0; i < num_layers; ++i)
    kinds.push_back((i + 1) % pattern ? AttentionKind::Sliding : AttentionKind::Full);
  return kinds;
}

// Gemma3TextConfig.convert_rope_params_to_dict: each layer type has its own dict in rope_parameters
// (a missing or null one is {"rope_type": "default"}); keys outside those two dicts are ignored, as
// in HF. The legacy rope_scaling is merged into the full-attention dict; a missing rope_theta is
// rope_theta (full, default 1e6) or rope_local_base_freq (sliding, default 1e4).
RopeByType gemma3_rope(const ConfigReader& config, const RopeContext& context) {
  static const json kDefault = {{"rope_type", "default"}};
  std::optional<ConfigReader> params = config.optional_section("rope_parameters");

  auto dict_for = [&](const std::string& type) -> json {
    if (params && params->has_value(type)) return params->section(type).object();
    return kDefault;
  };
  json full = dict_for("full_attention");
  if (std::optional<ConfigReader> scaling = config.optional_section("rope_scaling")) full.update(scaling->object());
  const json sliding = dict_for("sliding_attention");

  RopeByType out;
  out.full = parse_rope_dict(ConfigReader(full, config.source(), config.key_path("rope_parameters.full_attention.")),
                             config.get_double("rope_theta", 1e6), context);
  out.sliding = parse_rope_dict(ConfigReader(sliding, config.source(),
                                             config.key_path("rope_parameters.sliding_attention.")),
                                config.get_double("rope_local_base_freq", 1e4), context);
  return out;
}

Gemma3Architecture::Gemma3Architecture(const ConfigReader& file) {
  const bool multimodal = file.require_string("model_type") == "gemma3";
  const ConfigReader config = multimodal ? file.section("text_config") : file;

  ModelSpec& s = spec_;
  s.family = Family::Gemma3;
  s.model_type = file.require_string("model_type");
  s.dtype = read_dtype(config, file);
  s.hidden_size = config.require_dimension("hidden_size");
  s.vocab_size = config.require_dimension("vocab_size");
  s.max_position_embeddings = config.get_dimension("max_position_embeddings", 131072);
  s.norm_kind = NormKind::RMSNorm;
  s.norm_eps = config.get_double("rms_norm_eps", 1e-6);
  s.norm_weight_offset = 1.0;
  s.norm_casts_before_weight = false;
  s.activation = read_activation(config, "hidden_activation", "gelu_pytorch_tanh");
  s.gated_mlp = true;
  s.sandwich_norms = true;
  s.embed_scale = std::sqrt(static_cast<double>(s.hidden_size));
  // Gemma3ForCausalLM applies final_logit_softcapping; Gemma3ForConditionalGeneration does not.
  s.final_logit_softcap = multimodal ? 0.0 : read_softcap(config, "final_logit_softcapping", 0.0);
  // The wrapper (ForConditionalGeneration) ties its LM head by the top-level key (default true) and
  // ignores text_config's: transformers then saves no lm_head.weight even when text_config says false.
  s.tie_word_embeddings = multimodal ? file.get_bool("tie_word_embeddings", true)
                                     : config.get_bool("tie_word_embeddings", true);
  read_token_ids(config, {/*bos=*/2, /*pad=*/0, /*eos=*/{1}}, s);
  s.always_prepend_bos = true;
  s.weight_prefix = multimodal ? "model.language_model." : "model.";
  if (multimodal) s.alternative_weight_prefixes = {"language_model.model."};

  if (config.get_bool("use_bidirectional_attention", false)) {
    config.fail_key("use_bidirectional_attention", "is true: bidirectional (non-causal) Gemma 3 is not supported");
  }
  naming_.qkv_bias = naming_.o_bias = config.get_bool("attention_bias", false);
  naming_.sandwich_norms = true;

  const int num_layers = read_num_layers(config);
  const int64_t num_heads = config.require_dimension("num_attention_heads");
  const int64_t intermediate = config.require_dimension("intermediate_size");
  derived_head_dim(config, s.hidden_size, num_heads);  // Gemma3TextConfig.validate_architecture
  const int64_t head_dim = config.get_dimension("head_dim", 256);
  const double query_pre_attn_scalar = config.get_double("query_pre_attn_scalar", 256.0);
  if (!(query_pre_attn_scalar > 0)) config.fail_key("query_pre_attn_scalar", "must be positive");
  const std::vector<AttentionKind> kinds = gemma3_layer_types(config, num_layers);
  const LayerOverrides layer_config(config, num_layers,
                                    {"num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
                                     "sliding_window"});

  for (int i = 0; i < num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.kv_source = i;
    l.attention = kinds[static_cast<size_t>(i)];
    if (l.is_sliding()) l.sliding_window = read_sliding_window(layer_config, config, i, 4096).value_or(0);
    require_window_for_sliding(config, l, "layer_types or sliding_window_pattern makes it sliding");
    const AttentionShape a = read_attention_shape(layer_config, config, i, num_heads, head_dim, 4);
    l.num_q_heads = a.q_heads;
    l.num_kv_heads = a.kv_heads;
    l.head_dim = a.head_dim;
    l.has_qk_norm = true;
    l.attention_scale = inverse_sqrt(query_pre_attn_scalar);
    l.mlp_width = layer_config.get_dimension(i, "intermediate_size", intermediate);
    s.layers.push_back(l);
  }

  RopeContext rope_context;
  rope_context.max_position_embeddings = s.max_position_embeddings;
  rope_context.partial_rotary_factor = config.optional_double("partial_rotary_factor");
  assign_rope(s.layers, gemma3_rope(config, rope_context), config, layer_config);

  assign_tensor_names();
}

void Gemma3Architecture::assign_tensor_names() {
  name_decoder_model(spec_);
  for (LayerSpec& l : spec_.layers) name_decoder_layer(spec_.weight_prefix, l, naming_);
}

}  // namespace

std::unique_ptr<Architecture> make_gemma3(const ConfigReader& config) {
  return std::make_unique<Gemma3Architecture>(config);
}

}  // namespace graft::arch::detail
