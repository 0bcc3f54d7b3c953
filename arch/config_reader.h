// Typed reading of a HuggingFace config.json, shared by the family files (arch/<family>.cpp).
//
// Every value is read through a ConfigReader, so every complaint about a config has the same shape
// and names the file and the full key:
//     config.json (/models/e2b/config.json): "text_config.num_hidden_layers" is missing
//     config.json (/models/e2b/config.json): "text_config.head_dim" must be an integer, got "256"
// Types are strict, as in transformers' @strict configs: 64.0 is not an integer and 1 is not a bool.
// A key that is present with the value null reads as missing unless a family says otherwise (HF
// gives null a meaning of its own for a few keys, e.g. Mistral's sliding_window).
//
// Also here: per-layer overrides (`per_layer_config`) and RoPE parameter parsing, which several
// families share. Internal to arch/; nothing outside arch/ includes this header.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "arch/arch.h"

namespace graft::arch {

// Upper bounds on what a config may declare. Real models are far below them; they exist so that
// garbage (a fuzzer, a corrupt file) cannot make shapes whose products overflow int64 or make us
// allocate millions of layers. Every size is at most 2^31 - 1, so a product of two sizes fits.
inline constexpr int64_t kMaxDimension = (int64_t{1} << 31) - 1;
inline constexpr int64_t kMaxLayers = 4096;

class ConfigReader {
 public:
  // `object` must outlive the reader. `source` names the file in messages; `path` is the key prefix
  // of this object inside the file ("" for the file itself, "text_config." for a section).
  ConfigReader(const nlohmann::json& object, std::string source, std::string path = "");

  const nlohmann::json& object() const { return *object_; }
  const std::string& source() const { return source_; }
  // The full key of `key` as messages print it: "text_config.head_dim".
  std::string key_path(const std::string& key) const { return path_ + key; }

  // `config.json (SOURCE): MESSAGE`, as an InputError.
  [[noreturn]] void fail(const std::string& message) const;
  // `config.json (SOURCE): "KEY_PATH" PROBLEM`. key_path is a full path (see key_path()).
  [[noreturn]] void fail_at(const std::string& key_path, const std::string& problem) const;
  // As fail_at, for a key of this object.
  [[noreturn]] void fail_key(const std::string& key, const std::string& problem) const;

  bool contains(const std::string& key) const;   // present, null included
  bool has_value(const std::string& key) const;  // present and not null

  // Integers. `require_*` fail on a missing or null key; `get_*` return the fallback for one.
  int64_t require_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  std::optional<int64_t> optional_int(const std::string& key) const;
  // Sizes: integers in [1, kMaxDimension].
  int64_t require_dimension(const std::string& key) const;
  int64_t get_dimension(const std::string& key, int64_t fallback) const;

  double get_double(const std::string& key, double fallback) const;
  std::optional<double> optional_double(const std::string& key) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string require_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::optional<std::string> optional_string(const std::string& key) const;
  // A list of strings; nullopt when missing or null.
  std::optional<std::vector<std::string>> optional_string_list(const std::string& key) const;
  // An integer or a list of integers (eos_token_id); empty when missing or null.
  std::vector<int64_t> int_or_int_list(const std::string& key) const;

  // A nested object. `section` fails when it is missing, null or not an object.
  ConfigReader section(const std::string& key) const;
  std::optional<ConfigReader> optional_section(const std::string& key) const;

  // Conversions of a value found elsewhere (a per-layer override, a synthesised RoPE dict), with the
  // key path errors should name.
  int64_t to_int(const nlohmann::json& value, const std::string& key_path) const;
  int64_t to_dimension(const nlohmann::json& value, const std::string& key_path) const;
  double to_double(const nlohmann::json& value, const std::string& key_path) const;
  // Fails unless lo <= value <= hi.
  int64_t check_range(const std::string& key_path, int64_t value, int64_t lo, int64_t hi) const;

 private:
  const nlohmann::json* find(const std::string& key) const;  // nullptr when missing

