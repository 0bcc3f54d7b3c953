// The architecture trait layer: from a HuggingFace config.json alone, every per-layer fact the
// forward pass, the KV cache, the editors and `graft info` need. Facts are computed once, at load,
// into a plain table (ModelSpec + one LayerSpec per layer); every other part of graft reads that
// table and never recomputes a width, a head size or a KV source.
//
// One class per family (arch/<family>.cpp) fills the table; the accessors below are shared.
// This layer knows no tensor values and no torch.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "arch/family.h"
#include "arch/tensor_roles.h"

namespace graft::arch {

enum class AttentionKind { Full, Sliding };
enum class NormKind { RMSNorm, LayerNorm };
// GeluTanh is gelu(x, approximate="tanh") (HF gelu_pytorch_tanh and GPT-2's gelu_new).
enum class Activation { SiLU, GeluTanh, Gelu, Relu };
enum class RopeKind { None, Default, Linear, Dynamic, Llama3, Proportional, Yarn };

const char* attention_kind_name(AttentionKind k);  // "sliding_attention" / "full_attention"
const char* rope_kind_name(RopeKind k);

struct RopeSpec {
  RopeKind kind = RopeKind::None;
  double theta = 10000.0;
  // The head size the rotation is laid over: dim j pairs with j + dim/2 (NeoX / HF rotate_half).
  int64_t dim = 0;
  // How many of the dim/2 frequencies are non-zero. dim/2 for ordinary RoPE; fewer for Gemma 4's
  // "proportional" partial RoPE, whose remaining frequencies are exactly 0 (those dims pass through).
  int64_t rotated_pairs = 0;
  double factor = 1.0;                           // linear / dynamic / llama3 / proportional divisor
  double low_freq_factor = 1.0;                  // llama3
  double high_freq_factor = 4.0;                 // llama3
  int64_t original_max_position_embeddings = 0;  // llama3 / dynamic / yarn
  double attention_scaling = 1.0;                // multiplies cos and sin (1 except for YaRN)
  double partial_rotary_factor = 1.0;
  // YaRN's correction range (HF _compute_yarn_parameters: beta_fast, beta_slow, truncate); the
  // interpolation/extrapolation blend is laid over `dim`, with `original_max_position_embeddings`.
  double yarn_beta_fast = 32.0;
  double yarn_beta_slow = 1.0;
  bool yarn_truncate = true;
};

struct MoESpec {
  int64_t num_experts = 0;  // 0: no MoE block
  int64_t top_k = 0;
  int64_t expert_width = 0;
  // The router's input is the weightless RMS norm of the residual times router_scale times this
  // (Gemma 4: hidden_size^-0.5).
  double router_input_scale = 1.0;
};

struct LayerSpec {
  int index = 0;
  AttentionKind attention = AttentionKind::Full;
  int64_t sliding_window = 0;  // 0 on full-attention layers; else a query sees keys in (q - W, q]
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int kv_source = 0;       // the layer whose K/V this layer reads (itself unless KV-shared)
  bool has_k_proj = true;  // false on KV-shared layers
  bool has_v_proj = true;  // false on KV-shared layers and on K == V layers
  bool k_eq_v = false;     // V = v_norm(raw k_proj output) (Gemma 4 full layers of 31B / 26B)
  bool has_qk_norm = false;
  bool has_v_norm = false;          // weightless RMS normalisation of V (Gemma 4)
  double attention_scale = 1.0;     // multiplies q.k
  double attn_logit_softcap = 0.0;  // 0: none (Gemma 2: 50)
  RopeSpec rope;
  int64_t mlp_width = 0;  // the true MLP width: input of the down projection
  MoESpec moe;
  bool has_per_layer_input = false;
  bool has_layer_scalar = false;
  LayerTensors tensors;  // HF names of every tensor role (arch/tensor_roles.h) this layer reads

