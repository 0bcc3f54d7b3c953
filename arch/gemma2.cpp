// Gemma 2 (HF Gemma2ForCausalLM; transformers 5.17).
//
// - "Sandwich" blocks: input_layernorm -> attention -> post_attention_layernorm, added to the
//   residual; pre_feedforward_layernorm -> GeGLU MLP -> post_feedforward_layernorm, added.
// - RMSNorm multiplies by (1 + weight), in float32, before casting back (norm_weight_offset 1).
// - The embedding output is multiplied by sqrt(hidden_size), rounded to the weight dtype first.
// - Attention is scaled by query_pre_attn_scalar^-0.5 (not head_dim^-0.5) and its logits are
//   soft-capped, tanh(s / 50) * 50; the final logits are soft-capped at 30.
// - Layers alternate: even layers slide over a 4096-key window, odd layers see everything
//   (unless layer_types says otherwise). One RoPE (default, theta 10000) for every layer.
// - MLP: down(gelu_tanh(gate(x)) * up(x)); no biases anywhere unless attention_bias.
//
// config.json keys (HF defaults where a key is missing):
//   hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size   required
//   num_key_value_heads 4, head_dim 256, query_pre_attn_scalar 256, sliding_window 4096,
//   attn_logit_softcapping 50 and final_logit_softcapping 30 (null: none), tie_word_embeddings true
//   use_bidirectional_attention: true (non-causal) is not supported
#include <cmath>

#include "arch/families.h"

namespace graft::arch::detail {
namespace {

class Gemma2Architecture : public Architecture {
 public:
  explicit Gemma2Architecture(const ConfigReader& config);

 private:
  void assign_tensor_names() override;
  DecoderNaming naming_;
};

// Gemma2Config.__post_init__: sliding on even layers, full on odd ones.
std::vector<AttentionKind> gemma2_layer_types(const ConfigReader& config, int num_layers) {
  if (auto given = read_layer_types(config, num_layers)) return *given;
  std::vector<AttentionKind> kinds;
  for (int i = 0; i < num_layers; ++i) kinds.push_back((i + 1) % 2 ? AttentionKind::Sliding : AttentionKind::Full);
  return kinds;
}

Gemma2Architecture::Gemma2Architecture(const ConfigReader& config) {
  ModelSpec& s = spec_;
  s.family = Family::Gemma2;
  s.model_type = config.require_string("model_type");
  s.dtype = read_dtype(config, config);
  s.hidden_size = config.require_dimension("hidden_size");
  s.vocab_size = config.require_dimension("vocab_size");
  s.max_position_embeddings = config.get_dimension("max_position_embeddings", 8192);
  s.norm_kind = NormKind::RMSNorm;
  s.norm_eps = config.get_double("rms_norm_eps", 1e-6);
  s.norm_weight_offset = 1.0;
  s.norm_casts_before_weight = false;
  s.activation = read_activation(config, "hidden_activation", "gelu_pytorch_tanh");
  s.gated_mlp = true;
  s.sandwich_norms = true;
  s.embed_scale = std::sqrt(static_cast<double>(s.hidden_size));
  s.final_logit_softcap = read_softcap(config, "final_logit_softcapping", 30.0);
  s.tie_word_embeddings = config.get_bool("tie_word_embeddings", true);
  read_token_ids(config, {/*bos=*/2, /*pad=*/0, /*eos=*/{1}}, s);
  s.always_prepend_bos = true;
  s.weight_prefix = "model.";

  if (config.get_bool("use_bidirectional_attention", false)) {
    config.fail_key("use_bidirectional_attention", "is true: bidirectional (non-causal) Gemma 2 is not supported");
  }
  naming_.qkv_bias = naming_.o_bias = config.get_bool("attention_bias", false);
  naming_.sandwich_norms = true;

  const int num_layers = read_num_layers(config);
  const int64_t num_heads = config.require_dimension("num_attention_heads");
  const int64_t intermediate = config.require_dimension("intermediate_size");
  derived_head_dim(config, s.hidden_size, num_heads);  // Gemma2Config.validate_architecture
  const int64_t head_dim = config.get_dimension("head_dim", 256);
  const double query_pre_attn_scalar = config.get_double("query_pre_attn_scalar", 256.0);
  if (!(query_pre_attn_scalar > 0)) config.fail_key("query_pre_attn_scalar", "must be positive");
  const double attn_softcap = read_softcap(config, "attn_logit_softcapping", 50.0);
  const std::vector<AttentionKind> kinds = gemma2_layer_types(config, num_layers);
  const LayerOverrides layer_config(config, num_layers,
                                    {"num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
                                     "sliding_window"});

  for (int i = 0; i < num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.kv_source = i;
    l.attention = kinds[static_cast<size_t>(i)];
    if (l.is_sliding()) l.sliding_window = read_sliding_window(layer_config, config, i, 4096).value_or(0);
    require_window_for_sliding(config, l, "layer_types or the even/odd default makes it sliding");
    const AttentionShape a = read_attention_shape(layer_config, config, i, num_heads, head_dim, 4);
    l.num_q_heads = a.q_heads;
    l.num_kv_heads = a.kv_heads;
    l.head_dim = a.head_dim;
    l.attention_scale = inverse_sqrt(query_pre_attn_scalar);
    l.attn_logit_softcap = attn_softcap;
    l.mlp_width = layer_config.get_dimension(i, "intermediate_size", intermediate);
    s.layers.push_back(l);
  }

  RopeContext rope_context;
  rope_context.max_position_embeddings = s.max_position_embeddings;
  rope_context.partial_rotary_factor = config.optional_double("partial_rotary_factor");
  assign_rope(s.layers, read_standard_rope(config, 10000.0, rope_context, attention_kinds_used(s.layers)), config,
              layer_config);

  assign_tensor_names();
}

void Gemma2Architecture::assign_tensor_names() {
  name_decoder_model(spec_);
  for (LayerSpec& l : spec_.layers) name_decoder_layer(spec_.weight_prefix, l, naming_);
}

}  // namespace

std::unique_ptr<Architecture> make_gemma2(const ConfigReader& config) {
  return std::make_unique<Gemma2Architecture>(config);
}

}  // namespace graft::arch::detail
