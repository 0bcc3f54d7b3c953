// The shared half of the architecture layer: enum names, the accessors, the tensor list every
// family's table implies, the model_type registry, and the facts and names several families read the
// same way (declared in arch/families.h). The family files fill the table; nothing here knows a family
// beyond the switch in known_unused_reason.
#include "arch/arch.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "arch/config_reader.h"
#include "arch/families.h"
#include "core/error.h"

namespace graft::arch {

using nlohmann::json;

// ---- Names ---------------------------------------------------------------------------------------

const char* family_name(Family f) {
  switch (f) {
    case Family::Llama: return "llama";
    case Family::Mistral: return "mistral";
    case Family::Qwen2: return "qwen2";
    case Family::Qwen3: return "qwen3";
    case Family::Gemma2: return "gemma2";
    case Family::Gemma3: return "gemma3";
    case Family::Gemma4: return "gemma4";
    case Family::GPT2: return "gpt2";
  }
  return "unknown";
}

const char* attention_kind_name(AttentionKind k) {
  return k == AttentionKind::Sliding ? "sliding_attention" : "full_attention";
}

const char* rope_kind_name(RopeKind k) {
  switch (k) {
    case RopeKind::None: return "none";
    case RopeKind::Default: return "default";
    case RopeKind::Linear: return "linear";
    case RopeKind::Dynamic: return "dynamic";
    case RopeKind::Llama3: return "llama3";
    case RopeKind::Proportional: return "proportional";
    case RopeKind::Yarn: return "yarn";
  }
  return "unknown";
}

// ---- Accessors -----------------------------------------------------------------------------------

const LayerSpec& Architecture::layer(int i) const {
  if (i < 0 || i >= num_layers()) {
    throw InputError("layer " + std::to_string(i) + " is out of range: this " + family_name(spec_.family) +
                     " model has " + std::to_string(num_layers()) + " layers (0.." + std::to_string(num_layers() - 1) +
                     ")");
  }
  return spec_.layers[static_cast<size_t>(i)];
}

bool Architecture::later_layer_reads_positions(int i) const {
  const auto above = spec_.layers.begin() + layer(i).index + 1;
  return std::any_of(above, spec_.layers.end(), [](const LayerSpec& l) { return !l.is_kv_shared(); });
}

// ---- Expected tensors ----------------------------------------------------------------------------

namespace {

// Shapes come from config sizes, each at most kMaxDimension; products are still checked so that no
// config, however odd, can overflow. from_json calls expected_tensors() once, so an overflow surfaces
// there as an InputError and never later.
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw InputError("the sizes in this config imply a tensor larger than 2^63 elements");
  return r;
}
int64_t checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) throw InputError("the sizes in this config imply more than 2^63 parameters");
  return r;
}

class TensorList {
 public:
  void add(const std::string& name, std::vector<int64_t> shape) {
    if (name.empty() || !seen_.insert(name).second) return;  // absent tensor, or a tied one already listed
    for (int64_t d : shape) checked_mul(d, 1);
    out_.push_back({name, std::move(shape)});
  }
  void norm(const NormNames& n, int64_t dim) {
    add(n.weight, {dim});
    add(n.bias, {dim});
  }
  // torch.nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out]. The bias is [out] either way.
  void linear(const LinearNames& l, int64_t out_features, int64_t in_features) {
    if (l.weight.empty()) return;
    add(l.weight, l.layout == WeightLayout::OutIn ? std::vector<int64_t>{out_features, in_features}
                                                  : std::vector<int64_t>{in_features, out_features});
    add(l.bias, {out_features});
  }
  // One role of a layer, shaped as its row of kTensorRoles says (`shape` in the table's order).
  void role(const TensorRoleInfo& role, const TensorNames& names, const std::vector<int64_t>& shape) {
    switch (role.binding) {
      case TensorBinding::Norm: return norm(names, shape[0]);
      case TensorBinding::Linear: return linear(names, shape[0], shape[1]);
      case TensorBinding::Plain: return add(names.weight, shape);
    }
  }
  std::vector<TensorSpec> take() { return std::move(out_); }

