// Qwen2 and Qwen3 (HF Qwen2ForCausalLM, Qwen3ForCausalLM; transformers 5.17).
//
// The Llama block (pre-norm, SwiGLU, RMSNorm that casts before the weight, head_dim^-0.5, GQA) with:
// - Qwen2: a bias on q_proj, k_proj and v_proj, always, and none on o_proj (attention_bias is not read).
// - Qwen3: RMSNorm over each head of q and k after projection (q_norm, k_norm, weight [head_dim]),
//   head_dim 128 unless given, and attention_bias (default false) putting a bias on q, k, v and o.
// - Both: optional sliding windows on the top layers. `use_sliding_window` (default false) switches
//   them on; then layers i >= max_window_layers (default 28) slide over `sliding_window` (default
//   4096) keys, unless `layer_types` spells the pattern out.
//
// config.json keys (HF defaults where a key is missing):
//   hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size   required
//   num_key_value_heads   32 (null: num_attention_heads)
//   head_dim              Qwen2: hidden_size / num_attention_heads; Qwen3: 128
//   rope_parameters, or rope_scaling + rope_theta (default 10000); Qwen2.5 long context uses yarn
//   tie_word_embeddings   default false (the small Qwen2/2.5/3 checkpoints set it true)
#include "arch/families.h"

namespace graft::arch::detail {
namespace {

class QwenArchitecture : public Architecture {
 public:
  QwenArchitecture(const ConfigReader& config, Family family);

 private:
  void assign_tensor_names() override;
  DecoderNaming naming_;
};

// Qwen2Config.__post_init__: the window exists only when use_sliding_window is set.
std::optional<int64_t> qwen_window(const ConfigReader& config) {
  if (!config.get_bool("use_sliding_window", false)) return std::nullopt;
  std::optional<int64_t> w = config.contains("sliding_window") ? config.optional_int("sliding_window")
                                                               : std::optional<int64_t>(4096);
  if (w) config.check_range(config.key_path("sliding_window"), *w, 1, kMaxDimension);
  return w;
}

// layer_types, else sliding on layers i >= max_window_layers when there is a window.
std::vector<AttentionKind> qwen_layer_types(const ConfigReader& config, int num_layers, std::optional<int64_t> window) {
  if (auto given = read_layer_types(config, num_layers)) return *given;
  const int64_t max_window_layers = config.get_int("max_window_layers", 28);
  std::vector<AttentionKind> kinds;
  for (int i = 0; i < num_layers; ++i) {
    kinds.push_back(window && i >= max_window_layers ? AttentionKind::Sliding : AttentionKind::Full);
  }
  return kinds;
}

QwenArchitecture::QwenArchitecture(const ConfigReader& config, Family family) {
  const bool qwen3 = family == Family::Qwen3;
  ModelSpec& s = spec_;
  s.family = family;
  s.model_type = config.require_string("model_type");
  s.dtype = read_dtype(config, config);
  s.hidden_size = config.require_dimension("hidden_size");
  s.vocab_size = config.require_dimension("vocab_size");
  s.max_position_embeddings = config.get_dimension("max_position_embeddings", 32768);
  s.norm_kind = NormKind::RMSNorm;
  s.norm_eps = config.get_double("rms_norm_eps", 1e-6);
  s.norm_casts_before_weight = true;
  s.activation = read_activation(config, "hidden_act", "silu");
  s.gated_mlp = true;
  s.tie_word_embeddings = config.get_bool("tie_word_embeddings", false);
  read_token_ids(config, {}, s);  // Qwen configs default every token id to None
  s.weight_prefix = "model.";

  if (qwen3) {
    naming_.qkv_bias = naming_.o_bias = config.get_bool("attention_bias", false);
  } else {
    naming_.qkv_bias = true;  // Qwen2Attention: q/k/v Linear(bias=True), o_proj Linear(bias=False)
  }

  const int num_layers = read_num_layers(config);
  const int64_t num_heads = config.require_dimension("num_attention_heads");
  const int64_t intermediate = config.require_dimension("intermediate_size");
  const int64_t head_dim = qwen3                          ? config.get_dimension("head_dim", 128)
                           : config.has_value("head_dim") ? config.require_dimension("head_dim")
                                                          : derived_head_dim(config, s.hidden_size, num_heads);
  const std::optional<int64_t> window = qwen_window(config);
  const std::vector<AttentionKind> kinds = qwen_layer_types(config, num_layers, window);
  const LayerOverrides layer_config(config, num_layers,
                                    {"num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size"});

  for (int i = 0; i < num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.kv_source = i;
    l.attention = kinds[static_cast<size_t>(i)];
    l.sliding_window = l.is_sliding() ? window.value_or(0) : 0;
    require_window_for_sliding(config, l,
                               "set use_sliding_window and sliding_window, or mark the layer full_attention");
    const AttentionShape a = read_attention_shape(layer_config, config, i, num_heads, head_dim, 32);
    l.num_q_heads = a.q_heads;
    l.num_kv_heads = a.kv_heads;
    l.head_dim = a.head_dim;
    l.has_qk_norm = qwen3;
    l.attention_scale = inverse_sqrt(static_cast<double>(l.head_dim));
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

void QwenArchitecture::assign_tensor_names() {
  name_decoder_model(spec_);
  for (LayerSpec& l : spec_.layers) name_decoder_layer(spec_.weight_prefix, l, naming_);
}

}  // namespace

std::unique_ptr<Architecture> make_qwen2(const ConfigReader& config) {
  return std::make_unique<QwenArchitecture>(config, Family::Qwen2);
}

std::unique_ptr<Architecture> make_qwen3(const ConfigReader& config) {
  return std::make_unique<QwenArchitecture>(config, Family::Qwen3);
}

}  // namespace graft::arch::detail
