#include "arch/config_reader.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace graft::arch {

using nlohmann::json;

std::string describe_json(const json& value) {
  // `replace` keeps dump() from throwing on strings that are not valid UTF-8.
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr size_t kMaxShown = 60;
  if (text.size() > kMaxShown) text = text.substr(0, kMaxShown) + "...";
  return text;
}

// ---- ConfigReader --------------------------------------------------------------------------------

ConfigReader::ConfigReader(const json& object, std::string source, std::string path)
    : object_(&object), source_(std::move(source)), path_(std::move(path)) {
  if (!object.is_object()) {
    if (path_.empty()) fail("the top level must be a JSON object, got " + describe_json(object));
    // path_ ends with '.'; name the section without it.
    fail_at(path_.substr(0, path_.size() - 1), "must be an object, got " + describe_json(object));
  }
}

void ConfigReader::fail(const std::string& message) const {
  throw InputError("config.json (" + source_ + "): " + message);
}

void ConfigReader::fail_at(const std::string& key_path, const std::string& problem) const {
  fail("\"" + key_path + "\" " + problem);
}

void ConfigReader::fail_key(const std::string& key, const std::string& problem) const {
  fail_at(key_path(key), problem);
}

const json* ConfigReader::find(const std::string& key) const {
  auto it = object_->find(key);
  return it == object_->end() ? nullptr : &*it;
}

bool ConfigReader::contains(const std::string& key) const { return find(key) != nullptr; }

bool ConfigReader::has_value(const std::string& key) const {
  const json* v = find(key);
  return v != nullptr && !v->is_null();
}

int64_t ConfigReader::to_int(const json& value, const std::string& key_path) const {
  // nlohmann keeps non-negative integers as uint64; above INT64_MAX they are garbage for us.
  if (value.is_number_unsigned()) {
    uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_at(key_path, "is too large: " + describe_json(value));
    }
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  fail_at(key_path, "must be an integer, got " + describe_json(value));
}

int64_t ConfigReader::check_range(const std::string& key_path, int64_t value, int64_t lo, int64_t hi) const {
  if (value < lo || value > hi) {
    fail_at(key_path,
            "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + std::to_string(value));
  }
  return value;
}

int64_t ConfigReader::to_dimension(const json& value, const std::string& key_path) const {
  return check_range(key_path, to_int(value, key_path), 1, kMaxDimension);
}

double ConfigReader::to_double(const json& value, const std::string& key_path) const {
  if (!value.is_number()) fail_at(key_path, "must be a number, got " + describe_json(value));
  double d = value.get<double>();
  if (!std::isfinite(d)) fail_at(key_path, "must be a finite number, got " + describe_json(value));
  return d;
}

int64_t ConfigReader::require_int(const std::string& key) const {
  if (!has_value(key)) fail_key(key, "is missing");
  return to_int(*find(key), key_path(key));
}

int64_t ConfigReader::get_int(const std::string& key, int64_t fallback) const {
  return has_value(key) ? to_int(*find(key), key_path(key)) : fallback;
}

std::optional<int64_t> ConfigReader::optional_int(const std::string& key) const {
  if (!has_value(key)) return std::nullopt;
  return to_int(*find(key), key_path(key));
}

int64_t ConfigReader::require_dimension(const std::string& key) const {
  return check_range(key_path(key), require_int(key), 1, kMaxDimension);
}

int64_t ConfigReader::get_dimension(const std::string& key, int64_t fallback) const {
  return check_range(key_path(key), get_int(key, fallback), 1, kMaxDimension);
}

double ConfigReader::get_double(const std::string& key, double fallback) const {
  return has_value(key) ? to_double(*find(key), key_path(key)) : fallback;
}

std::optional<double> ConfigReader::optional_double(const std::string& key) const {
  if (!has_value(key)) return std::nullopt;
  return to_double(*find(key), key_path(key));
}

bool ConfigReader::get_bool(const std::string& key, bool fallback) const {
  if (!has_value(key)) return fallback;
  const json& v = *find(key);
  if (!v.is_boolean()) fail_key(key, "must be true or false, got " + describe_json(v));
  return v.get<bool>();
}

std::optional<std::string> ConfigReader::optional_string(const std::string& key) const {
  if (!has_value(key)) return std::nullopt;
  const json& v = *find(key);
  if (!v.is_string()) fail_key(key, "must be a string, got " + describe_json(v));
  return v.get<std::string>();
}

std::string ConfigReader::require_string(const std::string& key) const {
  if (!has_value(key)) fail_key(key, "is missing");
  return *optional_string(key);
}

std::string ConfigReader::get_string(const std::string& key, const std::string& fallback) const {
  return optional_string(key).value_or(fallback);
}

std::optional<std::vector<std::string>> ConfigReader::optional_string_list(const std::string& key) const {
  if (!has_value(key)) return std::nullopt;
  const json& v = *find(key);
  if (!v.is_array()) fail_key(key, "must be a list of strings, got " + describe_json(v));
  std::vector<std::string> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string())
      fail_at(key_path(key) + "[" + std::to_string(i) + "]", "must be a string, got " + describe_json(v[i]));
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

std::vector<int64_t> ConfigReader::int_or_int_list(const std::string& key) const {
  if (!has_value(key)) return {};
  const json& v = *find(key);
  if (!v.is_array()) return {to_int(v, key_path(key))};
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) out.push_back(to_int(v[i], key_path(key) + "[" + std::to_string(i) + "]"));
  return out;
}

