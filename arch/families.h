// Internal to arch/: the factory of each family file, and the facts and tensor names several
// families read or spell the same way (implemented in arch.cpp). Nothing outside arch/ includes it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "arch/config_reader.h"

namespace graft::arch::detail {

// ---- One factory per model_type; `config` is the whole config.json ------------------------------
std::unique_ptr<Architecture> make_llama(const ConfigReader& config);    // llama.cpp
std::unique_ptr<Architecture> make_mistral(const ConfigReader& config);  // llama.cpp
std::unique_ptr<Architecture> make_qwen2(const ConfigReader& config);    // qwen.cpp
std::unique_ptr<Architecture> make_qwen3(const ConfigReader& config);    // qwen.cpp
std::unique_ptr<Architecture> make_gemma2(const ConfigReader& config);   // gemma2.cpp
std::unique_ptr<Architecture> make_gemma3(const ConfigReader& config);   // gemma3.cpp: gemma3, gemma3_text
std::unique_ptr<Architecture> make_gemma4(const ConfigReader& config);   // gemma4.cpp: gemma4, gemma4_text
std::unique_ptr<Architecture> make_gpt2(const ConfigReader& config);     // gpt2.cpp

// ---- Facts several families read the same way ----------------------------------------------------

// num_hidden_layers (or GPT-2's n_layer): required, in [1, kMaxLayers].
int read_num_layers(const ConfigReader& section, const std::string& key = "num_hidden_layers");

// `layer_types` ("full_attention" / "sliding_attention"), nullopt when missing or null. Fails on a
// length other than num_layers and on any other type.
std::optional<std::vector<AttentionKind>> read_layer_types(const ConfigReader& section, int num_layers);

// An HF ACT2FN name: silu/swish, gelu, gelu_new/gelu_pytorch_tanh, relu.
Activation read_activation(const ConfigReader& section, const std::string& key, const std::string& fallback);

// `dtype` (v5) or `torch_dtype` (v4) of the text section, else of the file; "" when neither says.
std::string read_dtype(const ConfigReader& section, const ConfigReader& file);

// bos/pad/eos token ids: a missing key takes the family's HF default, null means none.
struct TokenIdDefaults {
  std::optional<int64_t> bos, pad;
  std::vector<int64_t> eos;
};
void read_token_ids(const ConfigReader& section, const TokenIdDefaults& defaults, ModelSpec& spec);

// A softcapping value (final_logit_softcapping, attn_logit_softcapping): a missing key takes
// `if_missing`, null or 0 means none (0.0); otherwise it must be positive.
double read_softcap(const ConfigReader& section, const std::string& key, double if_missing);

// hidden_size / num_attention_heads, the head size HF derives when a config gives none; fails unless
// the division is exact (HF validate_architecture).
int64_t derived_head_dim(const ConfigReader& section, int64_t hidden_size, int64_t num_heads,
                         const std::string& hidden_key = "hidden_size",
                         const std::string& heads_key = "num_attention_heads");

// The attention shape of one layer, each value read through per_layer_config.
struct AttentionShape {
  int64_t q_heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
};
// `kv_heads_if_missing` is HF's class default for a config without num_key_value_heads; nullopt
// (and an explicit null) mean as many KV heads as query heads. Checks that KV heads divide query
// heads and that heads * head_dim is a sane projection width.
AttentionShape read_attention_shape(const LayerOverrides& layer_config, const ConfigReader& section, int layer,
                                    int64_t num_heads, int64_t head_dim_fallback,
                                    std::optional<int64_t> kv_heads_if_missing);

// The sliding window of `layer` (per_layer_config first); a missing key takes `if_missing`, null
// means no window. Fails on a window below 1.
std::optional<int64_t> read_sliding_window(const LayerOverrides& layer_config, const ConfigReader& section, int layer,
                                           std::optional<int64_t> if_missing);

// The attention kinds the layers use (a RoPE dict per layer type must cover each).
std::vector<AttentionKind> attention_kinds_used(const std::vector<LayerSpec>& layers);

// Gives each layer the RoPE of its attention kind (none where that kind's dict is null), completed
// for the layer's head_dim.
void assign_rope(std::vector<LayerSpec>& layers, const RopeByType& rope, const ConfigReader& section,
                 const LayerOverrides& layer_config);

// HF's `head_dim**-0.5`, computed as Python does (pow, not 1/sqrt) so the double is bit-identical.
double inverse_sqrt(double x);

// Fails when a layer is sliding but has no window (HF would build a sliding layer without a bound).
void require_window_for_sliding(const ConfigReader& section, const LayerSpec& layer, const std::string& why);

// ---- Tensor names of the HF decoder layout (Llama, Mistral, Qwen, Gemma) ---------------------------
//   {prefix}embed_tokens.weight, {prefix}norm.weight, lm_head.weight,
//   {prefix}layers.{i}.input_layernorm.weight, .self_attn.{q,k,v,o}_proj.{weight,bias},
//   .self_attn.{q,k}_norm.weight, .mlp.{gate,up,down}_proj.{weight,bias}, and either
//   .post_attention_layernorm.weight (Llama: the norm before the MLP) or the Gemma sandwich
//   .post_attention_layernorm / .pre_feedforward_layernorm / .post_feedforward_layernorm.
struct DecoderNaming {
  bool qkv_bias = false;  // q/k/v projections carry a bias
  bool o_bias = false;    // the output projection carries a bias
  bool mlp_bias = false;  // gate/up/down carry a bias
  bool sandwich_norms = false;
};
// embed_tokens, final norm and LM head (tied: the embedding's name; else "lm_head.weight").
void name_decoder_model(ModelSpec& spec);
// Resets layer.tensors and fills the decoder names the layer's flags call for (no k/v/k_norm on a
// layer without k/v projections, no q/k norm without has_qk_norm).
void name_decoder_layer(const std::string& prefix, LayerSpec& layer, const DecoderNaming& naming);

}  // namespace graft::arch::detail