 private:
  std::vector<TensorSpec> out_;
  std::set<std::string> seen_;
};

int64_t dimension(TensorDim dim, const ModelSpec& spec, const LayerSpec& layer) {
  switch (dim) {
    case TensorDim::Hidden: return spec.hidden_size;
    case TensorDim::HeadDim: return layer.head_dim;
    case TensorDim::QWidth: return checked_mul(layer.num_q_heads, layer.head_dim);
    case TensorDim::KVWidth: return checked_mul(layer.num_kv_heads, layer.head_dim);
    case TensorDim::QKVWidth:
      return checked_add(checked_mul(layer.num_q_heads, layer.head_dim),
                         checked_mul(2, checked_mul(layer.num_kv_heads, layer.head_dim)));
    case TensorDim::MlpWidth: return layer.mlp_width;
    case TensorDim::PerLayerInput: return spec.per_layer_input_size;
    case TensorDim::Experts: return layer.moe.num_experts;
    case TensorDim::ExpertWidth: return layer.moe.expert_width;
    case TensorDim::GateUpWidth: return checked_mul(2, layer.moe.expert_width);
    case TensorDim::One: return 1;
  }
  return 0;
}

std::vector<int64_t> role_shape(const TensorRoleInfo& role, const ModelSpec& spec, const LayerSpec& layer) {
  std::vector<int64_t> shape;
  for (int i = 0; i < role.shape.rank; ++i)
    shape.push_back(dimension(role.shape.dims[static_cast<size_t>(i)], spec, layer));
  return shape;
}

// The layer's tensors in role order; a role the layer does not name is skipped.
void add_layer_tensors(TensorList& list, const ModelSpec& spec, const LayerSpec& layer) {
  for (const TensorRoleInfo& role : kTensorRoles) {
    const TensorNames& names = layer.tensors[role.role];
    if (names.weight.empty() && names.bias.empty()) continue;
    list.role(role, names, role_shape(role, spec, layer));
  }
}

}  // namespace

std::vector<TensorSpec> Architecture::expected_tensors() const {
  const ModelSpec& s = spec_;
  const ModelTensors& t = s.tensors;
  TensorList list;
  list.add(t.embed_tokens, {s.vocab_size, s.hidden_size});
  list.add(t.position_embeddings, {s.max_position_embeddings, s.hidden_size});
  if (s.per_layer_input_size > 0) {
    const int64_t packed = checked_mul(static_cast<int64_t>(s.layers.size()), s.per_layer_input_size);
    list.add(t.ple_embed, {s.per_layer_vocab_size, packed});
    list.add(t.ple_model_projection, {packed, s.hidden_size});
    list.norm(t.ple_projection_norm, s.per_layer_input_size);
  }
  for (const LayerSpec& layer : s.layers) add_layer_tensors(list, s, layer);
  list.norm(t.final_norm, s.hidden_size);
  list.add(t.lm_head, {s.vocab_size, s.hidden_size});  // skipped when tied: same name as embed_tokens
  return list.take();
}

int64_t Architecture::parameter_count() const {
  int64_t total = 0;
  for (const TensorSpec& tensor : expected_tensors()) {
    int64_t n = 1;
    for (int64_t d : tensor.shape) n = checked_mul(n, d);
    total = checked_add(total, n);
  }
  return total;
}

// ---- Checkpoint prefixes and known-unused tensors ------------------------------------------------