  const nlohmann::json* object_;
  std::string source_;
  std::string path_;
};

// Short, printable rendering of a JSON value for messages (long values are cut).
std::string describe_json(const nlohmann::json& value);

// transformers' HeterogeneousConfigMixin: `per_layer_config: {"<layer>": {"<attribute>": value}}`
// replaces, for one layer, an attribute of the config section (keys may be zero-padded: "03").
// Families read every per-layer attribute through this, so any family accepts the overrides.
class LayerOverrides {
 public:
  // Reads `per_layer_config` from `section`; missing or null means no overrides. Keys must be layer
  // indices in [0, num_layers), values objects, and attributes among `supported` (an override of an
  // attribute graft does not model per layer, e.g. "skip", would be silently wrong, so it fails).
  LayerOverrides(const ConfigReader& section, int num_layers, const std::vector<std::string>& supported);

  bool given() const { return given_; }  // per_layer_config was in the config
  // Adds an override from an older spelling of the same fact (Gemma 4's global_head_dim);
  // `key_path` is the key that errors about this value name.
  void set(int layer, const std::string& attribute, nlohmann::json value, std::string key_path);

  // The integer `attribute` of `layer`: its override, else the section's value, else `fallback`.
  int64_t get_int(int layer, const std::string& attribute, int64_t fallback) const;
  // As get_int, but a size in [1, kMaxDimension].
  int64_t get_dimension(int layer, const std::string& attribute, int64_t fallback) const;
  // The override if there is one (null: nullopt); else the section's value, where null reads as
  // nullopt and a missing key as `if_missing` (HF's class default; null often means "none" instead).
  std::optional<int64_t> optional_int(int layer, const std::string& attribute, std::optional<int64_t> if_missing) const;
  // The key that supplied `attribute` of `layer`: "per_layer_config.3.head_dim" or "head_dim".
  std::string key_path(int layer, const std::string& attribute) const;

 private:
  struct Entry {
    nlohmann::json value;
    std::string key_path;
  };
  const Entry* find(int layer, const std::string& attribute) const;

  ConfigReader section_;
  bool given_ = false;
  std::map<int, std::map<std::string, Entry>> overrides_;
};

// ---- RoPE ----------------------------------------------------------------------------------------
// transformers v5 keeps RoPE parameters in `rope_parameters`, either one flat dict
// ({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, ...}) or one dict per layer type
// ({"sliding_attention": {...}, "full_attention": {...}}); older configs spell them `rope_theta` plus
// `rope_scaling` ({"type" | "rope_type": ..., "factor": ...}). A dict set to null marks layers
// without RoPE.

// What a RoPE dict may take from outside itself.
struct RopeContext {
  int64_t max_position_embeddings = 0;
  // A top-level `partial_rotary_factor` (used when the dict has none).
  std::optional<double> partial_rotary_factor;
  // A top-level `original_max_position_embeddings`; HF lets it win over the dict's (Phi-3 style).
  std::optional<int64_t> original_max_position_embeddings;
};

// Parses one flat RoPE dict into the layer-independent fields of a RopeSpec (kind, theta, factors,
// attention_scaling); dim and rotated_pairs stay 0 until rope_for_head_dim. `theta_fallback` is used
// when the dict has no rope_theta; without one that is an error.
RopeSpec parse_rope_dict(const ConfigReader& dict, std::optional<double> theta_fallback, const RopeContext& context);

// Completes `rope` for a layer with heads of `head_dim`: dim = head_dim (the pairing span j <-> j +
// dim/2) and rotated_pairs = the number of non-zero frequencies. `key_path` names the head_dim key.
RopeSpec rope_for_head_dim(RopeSpec rope, int64_t head_dim, const ConfigReader& file, const std::string& key_path);

// The RoPE of each layer type, nullopt for a type whose layers use none.
struct RopeByType {
  std::optional<RopeSpec> full;
  std::optional<RopeSpec> sliding;
  const std::optional<RopeSpec>& of(AttentionKind kind) const { return kind == AttentionKind::Full ? full : sliding; }
};

// HF PreTrainedConfig.convert_rope_params_to_dict + standardize_rope_params, as every family without
// its own RoPE handling (Llama, Mistral, Qwen, Gemma 2) reads them: `rope_scaling` if given, else
// `rope_parameters`, flat or per layer type; `rope_theta` (else `default_theta`) fills a missing
// theta. `used` lists the layer types the model has (a per-type dict must cover them).
RopeByType read_standard_rope(const ConfigReader& section, double default_theta, const RopeContext& context,
                              const std::vector<AttentionKind>& used);

}  // namespace graft::arch