ConfigReader ConfigReader::section(const std::string& key) const {
  if (!has_value(key)) fail_key(key, "is missing");
  return ConfigReader(*find(key), source_, key_path(key) + ".");
}

std::optional<ConfigReader> ConfigReader::optional_section(const std::string& key) const {
  if (!has_value(key)) return std::nullopt;
  return section(key);
}

// ---- LayerOverrides ------------------------------------------------------------------------------

namespace {

// HF turns per_layer_config keys into layer indices with int(); we accept the digit strings that
// transformers writes (zero-padded: "03") and nothing else.
std::optional<int> parse_layer_key(const std::string& key) {
  if (key.empty() || key.size() > 9) return std::nullopt;
  if (!std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  return std::stoi(key);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

LayerOverrides::LayerOverrides(const ConfigReader& section, int num_layers, const std::vector<std::string>& supported)
    : section_(section) {
  const std::string key = "per_layer_config";
  if (!section.has_value(key)) return;
  given_ = true;
  const json& table = section.object().at(key);
  if (!table.is_object()) {
    section.fail_key(key, "must be an object mapping layer indices to overrides, got " + describe_json(table));
  }
  for (const auto& [layer_key, attributes] : table.items()) {
    const std::string layer_path = section.key_path(key) + "." + layer_key;
    std::optional<int> layer = parse_layer_key(layer_key);
    if (!layer) section.fail_at(layer_path, "is not a layer index");
    if (*layer >= num_layers) {
      section.fail_at(layer_path, "names a layer this model does not have (num_hidden_layers = " +
                                      std::to_string(num_layers) + ")");
    }
    if (overrides_.count(*layer))
      section.fail_at(layer_path, "gives layer " + std::to_string(*layer) + " a second time");
    if (!attributes.is_object()) {
      section.fail_at(layer_path, "must be an object of attribute overrides, got " + describe_json(attributes));
    }
    auto& entries = overrides_[*layer];
    for (const auto& [attribute, value] : attributes.items()) {
      const std::string path = layer_path + "." + attribute;
      if (std::find(supported.begin(), supported.end(), attribute) == supported.end()) {
        section.fail_at(path,
                        "cannot be set per layer (graft models these attributes per layer: " + join(supported) + ")");
      }
      entries[attribute] = Entry{value, path};
    }
  }
}

void LayerOverrides::set(int layer, const std::string& attribute, json value, std::string key_path) {
  overrides_[layer][attribute] = Entry{std::move(value), std::move(key_path)};
}

const LayerOverrides::Entry* LayerOverrides::find(int layer, const std::string& attribute) const {
  auto layer_it = overrides_.find(layer);
  if (layer_it == overrides_.end()) return nullptr;
  auto it = layer_it->second.find(attribute);
  return it == layer_it->second.end() ? nullptr : &it->second;
}

int64_t LayerOverrides::get_int(int layer, const std::string& attribute, int64_t fallback) const {
  if (const Entry* e = find(layer, attribute))
    return e->value.is_null() ? fallback : section_.to_int(e->value, e->key_path);
  return section_.get_int(attribute, fallback);
}

int64_t LayerOverrides::get_dimension(int layer, const std::string& attribute, int64_t fallback) const {
  return section_.check_range(key_path(layer, attribute), get_int(layer, attribute, fallback), 1, kMaxDimension);
}

std::optional<int64_t> LayerOverrides::optional_int(int layer, const std::string& attribute,
                                                    std::optional<int64_t> if_missing) const {
  if (const Entry* e = find(layer, attribute)) {
    if (e->value.is_null()) return std::nullopt;
    return section_.to_int(e->value, e->key_path);
  }
  if (!section_.contains(attribute)) return if_missing;
  return section_.optional_int(attribute);
}

std::string LayerOverrides::key_path(int layer, const std::string& attribute) const {
  if (const Entry* e = find(layer, attribute)) return e->key_path;
  return section_.key_path(attribute);
}

// ---- RoPE ----------------------------------------------------------------------------------------

namespace {

const char* const kSupportedRopeTypes = "default, linear, dynamic, yarn, llama3, proportional";

RopeKind parse_rope_kind(const ConfigReader& dict, const std::string& key, const std::string& type) {
  if (type == "default") return RopeKind::Default;
  if (type == "linear") return RopeKind::Linear;
  if (type == "dynamic") return RopeKind::Dynamic;
  if (type == "llama3") return RopeKind::Llama3;
  if (type == "proportional") return RopeKind::Proportional;
  if (type == "yarn") return RopeKind::Yarn;
  dict.fail_key(key, "\"" + type + "\" is not a supported RoPE type (supported: " + kSupportedRopeTypes + ")");
}

double require_positive_double(const ConfigReader& dict, const std::string& key, const std::string& why) {
  if (!dict.has_value(key)) dict.fail_key(key, "is missing (" + why + ")");
  double v = *dict.optional_double(key);
  if (!(v > 0)) dict.fail_key(key, "must be positive, got " + describe_json(dict.object().at(key)));
  return v;
}

double check_positive(const ConfigReader& dict, const std::string& key, double v) {
  if (!(v > 0)) dict.fail_key(key, "must be positive, got " + std::to_string(v));
  return v;
}

// transformers' _compute_yarn_parameters: get_mscale.
double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// "original_max_position_embeddings": a top-level key wins (HF standardize_rope_params), then the
// dict's, then max_position_embeddings.
int64_t original_context(const ConfigReader& dict, const RopeContext& context) {
  int64_t v = context.original_max_position_embeddings.value_or(
      dict.get_int("original_max_position_embeddings", context.max_position_embeddings));
  return dict.check_range(dict.key_path("original_max_position_embeddings"), v, 1, kMaxDimension);
}

}  // namespace

RopeSpec parse_rope_dict(const ConfigReader& dict, std::optional<double> theta_fallback, const RopeContext& context) {
  RopeSpec rope;
  // HF: rope_parameters.get("rope_type", rope_parameters.get("type", "default")).
  const std::string type_key = dict.has_value("rope_type") ? "rope_type" : "type";
  rope.kind = parse_rope_kind(dict, type_key, dict.get_string(type_key, "default"));

  std::optional<double> theta = dict.optional_double("rope_theta");
  if (!theta) theta = theta_fallback;
  if (!theta) dict.fail_key("rope_theta", "is missing");
  rope.theta = check_positive(dict, "rope_theta", *theta);

  double partial = dict.optional_double("partial_rotary_factor").value_or(context.partial_rotary_factor.value_or(1.0));
  if (!(partial > 0 && partial <= 1))
    dict.fail_key("partial_rotary_factor", "must be in (0, 1], got " + std::to_string(partial));

  switch (rope.kind) {
    case RopeKind::Default:
      // Every family's compute_default_rope_parameters rotates the whole head and ignores a
      // partial_rotary_factor.
      partial = 1.0;
      break;
    case RopeKind::Linear:
      rope.factor = require_positive_double(dict, "factor", "rope_type linear divides the frequencies by it");
      break;
    case RopeKind::Dynamic:
      rope.factor = require_positive_double(dict, "factor", "rope_type dynamic needs it");
      // Dynamic NTK rescales theta once a sequence outgrows max_position_embeddings.
      rope.original_max_position_embeddings = context.max_position_embeddings;
      break;
    case RopeKind::Llama3:
      rope.factor = require_positive_double(dict, "factor", "rope_type llama3 needs it");
      rope.low_freq_factor = require_positive_double(dict, "low_freq_factor", "rope_type llama3 needs it");
      rope.high_freq_factor = require_positive_double(dict, "high_freq_factor", "rope_type llama3 needs it");
      if (rope.high_freq_factor == rope.low_freq_factor) {
        dict.fail_key("high_freq_factor", "must differ from low_freq_factor (llama3 RoPE divides by their difference)");
      }
      rope.original_max_position_embeddings = original_context(dict, context);
      break;
    case RopeKind::Proportional:
      // Gemma 4: factor is optional (`.get("factor", 1.0)`).
      rope.factor = check_positive(dict, "factor", dict.get_double("factor", 1.0));
      break;
    case RopeKind::Yarn: {
      rope.original_max_position_embeddings = original_context(dict, context);
      if (!dict.contains("factor")) dict.fail_key("factor", "is missing (rope_type yarn needs it)");
      // An explicit null factor means max_position_embeddings / original_max_position_embeddings.
      rope.factor = dict.has_value("factor") ? check_positive(dict, "factor", *dict.optional_double("factor"))
                                             : static_cast<double>(context.max_position_embeddings) /
                                                   static_cast<double>(rope.original_max_position_embeddings);
      // attention_factor, else mscale / mscale_all_dim, else 0.1 * ln(factor) + 1 (HF _compute_yarn_parameters).
      std::optional<double> attention_factor = dict.optional_double("attention_factor");
      double mscale = dict.get_double("mscale", 0.0), mscale_all_dim = dict.get_double("mscale_all_dim", 0.0);
      if (attention_factor) {
        rope.attention_scaling = *attention_factor;
      } else if (mscale != 0 && mscale_all_dim != 0) {
        rope.attention_scaling = yarn_mscale(rope.factor, mscale) / yarn_mscale(rope.factor, mscale_all_dim);
      } else {
        rope.attention_scaling = yarn_mscale(rope.factor, 1.0);
      }
      // HF: `rope_parameters_dict.get("beta_fast") or 32`: 0 and null both mean the default.
      double beta_fast = dict.get_double("beta_fast", 0.0), beta_slow = dict.get_double("beta_slow", 0.0);
      rope.yarn_beta_fast = beta_fast != 0 ? beta_fast : 32.0;
      rope.yarn_beta_slow = beta_slow != 0 ? beta_slow : 1.0;
      rope.yarn_truncate = dict.get_bool("truncate", true);
      if (!std::isfinite(rope.attention_scaling)) dict.fail("YaRN parameters give a non-finite attention scaling");
      break;
    }
    case RopeKind::None: break;
  }
  if (partial != 1.0 && rope.kind != RopeKind::Proportional) {
    // HF's linear/dynamic/yarn/llama3 would then build frequencies for only part of the head, which
    // none of these families' attention can apply (it multiplies whole heads by cos/sin).
    dict.fail_key("partial_rotary_factor", "is only supported with rope_type proportional");
  }
  rope.partial_rotary_factor = partial;
  return rope;
}

RopeSpec rope_for_head_dim(RopeSpec rope, int64_t head_dim, const ConfigReader& file, const std::string& key_path) {
  if (rope.kind == RopeKind::None) return rope;
  if (head_dim % 2 != 0) file.fail_at(key_path, "must be even to apply RoPE, got " + std::to_string(head_dim));
  rope.dim = head_dim;
  if (rope.kind == RopeKind::Proportional) {
    // HF _compute_proportional_rope_parameters: rope_angles = int(partial_rotary_factor * head_dim // 2);
    // the remaining head_dim/2 - rope_angles frequencies are 0 (those dimensions pass through).
    rope.rotated_pairs = static_cast<int64_t>(
        std::floor(rope.partial_rotary_factor * static_cast<double>(head_dim) / 2.0));
  } else {
    rope.rotated_pairs = head_dim / 2;
  }
  return rope;
}

RopeByType read_standard_rope(const ConfigReader& section, double default_theta, const RopeContext& context,
                              const std::vector<AttentionKind>& used) {
  // HF: `rope_parameters = rope_scaling or rope_parameters`: a non-empty legacy rope_scaling wins.
  const bool empty_scaling = section.has_value("rope_scaling") && section.object().at("rope_scaling").is_object() &&
                             section.object().at("rope_scaling").empty();
  const std::string key = section.has_value("rope_scaling") && !empty_scaling ? "rope_scaling" : "rope_parameters";
  const double theta_fallback = section.get_double("rope_theta", default_theta);

  static const json kEmpty = json::object();
  std::optional<ConfigReader> dict = section.optional_section(key);
  if (!dict) dict = ConfigReader(kEmpty, section.source(), section.key_path(key) + ".");

  const bool per_type = dict->contains("full_attention") || dict->contains("sliding_attention");
  RopeByType out;
  if (!per_type) {
    out.full = out.sliding = parse_rope_dict(*dict, theta_fallback, context);
    return out;
  }
  for (AttentionKind kind : {AttentionKind::Full, AttentionKind::Sliding}) {
    if (std::find(used.begin(), used.end(), kind) == used.end()) continue;
    const std::string type = attention_kind_name(kind);
    if (!dict->contains(type)) dict->fail("\"" + dict->key_path(type) + "\" is missing, and layer_types uses " + type);
    std::optional<ConfigReader> sub = dict->optional_section(type);
    std::optional<RopeSpec>& slot = kind == AttentionKind::Full ? out.full : out.sliding;
    if (sub) slot = parse_rope_dict(*sub, theta_fallback, context);  // null: these layers use no RoPE
  }
  return out;
}

}  // namespace graft::arch