namespace {

// "{prefix}layers.12.self_attn.k_proj.weight" -> (12, "self_attn.k_proj.weight").
std::optional<std::pair<int, std::string>> split_layer_name(const std::string& name, const std::string& layers_prefix) {
  if (name.compare(0, layers_prefix.size(), layers_prefix) != 0) return std::nullopt;
  size_t pos = layers_prefix.size(), end = pos;
  while (end < name.size() && end - pos < 9 && name[end] >= '0' && name[end] <= '9') ++end;
  if (end == pos || end >= name.size() || name[end] != '.') return std::nullopt;
  return std::make_pair(std::stoi(name.substr(pos, end - pos)), name.substr(end + 1));
}

}  // namespace

std::string Architecture::known_unused_reason(const std::string& name) const {
  const ModelTensors& t = spec_.tensors;
  if (spec_.tie_word_embeddings && name != t.embed_tokens && name.size() >= 14 &&
      name.compare(name.size() - 14, 14, "lm_head.weight") == 0) {
    return "the LM head is tied to the embedding table (tie_word_embeddings), so a stored copy is not read";
  }
  const bool gpt2 = spec_.family == Family::GPT2;
  auto split = split_layer_name(name, spec_.weight_prefix + (gpt2 ? "h." : "layers."));
  if (!split || split->first >= num_layers()) return "";
  const auto& [index, rest] = *split;
  const LayerSpec& l = spec_.layers[static_cast<size_t>(index)];
  if (gpt2 && (rest == "attn.bias" || rest == "attn.masked_bias")) {
    return "GPT-2's causal-mask buffer, saved by older transformers; HF ignores it (_keys_to_ignore_on_load_unexpected)";
  }
  if (!gpt2 && rest == "self_attn.rotary_emb.inv_freq") {
    return "a RoPE frequency buffer saved by older transformers; RoPE is computed from the config";
  }
  static const std::set<std::string> kSharedLayerKV = {"self_attn.k_proj.weight", "self_attn.k_proj.bias",
                                                       "self_attn.v_proj.weight", "self_attn.v_proj.bias",
                                                       "self_attn.k_norm.weight", "self_attn.v_norm.weight"};
  if (l.is_kv_shared() && kSharedLayerKV.count(rest)) {
    return "layer " + std::to_string(index) + " is KV-shared and reads layer " + std::to_string(l.kv_source) +
           "'s keys and values; HF drops its own (_keys_to_ignore_on_load_unexpected)";
  }
  return "";
}

bool Architecture::adopt_checkpoint_prefix(const std::vector<std::string>& checkpoint_tensor_names) {
  const std::set<std::string> present(checkpoint_tensor_names.begin(), checkpoint_tensor_names.end());
  const std::string embed = spec_.tensors.embed_tokens.substr(spec_.weight_prefix.size());
  std::vector<std::string> candidates = {spec_.weight_prefix};
  candidates.insert(candidates.end(), spec_.alternative_weight_prefixes.begin(),
                    spec_.alternative_weight_prefixes.end());
  for (const std::string& prefix : candidates) {
    if (!present.count(prefix + embed)) continue;
    if (prefix != spec_.weight_prefix) {
      spec_.alternative_weight_prefixes.clear();
      for (const std::string& other : candidates) {
        if (other != prefix) spec_.alternative_weight_prefixes.push_back(other);
      }
      spec_.weight_prefix = prefix;
      assign_tensor_names();
    }
    return true;
  }
  return false;
}

// ---- Registry and loading ------------------------------------------------------------------------

namespace {

using Factory = std::unique_ptr<Architecture> (*)(const ConfigReader&);

struct Registration {
  const char* model_type;
  Factory make;
};

// model_type -> family file. A multimodal wrapper ("gemma3", "gemma4") and its text-only config
// ("gemma3_text", "gemma4_text") go to the same family, which reads the text part either way.
const std::vector<Registration>& registry() {
  static const std::vector<Registration> kRegistry = {
      {"gemma2", detail::make_gemma2}, {"gemma3", detail::make_gemma3},      {"gemma3_text", detail::make_gemma3},
      {"gemma4", detail::make_gemma4}, {"gemma4_text", detail::make_gemma4}, {"gpt2", detail::make_gpt2},
      {"llama", detail::make_llama},   {"mistral", detail::make_mistral},    {"qwen2", detail::make_qwen2},
      {"qwen3", detail::make_qwen3},
  };
  return kRegistry;
}

std::string supported_list() {
  std::string out;
  for (const std::string& t : Architecture::supported_model_types()) out += (out.empty() ? "" : ", ") + t;
  return out;
}

}  // namespace

