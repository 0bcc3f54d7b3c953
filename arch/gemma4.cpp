// Gemma 4 (HF Gemma4ForCausalLM for "gemma4_text", Gemma4ForConditionalGeneration for "gemma4";
// transformers 5.17). The numerics are in docs/gemma4-spec.md; this file states the facts.
//
// The block is Gemma 3's sandwich (norms before and after attention and MLP, GeGLU MLP, q_norm and
// k_norm before RoPE), with these differences:
// - RMSNorm multiplies by the weight as stored (no "1 +"), in float32 before casting back.
// - Attention is not scaled (scale 1.0): q_norm and k_norm fix the size of q and k. V is
//   RMS-normalised per head as well (v_norm, which has no weight).
// - Two kinds of layer (layer_types; by default 5 sliding then 1 full; the last layer is always
//   full, whatever the config says):
//     sliding: head_dim (256), num_key_value_heads, a window of sliding_window keys, RoPE "default"
//              (theta 1e4) over the whole head.
//     full:    a larger head (global_head_dim, 512), RoPE "proportional" (theta 1e6) whose first
//              partial_rotary_factor x head_dim / 2 frequencies rotate (64 of 256) and the rest are 0.
//              With attention_k_eq_v (31B, 26B-A4B) there is no v_proj: V is the raw k_proj output,
//              and these layers have num_global_key_value_heads KV heads.
// - KV sharing (E2B, E4B): the last num_kv_shared_layers layers compute no K or V (no k_proj, v_proj,
//   k_norm); each reads the K/V of the last earlier non-shared layer of its own type. With
//   use_double_wide_mlp those layers' MLP is twice intermediate_size.
// - Per-layer embeddings, PLE (E2B, E4B): with hidden_size_per_layer_input P > 0 (256 when the key
//   is missing; 0 or null: none) a second table [vocab_size_per_layer_input, num_layers * P] feeds
//   every layer a P-wide input, gated in and added to the residual after the MLP.
// - Every layer ends by multiplying the residual stream by its stored layer_scalar [1].
// - MoE (26B-A4B, enable_moe_block): beside the dense MLP, num_experts experts of width
//   moe_intermediate_size, top_k_experts per token, a router and three more norms.
// - Embeddings x sqrt(hidden_size); final logits soft-capped by final_logit_softcapping (30).
//
// Head sizes come in two spellings. Configs written before transformers 5.17 give the full layers'
// head as `global_head_dim` (and their KV heads as `num_global_key_value_heads`, used only with
// attention_k_eq_v); 5.17 writes `per_layer_config: {"5": {"head_dim": 512, ...}, ...}` for the same
// model, and then ignores global_head_dim. Both become per-layer overrides here.
//
// Config forms: "gemma4_text" holds everything at the top level, weights under "model."; the
// multimodal "gemma4" wrapper nests it under text_config, weights under "model.language_model.".
#include <cmath>

#include "arch/families.h"

namespace graft::arch::detail {
namespace {

using nlohmann::json;

class Gemma4Architecture : public Architecture {
 public:
  explicit Gemma4Architecture(const ConfigReader& file);