  bool is_sliding() const { return attention == AttentionKind::Sliding; }
  bool is_kv_shared() const { return kv_source != index; }
};

struct ModelTensors {
  std::string embed_tokens;
  std::string position_embeddings;  // GPT-2 wpe
  NormNames final_norm;
  std::string lm_head;  // equals embed_tokens when tied
  // Gemma 4 per-layer embeddings (PLE).
  std::string ple_embed;             // embed_tokens_per_layer [V_ple, L * P]
  std::string ple_model_projection;  // [L * P, H]
  NormNames ple_projection_norm;     // [P]
};

struct ModelSpec {
  Family family = Family::Llama;
  std::string model_type;  // as in config.json ("gemma4_text", "llama", ...)
  std::string dtype;       // the checkpoint's declared dtype ("float32", "bfloat16", ...)
  int64_t hidden_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  NormKind norm_kind = NormKind::RMSNorm;
  double norm_eps = 1e-6;
  // RMSNorm weight is used as (offset + w): 1 on Gemma 2/3, 0 elsewhere.
  double norm_weight_offset = 0.0;
  // Llama-style RMSNorm casts the normalised activations to the input dtype before multiplying by
  // the weight; Gemma multiplies in float32 first.
  bool norm_casts_before_weight = false;
  Activation activation = Activation::SiLU;
  bool gated_mlp = true;             // down(act(gate(x)) * up(x)); GPT-2: down(act(up(x)))
  bool sandwich_norms = false;       // Gemma 2/3/4: post-attention and post-MLP norms
  double embed_scale = 1.0;          // Gemma: sqrt(hidden), rounded to the weight dtype before use
  double final_logit_softcap = 0.0;  // 0: none
  bool tie_word_embeddings = false;
  bool learned_positions = false;  // GPT-2
  // Gemma 4 per-layer embeddings: P = per_layer_input_size (0: none).
  int64_t per_layer_input_size = 0;
  int64_t per_layer_vocab_size = 0;
  // Each layer's P-wide input is (normed context part + token part) x per_layer_combine_scale: the
  // token part is its embedding row times per_layer_token_scale (rounded to the table's dtype, as
  // embed_scale is), the context part the projection of the scaled embeddings times
  // per_layer_projection_scale. Gemma 4: sqrt(P), hidden_size^-0.5 and 2^-0.5.
  double per_layer_token_scale = 1.0;
  double per_layer_projection_scale = 1.0;
  double per_layer_combine_scale = 1.0;
  std::optional<int64_t> bos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_ids;
  // Prompts start with BOS whether or not the tokenizer adds it (Gemma 2/3/4: the models need it, and
  // not every tokenizer of theirs adds it).
  bool always_prepend_bos = false;
  std::string weight_prefix;  // "model.", "model.language_model.", "transformer."
  // Other prefixes checkpoints of this model are known to be saved under (GPT-2 saved from GPT2Model:
  // ""; Gemma 3's legacy on-disk layout: "language_model.model."). See adopt_checkpoint_prefix.
  std::vector<std::string> alternative_weight_prefixes;
  ModelTensors tensors;
  std::vector<LayerSpec> layers;
};

// A tensor the model expects in its checkpoint, with its shape as the config implies.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

class Architecture {
 public:
  virtual ~Architecture() = default;

  // Reads `<model_dir>/config.json`. Errors (missing file, bad JSON, unknown model_type listing the
  // supported ones, inconsistent values) are InputError naming the file and key.
  static std::unique_ptr<Architecture> from_model_dir(const std::string& model_dir);
  static std::unique_ptr<Architecture> from_config_file(const std::string& config_path);
  // `source` names where the JSON came from, for error messages.
  static std::unique_ptr<Architecture> from_json(const nlohmann::json& config, const std::string& source);
  static std::vector<std::string> supported_model_types();

  Family family() const { return spec_.family; }
  const ModelSpec& spec() const { return spec_; }

  int num_layers() const { return static_cast<int>(spec_.layers.size()); }
  int64_t hidden_size() const { return spec_.hidden_size; }
  int64_t vocab_size() const { return spec_.vocab_size; }
  const LayerSpec& layer(int i) const;  // throws InputError naming the layer when out of range

  int64_t intermediate_size_for_layer(int i) const { return layer(i).mlp_width; }
  int64_t head_dim_for_layer(int i) const { return layer(i).head_dim; }
  int64_t num_q_heads_for_layer(int i) const { return layer(i).num_q_heads; }
  int64_t num_kv_heads_for_layer(int i) const { return layer(i).num_kv_heads; }
  int kv_source(int i) const { return layer(i).kv_source; }
  bool has_v_proj(int i) const { return layer(i).has_v_proj; }
  bool is_sliding(int i) const { return layer(i).is_sliding(); }
  int64_t sliding_window(int i) const { return layer(i).sliding_window; }
  const RopeSpec& rope_for_layer(int i) const { return layer(i).rope; }
  double attention_scale(int i) const { return layer(i).attention_scale; }
  bool has_per_layer_embeddings() const { return spec_.per_layer_input_size > 0; }
  // Whether what layer i writes at a position can still be read from a later position: some layer
  // above i computes its own K/V. A KV-shared layer reads K/V that layers below the first shared
  // one computed, so above the last such layer a position's state only reaches its own prediction.
  // InputError when i is out of range.
  bool later_layer_reads_positions(int i) const;
  // The tensor editors update: the MLP down projection of layer i (and its storage layout).
  const LinearNames& mlp_down_projection(int i) const { return layer(i).tensors[TensorRole::Down]; }

  // Every tensor the forward pass reads, with the shape the config implies. Tensors a checkpoint may
  // carry but this model never reads (k_proj on Gemma 4 KV-shared layers, ...) are not listed.
  std::vector<TensorSpec> expected_tensors() const;
  // Parameters of the tensors above, counting a tied LM head once.
  int64_t parameter_count() const;

  // Why a checkpoint tensor that expected_tensors() does not list is safe to ignore ("" when it is
  // not a known-unused tensor): k_proj/v_proj/k_norm of Gemma 4 KV-shared layers, GPT-2's causal-mask
  // buffers (h.N.attn.bias / masked_bias), rotary inv_freq buffers of old checkpoints, and a stored
  // lm_head.weight of a tied model.
  std::string known_unused_reason(const std::string& tensor_name) const;

  // Switches every tensor name to the prefix, among weight_prefix and alternative_weight_prefixes,
  // under which `checkpoint_tensor_names` holds the embedding table (the first tensor every model
  // reads). Returns false, changing nothing, when none does. A loader calls it once, before reading.
  bool adopt_checkpoint_prefix(const std::vector<std::string>& checkpoint_tensor_names);

 protected:
  // Fills every tensor name in spec_ from spec_.weight_prefix and the per-layer facts. Each family
  // calls it at the end of its constructor; adopt_checkpoint_prefix calls it again.
  virtual void assign_tensor_names() = 0;

  ModelSpec spec_;
};

}  // namespace graft::arch