std::vector<std::string> Architecture::supported_model_types() {
  std::vector<std::string> types;
  for (const Registration& r : registry()) types.emplace_back(r.model_type);
  std::sort(types.begin(), types.end());
  return types;
}

std::unique_ptr<Architecture> Architecture::from_json(const json& config, const std::string& source) {
  const ConfigReader file(config, source);
  if (!file.has_value("model_type")) file.fail("\"model_type\" is missing; supported: " + supported_list());
  const std::string model_type = file.require_string("model_type");
  const auto& reg = registry();
  auto it = std::find_if(reg.begin(), reg.end(), [&](const Registration& r) { return model_type == r.model_type; });
  if (it == reg.end()) file.fail("model_type \"" + model_type + "\" is not supported; supported: " + supported_list());

  std::unique_ptr<Architecture> arch = it->make(file);
  try {
    arch->parameter_count();  // walks every shape once: an overflow is an error now, never later
  } catch (const InputError& e) {
    file.fail(e.what());
  }
  return arch;
}

std::unique_ptr<Architecture> Architecture::from_config_file(const std::string& config_path) {
  const std::string label = "config.json (" + config_path + "): ";
  std::error_code ec;
  if (!std::filesystem::exists(config_path, ec)) throw InputError(label + "file not found");
  if (std::filesystem::is_directory(config_path, ec)) throw InputError(label + "is a directory, not a file");
  std::ifstream in(config_path, std::ios::binary);
  if (!in) throw InputError(label + "cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  json config;
  try {
    config = json::parse(text.str());
  } catch (const json::exception& e) {
    throw InputError(label + "invalid JSON: " + e.what());
  }
  return from_json(config, config_path);
}

std::unique_ptr<Architecture> Architecture::from_model_dir(const std::string& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec)) throw InputError("model directory not found: " + model_dir);
  return from_config_file((std::filesystem::path(model_dir) / "config.json").string());
}

// ---- Facts several families read the same way ----------------------------------------------------