 private:
  // `file` is the whole config.json, `config` the text part (the file itself, or its text_config).
  void read_model_facts(const ConfigReader& file, const ConfigReader& config, bool multimodal);
  void read_layers(const ConfigReader& config);
  void assign_tensor_names() override;
  DecoderNaming naming_;
};

// Gemma4TextConfig.__post_init__: 5 sliding then 1 full by default, and the last layer is forced to
// full attention (HF warns and overrides).
std::vector<AttentionKind> gemma4_layer_types(const ConfigReader& config, int num_layers) {
  std::vector<AttentionKind> kinds;
  if (auto given = read_layer_types(config, num_layers)) {
    kinds = *given;
  } else {
    for (int i = 0; i < num_layers; ++i) kinds.push_back((i + 1) % 6 ? AttentionKind::Sliding : AttentionKind::Full);
  }
  kinds.back() = AttentionKind::Full;
  return kinds;
}

// The pre-5.17 spelling: without per_layer_config, every full layer gets head_dim = global_head_dim
// (512 when the key is missing) and, with attention_k_eq_v, num_global_key_value_heads KV heads.
// A null or 0 global_head_dim means head_dim, as in the transformers releases that wrote it (5.17
// itself would fail on null).
void add_global_head_overrides(const ConfigReader& config, const std::vector<AttentionKind>& kinds,
                               LayerOverrides& layer_config) {
  if (layer_config.given()) return;  // 5.17: per_layer_config wins; global_head_dim is ignored
  std::optional<int64_t> head_dim = config.contains("global_head_dim") ? config.optional_int("global_head_dim")
                                                                       : std::optional<int64_t>(512);
  if (head_dim == 0) head_dim = std::nullopt;
  std::optional<int64_t> kv_heads;
  if (config.get_bool("attention_k_eq_v", false)) kv_heads = config.optional_int("num_global_key_value_heads");
  for (size_t i = 0; i < kinds.size(); ++i) {
    if (kinds[i] != AttentionKind::Full) continue;
    const int layer = static_cast<int>(i);
    if (head_dim) layer_config.set(layer, "head_dim", *head_dim, config.key_path("global_head_dim"));
    if (kv_heads)
      layer_config.set(layer, "num_key_value_heads", *kv_heads, config.key_path("num_global_key_value_heads"));
  }
}

// KV sharing: layers i >= first_shared = L - num_kv_shared_layers reuse the K/V of the last layer
// before first_shared that has their layer type (HF Gemma4TextAttention: store_full_length_kv on that
// layer, shared_kv_states[layer_type] on the readers). Returns each layer's kv_source.
std::vector<int> kv_sources(const ConfigReader& config, const std::vector<AttentionKind>& kinds) {
  const int num_layers = static_cast<int>(kinds.size());
  const std::string key = "num_kv_shared_layers";
  const int64_t shared = config.get_int(key, 0);
  // All layers shared would leave no layer to compute K/V (HF fails there too).
  config.check_range(config.key_path(key), shared, 0, num_layers - 1);
  const int first_shared = num_layers - static_cast<int>(shared);

  std::vector<int> source(kinds.size());
  for (int i = 0; i < num_layers; ++i) {
    source[static_cast<size_t>(i)] = i;
    if (i < first_shared) continue;
    int donor = first_shared - 1;
    while (donor >= 0 && kinds[static_cast<size_t>(donor)] != kinds[static_cast<size_t>(i)]) --donor;
    if (donor < 0) {
      config.fail_key(key, "makes layer " + std::to_string(i) + " (" +
                               attention_kind_name(kinds[static_cast<size_t>(i)]) +
                               ") KV-shared, but no layer before layer " + std::to_string(first_shared) +
                               " has that type to share its K/V");
    }
    source[static_cast<size_t>(i)] = donor;
  }
  return source;
}

// A KV-shared layer attends with its donor's K/V, so their heads must have the same shape.
void check_same_kv_shape(const ConfigReader& config, const LayerOverrides& layer_config, const LayerSpec& reader,
                         const LayerSpec& donor) {
  if (reader.head_dim == donor.head_dim && reader.num_kv_heads == donor.num_kv_heads) return;
  auto shape = [](const LayerSpec& l) { return std::to_string(l.num_kv_heads) + " x " + std::to_string(l.head_dim); };
  const char* key = reader.head_dim != donor.head_dim ? "head_dim" : "num_key_value_heads";
  config.fail_at(layer_config.key_path(reader.index, key),
                 "gives layer " + std::to_string(reader.index) + " a K/V shape (" + shape(reader) +
                     ") other than that of layer " + std::to_string(donor.index) + " (" + shape(donor) +
                     "), whose K/V it reads");
}

// hidden_size_per_layer_input: the code tests `if config.hidden_size_per_layer_input:`, so 0 and
// null disable PLE, while a missing key means the class default 256.
int64_t per_layer_input_size(const ConfigReader& config) {
  const std::string key = "hidden_size_per_layer_input";
  if (!config.contains(key)) return 256;
  return config.check_range(config.key_path(key), config.get_int(key, 0), 0, kMaxDimension);
}

// enable_moe_block: the three MoE sizes have no defaults (None in HF) and must then be given.
MoESpec read_moe(const ConfigReader& config, int64_t hidden_size) {
  MoESpec moe;
  if (!config.get_bool("enable_moe_block", false)) return moe;
  for (const char* key : {"num_experts", "top_k_experts", "moe_intermediate_size"}) {
    if (!config.has_value(key)) config.fail_key(key, "is missing; enable_moe_block needs it");
  }
  moe.num_experts = config.require_dimension("num_experts");
  moe.top_k = config.check_range(config.key_path("top_k_experts"), config.require_int("top_k_experts"), 1,
                                 moe.num_experts);
  moe.expert_width = config.require_dimension("moe_intermediate_size");
  // Gemma4TextRouter: norm(x) * scale * hidden_size**-0.5.
  moe.router_input_scale = inverse_sqrt(static_cast<double>(hidden_size));
  return moe;
}

// use_bidirectional_attention: null (causal) and "vision" (bidirectional within an image, nothing
// for text) are fine; "all" makes the whole model non-causal, which graft does not run.
void check_causal(const ConfigReader& config) {
  const std::string key = "use_bidirectional_attention";
  std::optional<std::string> mode = config.optional_string(key);
  if (!mode || *mode == "vision") return;
  if (*mode == "all") config.fail_key(key, "is \"all\": bidirectional (non-causal) Gemma 4 is not supported");
  config.fail_key(key, "is " + describe_json(*mode) + "; expected null, \"vision\" or \"all\"");
}

// rope_parameters: one dict per layer type; missing or null means the released defaults. HF has no
// flat form for Gemma 4 (its rotary module indexes rope_parameters by layer type). A missing
// rope_theta falls back to a top-level rope_theta (HF standardize_rope_params), else it is an error.
RopeByType gemma4_rope(const ConfigReader& config, const RopeContext& context, const std::vector<AttentionKind>& used) {
  static const json kDefault = {
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
      {"full_attention", {{"rope_type", "proportional"}, {"partial_rotary_factor", 0.25}, {"rope_theta", 1000000.0}}},
  };
  std::optional<ConfigReader> params = config.optional_section("rope_parameters");
  if (!params) params = ConfigReader(kDefault, config.source(), config.key_path("rope_parameters."));
  if (!params->contains("full_attention") && !params->contains("sliding_attention")) {
    config.fail_key("rope_parameters", "must hold one dict per layer type (\"sliding_attention\", \"full_attention\")");
  }
  const std::optional<double> theta_fallback = config.optional_double("rope_theta");
  RopeByType out;
  for (AttentionKind kind : used) {
    const std::string type = attention_kind_name(kind);
    if (!params->contains(type)) params->fail_key(type, "is missing, and layer_types uses " + type);
    std::optional<ConfigReader> dict = params->optional_section(type);  // null: these layers use no RoPE
    if (dict) (kind == AttentionKind::Full ? out.full : out.sliding) = parse_rope_dict(*dict, theta_fallback, context);
  }
  return out;
}

Gemma4Architecture::Gemma4Architecture(const ConfigReader& file) {
  const bool multimodal = file.require_string("model_type") == "gemma4";
  const ConfigReader config = multimodal ? file.section("text_config") : file;
  read_model_facts(file, config, multimodal);
  read_layers(config);
  assign_tensor_names();
}

void Gemma4Architecture::read_model_facts(const ConfigReader& file, const ConfigReader& config, bool multimodal) {
  ModelSpec& s = spec_;
  s.family = Family::Gemma4;
  s.model_type = file.require_string("model_type");
  s.dtype = read_dtype(config, file);
  s.hidden_size = config.require_dimension("hidden_size");
  s.vocab_size = config.require_dimension("vocab_size");
  s.max_position_embeddings = config.get_dimension("max_position_embeddings", 131072);
  s.norm_kind = NormKind::RMSNorm;
  s.norm_eps = config.get_double("rms_norm_eps", 1e-6);
  s.norm_weight_offset = 0.0;
  s.norm_casts_before_weight = false;
  s.activation = read_activation(config, "hidden_activation", "gelu_pytorch_tanh");
  s.gated_mlp = true;
  s.sandwich_norms = true;
  s.embed_scale = std::sqrt(static_cast<double>(s.hidden_size));
  s.final_logit_softcap = read_softcap(config, "final_logit_softcapping", 0.0);
  // The wrapper (ForConditionalGeneration) ties its LM head by the top-level key (default true) and
  // ignores text_config's: transformers then saves no lm_head.weight even when text_config says false.
  s.tie_word_embeddings = multimodal ? file.get_bool("tie_word_embeddings", true)
                                     : config.get_bool("tie_word_embeddings", true);
  read_token_ids(config, {/*bos=*/2, /*pad=*/0, /*eos=*/{1}}, s);
  s.always_prepend_bos = true;
  s.weight_prefix = multimodal ? "model.language_model." : "model.";
  s.per_layer_input_size = per_layer_input_size(config);
  if (s.per_layer_input_size > 0) {
    s.per_layer_vocab_size = config.get_dimension("vocab_size_per_layer_input", 262144);
    // HF Gemma4TextModel: embed_tokens_per_layer scales by P**0.5, per_layer_model_projection's
    // output by hidden_size**-0.5, and their sum by 2**-0.5 (docs/gemma4-spec.md, section 2.2).
    s.per_layer_token_scale = std::sqrt(static_cast<double>(s.per_layer_input_size));
    s.per_layer_projection_scale = inverse_sqrt(static_cast<double>(s.hidden_size));
    s.per_layer_combine_scale = inverse_sqrt(2.0);
  }

  check_causal(config);
  naming_.qkv_bias = naming_.o_bias = config.get_bool("attention_bias", false);
  naming_.sandwich_norms = true;
}

void Gemma4Architecture::read_layers(const ConfigReader& config) {
  ModelSpec& s = spec_;
  const int num_layers = read_num_layers(config);
  const int64_t num_heads = config.require_dimension("num_attention_heads");
  const int64_t intermediate = config.require_dimension("intermediate_size");
  const int64_t head_dim = config.get_dimension("head_dim", 256);
  const bool k_eq_v = config.get_bool("attention_k_eq_v", false);
  const bool double_wide_mlp = config.get_bool("use_double_wide_mlp", false);
  const MoESpec moe = read_moe(config, s.hidden_size);
  const std::vector<AttentionKind> kinds = gemma4_layer_types(config, num_layers);
  LayerOverrides layer_config(config, num_layers,
                              {"head_dim", "num_key_value_heads", "num_attention_heads", "intermediate_size",
                               "sliding_window"});
  add_global_head_overrides(config, kinds, layer_config);
  const std::vector<int> source = kv_sources(config, kinds);

  for (int i = 0; i < num_layers; ++i) {
    LayerSpec l;
    l.index = i;

    // Attention: the layer's kind, window and head shape; no scaling (q_norm/k_norm set it).
    l.attention = kinds[static_cast<size_t>(i)];
    if (l.is_sliding()) l.sliding_window = read_sliding_window(layer_config, config, i, 512).value_or(0);
    require_window_for_sliding(config, l, "layer_types or the 5:1 default makes it sliding");
    const AttentionShape a = read_attention_shape(layer_config, config, i, num_heads, head_dim, 4);
    l.num_q_heads = a.q_heads;
    l.num_kv_heads = a.kv_heads;
    l.head_dim = a.head_dim;
    l.attention_scale = 1.0;

    // Where K and V come from: computed here (k_proj, then v_proj or K == V), or read from kv_source.
    l.kv_source = source[static_cast<size_t>(i)];
    const bool shared = l.is_kv_shared();
    if (shared) check_same_kv_shape(config, layer_config, l, s.layers[static_cast<size_t>(l.kv_source)]);
    l.has_k_proj = !shared;
    l.k_eq_v = !shared && k_eq_v && !l.is_sliding();
    l.has_v_proj = !shared && !l.k_eq_v;
    l.has_qk_norm = true;  // q_norm on every layer; k_norm only where K is computed (has_k_proj)
    l.has_v_norm = !shared;

    // MLP (twice as wide on KV-shared layers with use_double_wide_mlp), MoE beside it, PLE, scalar.
    const int64_t width = layer_config.get_dimension(i, "intermediate_size", intermediate);
    l.mlp_width = shared && double_wide_mlp ? 2 * width : width;
    l.moe = moe;
    l.has_per_layer_input = s.per_layer_input_size > 0;
    l.has_layer_scalar = true;
    s.layers.push_back(l);
  }

  RopeContext rope_context;
  rope_context.max_position_embeddings = s.max_position_embeddings;
  rope_context.partial_rotary_factor = config.optional_double("partial_rotary_factor");
  assign_rope(s.layers, gemma4_rope(config, rope_context, attention_kinds_used(s.layers)), config, layer_config);
}

void Gemma4Architecture::assign_tensor_names() {
  ModelSpec& s = spec_;
  name_decoder_model(s);
  if (s.per_layer_input_size > 0) {
    s.tensors.ple_embed = s.weight_prefix + "embed_tokens_per_layer.weight";
    s.tensors.ple_model_projection = s.weight_prefix + "per_layer_model_projection.weight";
    s.tensors.ple_projection_norm.weight = s.weight_prefix + "per_layer_projection_norm.weight";
  }
  for (LayerSpec& l : s.layers) {
    name_decoder_layer(s.weight_prefix, l, naming_);
    const std::string base = s.weight_prefix + "layers." + std::to_string(l.index) + ".";
    using R = TensorRole;
    LayerTensors& t = l.tensors;
    if (l.moe.num_experts > 0) {
      t[R::RouterProj].weight = base + "router.proj.weight";
      t[R::RouterScale].weight = base + "router.scale";
      t[R::RouterPerExpertScale].weight = base + "router.per_expert_scale";
      t[R::ExpertsGateUp].weight = base + "experts.gate_up_proj";
      t[R::ExpertsDown].weight = base + "experts.down_proj";
      // The dense MLP's output norm is post_feedforward_layernorm_1, the experts' input and output
      // norms are pre_/post_feedforward_layernorm_2; post_feedforward_layernorm (mlp_post_norm)
      // then normalises their sum.
      t[R::MoePreNorm].weight = base + "pre_feedforward_layernorm_2.weight";
      t[R::DensePostNorm].weight = base + "post_feedforward_layernorm_1.weight";
      t[R::MoePostNorm].weight = base + "post_feedforward_layernorm_2.weight";
    }
    if (l.has_per_layer_input) {
      t[R::PleGate].weight = base + "per_layer_input_gate.weight";
      t[R::PleProjection].weight = base + "per_layer_projection.weight";
      t[R::PlePostNorm].weight = base + "post_per_layer_input_norm.weight";
    }
    t[R::LayerScalar].weight = base + "layer_scalar";
  }
}

}  // namespace

std::unique_ptr<Architecture> make_gemma4(const ConfigReader& config) {
  return std::make_unique<Gemma4Architecture>(config);
}

}  // namespace graft::arch::detail
