// GPT-2 (HF GPT2LMHeadModel; transformers 5.17).
//
// - Token embeddings (wte) plus learned absolute position embeddings (wpe [n_positions, n_embd]).
// - Pre-norm blocks with LayerNorm (weight and bias, eps layer_norm_epsilon = 1e-5):
//     x = x + attn.c_proj(attention(attn.c_attn(ln_1(x))))
//     x = x + mlp.c_proj(gelu_new(mlp.c_fc(ln_2(x))))          (not gated)
//   and ln_f after the last block. Plain multi-head attention (no GQA), scaled by head_dim^-0.5
//   (scale_attn_weights), no RoPE.
// - c_attn fuses the three projections: its n_embd -> 3 * n_embd output is [q | k | v].
// - Every projection is a Conv1D, which stores its weight as [in, out] (WeightLayout::InOut),
//   transposed from torch.nn.Linear, and has a bias.
// - The LM head is tied to wte (tie_word_embeddings, default true).
// - Weights live under "transformer." (GPT2LMHeadModel). Checkpoints saved from the bare GPT2Model,
//   such as the original openai-community/gpt2 files, have no prefix; adopt_checkpoint_prefix
//   accepts them. Their h.N.attn.bias causal-mask buffers are known-unused.
//
// config.json keys (HF defaults where a key is missing; HF also accepts the generic names in brackets):
//   n_embd [hidden_size], n_layer [num_hidden_layers], n_head [num_attention_heads], vocab_size   required
//   n_positions [max_position_embeddings] 1024, n_inner 4 * n_embd (also when null),
//   activation_function gelu_new
//   scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, add_cross_attention: must be false
#include <cmath>

#include "arch/families.h"

namespace graft::arch::detail {
namespace {

class GPT2Architecture : public Architecture {
 public:
  explicit GPT2Architecture(const ConfigReader& config);

 private:
  void assign_tensor_names() override;
};

// GPT2Config.attribute_map lets the generic name stand for GPT-2's own ("hidden_size" for "n_embd").
std::string gpt2_key(const ConfigReader& config, const std::string& own, const std::string& generic) {
  return !config.contains(own) && config.contains(generic) ? generic : own;
}

// Flags that change the attention math in ways graft's forward pass does not implement.
void reject_unsupported_flags(const ConfigReader& config) {
  const std::pair<const char*, const char*> flags[] = {
      {"scale_attn_by_inverse_layer_idx", "it divides attention scores by (layer index + 1)"},
      {"reorder_and_upcast_attn", "it computes attention scores in float32 in a different order"},
      {"add_cross_attention", "cross-attention layers need an encoder"},
  };
  for (const auto& [key, why] : flags) {
    if (config.get_bool(key, false)) config.fail_key(key, std::string("is true, which graft does not support: ") + why);
  }
}

GPT2Architecture::GPT2Architecture(const ConfigReader& config) {
  reject_unsupported_flags(config);
  ModelSpec& s = spec_;
  s.family = Family::GPT2;
  s.model_type = config.require_string("model_type");
  s.dtype = read_dtype(config, config);
  const std::string hidden_key = gpt2_key(config, "n_embd", "hidden_size");
  const std::string heads_key = gpt2_key(config, "n_head", "num_attention_heads");
  s.hidden_size = config.require_dimension(hidden_key);
  s.vocab_size = config.require_dimension("vocab_size");
  s.max_position_embeddings = config.get_dimension(gpt2_key(config, "n_positions", "max_position_embeddings"), 1024);
  s.norm_kind = NormKind::LayerNorm;
  s.norm_eps = config.get_double("layer_norm_epsilon", 1e-5);
  s.activation = read_activation(config, "activation_function", "gelu_new");
  s.gated_mlp = false;
  s.tie_word_embeddings = config.get_bool("tie_word_embeddings", true);
  s.learned_positions = true;
  read_token_ids(config, {/*bos=*/50256, /*pad=*/std::nullopt, /*eos=*/{50256}}, s);
  s.weight_prefix = "transformer.";
  s.alternative_weight_prefixes = {""};

  const int num_layers = read_num_layers(config, gpt2_key(config, "n_layer", "num_hidden_layers"));
  const int64_t num_heads = config.require_dimension(heads_key);
  const int64_t inner = config.has_value("n_inner") ? config.require_dimension("n_inner") : 4 * s.hidden_size;
  const bool scale_attn_weights = config.get_bool("scale_attn_weights", true);
  const LayerOverrides layer_config(config, num_layers, {"n_head", "n_inner"});

  for (int i = 0; i < num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.kv_source = i;
    l.num_q_heads = l.num_kv_heads = layer_config.get_dimension(i, "n_head", num_heads);
    // GPT2Attention: head_dim = n_embd // n_head, and it must divide exactly.
    l.head_dim = derived_head_dim(config, s.hidden_size, l.num_q_heads, hidden_key, layer_config.key_path(i, "n_head"));
    l.attention_scale = scale_attn_weights ? inverse_sqrt(static_cast<double>(l.head_dim)) : 1.0;
    l.mlp_width = layer_config.get_dimension(i, "n_inner", inner);
    s.layers.push_back(l);  // rope stays RopeKind::None: positions come from wpe
  }

  assign_tensor_names();
}

void GPT2Architecture::assign_tensor_names() {
  ModelSpec& s = spec_;
  const std::string& p = s.weight_prefix;
  s.tensors = ModelTensors{};
  s.tensors.embed_tokens = p + "wte.weight";
  s.tensors.position_embeddings = p + "wpe.weight";
  s.tensors.final_norm = {p + "ln_f.weight", p + "ln_f.bias"};
  s.tensors.lm_head = s.tie_word_embeddings ? s.tensors.embed_tokens : "lm_head.weight";

  for (LayerSpec& l : s.layers) {
    const std::string base = p + "h." + std::to_string(l.index) + ".";
    auto conv1d = [&](const std::string& module) {
      return LinearNames{base + module + ".weight", base + module + ".bias", WeightLayout::InOut};
    };
    using R = TensorRole;
    LayerTensors& t = l.tensors;
    t = LayerTensors{};
    t[R::AttnPreNorm] = {base + "ln_1.weight", base + "ln_1.bias"};
    t[R::QKV] = conv1d("attn.c_attn");
    t[R::O] = conv1d("attn.c_proj");
    t[R::MlpPreNorm] = {base + "ln_2.weight", base + "ln_2.bias"};
    t[R::Up] = conv1d("mlp.c_fc");
    t[R::Down] = conv1d("mlp.c_proj");
  }
}

}  // namespace

std::unique_ptr<Architecture> make_gpt2(const ConfigReader& config) {
  return std::make_unique<GPT2Architecture>(config);
}

}  // namespace graft::arch::detail