namespace detail {

int read_num_layers(const ConfigReader& section, const std::string& key) {
  return static_cast<int>(section.check_range(section.key_path(key), section.require_int(key), 1, kMaxLayers));
}

std::optional<std::vector<AttentionKind>> read_layer_types(const ConfigReader& section, int num_layers) {
  std::optional<std::vector<std::string>> names = section.optional_string_list("layer_types");
  if (!names) return std::nullopt;
  if (names->size() != static_cast<size_t>(num_layers)) {
    section.fail_key("layer_types", "has " + std::to_string(names->size()) + " entries, but num_hidden_layers is " +
                                        std::to_string(num_layers));
  }
  std::vector<AttentionKind> kinds;
  kinds.reserve(names->size());
  for (size_t i = 0; i < names->size(); ++i) {
    const std::string& n = (*names)[i];
    if (n == "full_attention") {
      kinds.push_back(AttentionKind::Full);
    } else if (n == "sliding_attention") {
      kinds.push_back(AttentionKind::Sliding);
    } else {
      section.fail_at(section.key_path("layer_types") + "[" + std::to_string(i) + "]",
                      "is " + describe_json(n) + "; supported layer types: full_attention, sliding_attention");
    }
  }
  return kinds;
}

Activation read_activation(const ConfigReader& section, const std::string& key, const std::string& fallback) {
  const std::string name = section.get_string(key, fallback);
  // HF ACT2FN: gelu_new (GPT-2) and gelu_pytorch_tanh are the same tanh approximation.
  if (name == "silu" || name == "swish") return Activation::SiLU;
  if (name == "gelu_pytorch_tanh" || name == "gelu_new") return Activation::GeluTanh;
  if (name == "gelu") return Activation::Gelu;
  if (name == "relu") return Activation::Relu;
  section.fail_key(key, "is " + describe_json(name) +
                            "; supported activations: silu, swish, gelu, gelu_new, gelu_pytorch_tanh, relu");
}

std::string read_dtype(const ConfigReader& section, const ConfigReader& file) {
  for (const ConfigReader* r : {&section, &file}) {
    for (const char* key : {"dtype", "torch_dtype"}) {
      if (std::optional<std::string> d = r->optional_string(key)) return *d;
    }
  }
  return "";
}

void read_token_ids(const ConfigReader& section, const TokenIdDefaults& defaults, ModelSpec& spec) {
  spec.bos_token_id = section.contains("bos_token_id") ? section.optional_int("bos_token_id") : defaults.bos;
  spec.pad_token_id = section.contains("pad_token_id") ? section.optional_int("pad_token_id") : defaults.pad;
  spec.eos_token_ids = section.contains("eos_token_id") ? section.int_or_int_list("eos_token_id") : defaults.eos;
}

double read_softcap(const ConfigReader& section, const std::string& key, double if_missing) {
  if (!section.contains(key)) return if_missing;
  const double v = section.get_double(key, 0.0);
  if (v < 0) section.fail_key(key, "must be positive (or null for none), got " + std::to_string(v));
  return v;
}

int64_t derived_head_dim(const ConfigReader& section, int64_t hidden_size, int64_t num_heads,
                         const std::string& hidden_key, const std::string& heads_key) {
  if (hidden_size % num_heads != 0) {
    section.fail_key(hidden_key, "(" + std::to_string(hidden_size) + ") is not a multiple of \"" +
                                     section.key_path(heads_key) + "\" (" + std::to_string(num_heads) + ")");
  }
  return hidden_size / num_heads;
}

AttentionShape read_attention_shape(const LayerOverrides& layer_config, const ConfigReader& section, int layer,
                                    int64_t num_heads, int64_t head_dim_fallback,
                                    std::optional<int64_t> kv_heads_if_missing) {
  AttentionShape shape;
  shape.q_heads = layer_config.get_dimension(layer, "num_attention_heads", num_heads);
  // A missing key takes the class default; null (and no default) means one KV head per query head.
  const int64_t kv_fallback = section.contains("num_key_value_heads") ? shape.q_heads
                                                                      : kv_heads_if_missing.value_or(shape.q_heads);
  shape.kv_heads = layer_config.get_dimension(layer, "num_key_value_heads", kv_fallback);
  shape.head_dim = layer_config.get_dimension(layer, "head_dim", head_dim_fallback);

  if (shape.q_heads % shape.kv_heads != 0) {
    section.fail_at(layer_config.key_path(layer, "num_attention_heads"),
                    "(" + std::to_string(shape.q_heads) + ") must be a multiple of \"" +
                        layer_config.key_path(layer, "num_key_value_heads") + "\" (" + std::to_string(shape.kv_heads) +
                        "): each KV head serves a whole group of query heads");
  }
  // Both factors are below 2^31, so the product cannot overflow.
  if (shape.q_heads * shape.head_dim > kMaxDimension) {
    section.fail_at(layer_config.key_path(layer, "head_dim"),
                    "times num_attention_heads (" + std::to_string(shape.q_heads) + " x " +
                        std::to_string(shape.head_dim) + ") exceeds " + std::to_string(kMaxDimension));
  }
  return shape;
}

std::optional<int64_t> read_sliding_window(const LayerOverrides& layer_config, const ConfigReader& section, int layer,
                                           std::optional<int64_t> if_missing) {
  std::optional<int64_t> w = layer_config.optional_int(layer, "sliding_window", if_missing);
  if (w) section.check_range(layer_config.key_path(layer, "sliding_window"), *w, 1, kMaxDimension);
  return w;
}

std::vector<AttentionKind> attention_kinds_used(const std::vector<LayerSpec>& layers) {
  std::vector<AttentionKind> kinds;
  for (const LayerSpec& l : layers) {
    if (std::find(kinds.begin(), kinds.end(), l.attention) == kinds.end()) kinds.push_back(l.attention);
  }
  return kinds;
}

void assign_rope(std::vector<LayerSpec>& layers, const RopeByType& rope, const ConfigReader& section,
                 const LayerOverrides& layer_config) {
  for (LayerSpec& l : layers) {
    l.rope = rope_for_head_dim(rope.of(l.attention).value_or(RopeSpec{}), l.head_dim, section,
                               layer_config.key_path(l.index, "head_dim"));
  }
}

double inverse_sqrt(double x) { return std::pow(x, -0.5); }

void require_window_for_sliding(const ConfigReader& section, const LayerSpec& layer, const std::string& why) {
  if (layer.is_sliding() && layer.sliding_window <= 0) {
    section.fail_key("sliding_window",
                     "is null, but layer " + std::to_string(layer.index) + " is a sliding-window layer (" + why + ")");
  }
}

// ---- Tensor names of the HF decoder layout -------------------------------------------------------

void name_decoder_model(ModelSpec& spec) {
  spec.tensors = ModelTensors{};
  spec.tensors.embed_tokens = spec.weight_prefix + "embed_tokens.weight";
  spec.tensors.final_norm.weight = spec.weight_prefix + "norm.weight";
  // The LM head sits outside the decoder (`lm_head.weight` beside `model.`); tied, it is the embedding.
  spec.tensors.lm_head = spec.tie_word_embeddings ? spec.tensors.embed_tokens : "lm_head.weight";
}

void name_decoder_layer(const std::string& prefix, LayerSpec& layer, const DecoderNaming& naming) {
  const std::string base = prefix + "layers." + std::to_string(layer.index) + ".";
  auto linear = [&](const std::string& module, bool bias) {
    LinearNames l;
    l.weight = base + module + ".weight";
    if (bias) l.bias = base + module + ".bias";
    return l;
  };
  using R = TensorRole;
  LayerTensors& t = layer.tensors;
  t = LayerTensors{};
  t[R::AttnPreNorm].weight = base + "input_layernorm.weight";
  if (naming.sandwich_norms) {
    t[R::AttnPostNorm].weight = base + "post_attention_layernorm.weight";
    t[R::MlpPreNorm].weight = base + "pre_feedforward_layernorm.weight";
    t[R::MlpPostNorm].weight = base + "post_feedforward_layernorm.weight";
  } else {
    // Llama's "post_attention_layernorm" normalises the residual stream before the MLP.
    t[R::MlpPreNorm].weight = base + "post_attention_layernorm.weight";
  }
  t[R::Q] = linear("self_attn.q_proj", naming.qkv_bias);
  if (layer.has_k_proj) t[R::K] = linear("self_attn.k_proj", naming.qkv_bias);
  if (layer.has_v_proj) t[R::V] = linear("self_attn.v_proj", naming.qkv_bias);
  t[R::O] = linear("self_attn.o_proj", naming.o_bias);
  if (layer.has_qk_norm) {
    t[R::QNorm].weight = base + "self_attn.q_norm.weight";
    if (layer.has_k_proj) t[R::KNorm].weight = base + "self_attn.k_norm.weight";
  }
  t[R::Gate] = linear("mlp.gate_proj", naming.mlp_bias);
  t[R::Up] = linear("mlp.up_proj", naming.mlp_bias);
  t[R::Down] = linear("mlp.down_proj", naming.mlp_bias);
}

}  // namespace detail
}  // namespace graft::arch
