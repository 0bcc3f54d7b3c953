// Llama and Mistral (HF LlamaForCausalLM, MistralForCausalLM; transformers 5.17).
//
// The reference decoder that the other families vary:
//   x = x + o_proj(attention(RoPE(q_proj(input_layernorm(x))), RoPE(k_proj(..)), v_proj(..)))
//   x = x + down_proj(silu(gate_proj(h)) * up_proj(h)),   h = post_attention_layernorm(x)
// - RMSNorm normalises in float32, casts back to the activation dtype, then multiplies by the weight.
// - Attention is scaled by head_dim^-0.5; grouped-query attention when num_key_value_heads is smaller.
// - RoPE over whole heads: default, linear, dynamic, yarn or llama3 (Llama 3.x: factor 8, 8192 ctx).
// - Mistral is the same block with every layer limited to a sliding window: keys in (q - W, q].
//
// config.json keys (HF defaults where a key is missing):
//   hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size   required
//   num_key_value_heads   Llama: num_attention_heads; Mistral: 8 (null: num_attention_heads)
//   head_dim              hidden_size / num_attention_heads (Llama insists the division is exact)
//   rope_parameters, or the older rope_scaling + rope_theta (theta default 10000)
//   attention_bias        Llama only, default false: a bias on q, k, v AND o
//   mlp_bias              Llama only, default false: a bias on gate, up and down
//   sliding_window        Mistral only: 4096 when missing, null for none
//   tie_word_embeddings   default false (Llama 3.2 1B/3B set it)
#include <cmath>

#include "arch/families.h"

namespace graft::arch::detail {
namespace {

class LlamaArchitecture : public Architecture {
 public:
  LlamaArchitecture(const ConfigReader& config, Family family);

 private:
  void assign_tensor_names() override;
  DecoderNaming naming_;
};

LlamaArchitecture::LlamaArchitecture(const ConfigReader& config, Family family) {
  const bool mistral = family == Family::Mistral;
  ModelSpec& s = spec_;
  s.family = family;
  s.model_type = config.require_string("model_type");
  s.dtype = read_dtype(config, config);
  s.hidden_size = config.require_dimension("hidden_size");
  s.vocab_size = config.require_dimension("vocab_size");
  s.max_position_embeddings = config.get_dimension("max_position_embeddings", mistral ? 4096 * 32 : 2048);
  s.norm_kind = NormKind::RMSNorm;
  s.norm_eps = config.get_double("rms_norm_eps", 1e-6);
  s.norm_casts_before_weight = true;
  s.activation = read_activation(config, "hidden_act", "silu");
  s.gated_mlp = true;
  s.tie_word_embeddings = config.get_bool("tie_word_embeddings", false);
  read_token_ids(config, {/*bos=*/1, /*pad=*/std::nullopt, /*eos=*/{2}}, s);
  s.weight_prefix = "model.";

  // MistralAttention and MistralMLP are built without biases whatever the config says.
  naming_.qkv_bias = naming_.o_bias = !mistral && config.get_bool("attention_bias", false);
  naming_.mlp_bias = !mistral && config.get_bool("mlp_bias", false);

  const int num_layers = read_num_layers(config);
  const int64_t num_heads = config.require_dimension("num_attention_heads");
  const int64_t intermediate = config.require_dimension("intermediate_size");
  // head_dim defaults to hidden_size / num_attention_heads. LlamaConfig.validate_architecture wants
  // that division exact even when head_dim is given; Mistral only when it derives head_dim.
  const bool explicit_head_dim = config.has_value("head_dim");
  const int64_t derived = (!mistral || !explicit_head_dim) ? derived_head_dim(config, s.hidden_size, num_heads) : 0;
  const int64_t head_dim = explicit_head_dim ? config.require_dimension("head_dim") : derived;

  std::vector<std::string> per_layer = {"num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size"};
  if (mistral) per_layer.push_back("sliding_window");
  const LayerOverrides layer_config(config, num_layers, per_layer);

  for (int i = 0; i < num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.kv_source = i;
    const AttentionShape a = read_attention_shape(layer_config, config, i, num_heads, head_dim,
                                                  mistral ? std::optional<int64_t>(8) : std::nullopt);
    l.num_q_heads = a.q_heads;
    l.num_kv_heads = a.kv_heads;
    l.head_dim = a.head_dim;
    l.attention_scale = inverse_sqrt(static_cast<double>(l.head_dim));
    if (mistral) {
      // Mistral passes config.sliding_window to every layer's attention and mask.
      if (std::optional<int64_t> window = read_sliding_window(layer_config, config, i, 4096)) {
        l.attention = AttentionKind::Sliding;
        l.sliding_window = *window;
      }
    }
    l.mlp_width = layer_config.get_dimension(i, "intermediate_size", intermediate);
    s.layers.push_back(l);
  }

  RopeContext rope_context;
  rope_context.max_position_embeddings = s.max_position_embeddings;
  rope_context.partial_rotary_factor = config.optional_double("partial_rotary_factor");
  rope_context.original_max_position_embeddings = config.optional_int("original_max_position_embeddings");
  assign_rope(s.layers, read_standard_rope(config, 10000.0, rope_context, attention_kinds_used(s.layers)), config,
              layer_config);

  assign_tensor_names();
}

void LlamaArchitecture::assign_tensor_names() {
  name_decoder_model(spec_);
  for (LayerSpec& l : spec_.layers) name_decoder_layer(spec_.weight_prefix, l, naming_);
}

}  // namespace

std::unique_ptr<Architecture> make_llama(const ConfigReader& config) {
  return std::make_unique<LlamaArchitecture>(config, Family::Llama);
}

std::unique_ptr<Architecture> make_mistral(const ConfigReader& config) {
  return std::make_unique<LlamaArchitecture>(config, Family::Mistral);
}

}  // namespace graft::arch::detail
